"""MNIST-style IDX files (gzip or plain), e.g. MNIST and Fashion-MNIST.

Fashion-MNIST arrives with the Debian package ``dataset-fashion-mnist``
(``apt-get install dataset-fashion-mnist``); ``name = "fashion_mnist"`` looks for the
conventional file names under ``root``:
``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``.
The default ``root`` is where Debian 12's package puts them (``dpkg -L dataset-fashion-mnist``).
The held-out set (for metrics and tasks) is the other split: ``test`` when training on
``train`` and the other way round; for ``name = "files"`` it is ``test_images`` /
``test_labels`` when given.
"""

import math
import zlib
from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import torch

from ebm_image.common import Binarize, ImageData, binarize_field, resize, to_unit_range
from ebmcore import Batch, EbmError
from ebmcore import config as cfg
from ebmcore.kit.files import read_regular
from ebmcore.kit.memory import available_bytes, check_fits, tensor_bytes

FASHION_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# IDX type byte → numpy big-endian dtype
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _optional_positive(doc: str) -> object:
    return attrs.field(default=None, metadata={"doc": doc},
                       validator=attrs.validators.optional(attrs.validators.gt(0)))


def _distinct_labels(_inst, _attr, value):
    if any(k < 0 for k in value) or len(set(value)) != len(value):
        raise ValueError(f"must be distinct class labels ≥ 0, got {list(value)}")


@attrs.frozen
class IdxConfig:
    """Images (and labels) from IDX files: MNIST, Fashion-MNIST or any other IDX data set."""

    name: Literal["files", "fashion_mnist"] = cfg.doc(
        "'files': read `images`/`labels`; 'fashion_mnist': the conventional files under `root` "
        "(apt-get install dataset-fashion-mnist)", default="files")
    images: str = cfg.doc("path of the images IDX file (.gz or plain); for name = 'files'", default="")
    labels: str = cfg.doc("path of the labels IDX file (optional); for name = 'files'", default="")
    test_images: str = cfg.doc("held-out images IDX file (optional); for name = 'files'", default="")
    test_labels: str = cfg.doc("held-out labels IDX file (optional); for name = 'files'", default="")
    root: str = cfg.doc("folder of the Fashion-MNIST IDX files", default=FASHION_ROOT)
    split: Literal["train", "test"] = cfg.doc("Fashion-MNIST split (name = 'fashion_mnist')",
                                              default="train")
    size: int | None = _optional_positive("resize to size × size (bilinear); unset keeps the native size")
    limit: int | None = _optional_positive("keep only the first `limit` images (unset: all)")
    conditional: bool = cfg.doc("give the labels as cond (needs labels)", default=False)
    flip: bool = cfg.doc("append horizontally mirrored copies (doubles the set)", default=False)
    batch_size: int = cfg.positive("examples per optimisation step", default=64)
    exclude_classes: tuple[int, ...] = attrs.field(
        default=(), validator=_distinct_labels,
        metadata={"doc": "labels left out of the training set and kept in the held-out split (the "
                         "anomalous classes of an anomaly-detection task); the data then scores no FD"})
    binarize: Binarize = binarize_field()


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip if it starts with the gzip magic) into a numpy array.

    A missing, corrupt or truncated file, one that is not a regular file, and one whose
    dimensions need more memory than there is raise :class:`EbmError` naming the file. A
    gzip file is decompressed only as far as its header's dimensions need, so one that
    decompresses to more (a gzip bomb) is refused without being decompressed.
    """
    path = Path(path)
    data = read_regular(path, limit=available_bytes(), what="an IDX file")
    packed = data[:2] == b"\x1f\x8b"
    raw = _gunzip(path, data, _MAX_HEADER) if packed else data
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES or raw[3] == 0:
        raise EbmError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype, ndim = np.dtype(_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise EbmError(f"{path}: truncated IDX file (header needs {header} bytes, has {len(raw)})")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    need = header + math.prod(dims) * dtype.itemsize
    # its copy in native byte order, and first the decompressed data (a plain file is read already)
    check_fits(str(path), (2 if packed else 1) * need, what=f"an IDX file of dimensions {dims}")
    if packed:
        raw = _gunzip(path, data, need)
    if len(raw) != need:
        kind = "truncated" if len(raw) < need else "oversized"
        has = "decompresses to more" if packed and len(raw) > need else f"has {len(raw)}"
        raise EbmError(f"{path}: {kind} IDX file: dimensions {dims} need {need} bytes, file {has}")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


#: the longest IDX header: the magic number and 255 dimensions of 4 bytes
_MAX_HEADER = 4 + 4 * 255


def _gunzip(path: Path, packed: bytes, limit: int) -> bytes:
    """What gzip data ``packed`` decompresses to, up to ``limit + 1`` bytes: decompression
    stops there, so one byte more than ``limit`` says "larger" without decompressing the rest."""
    out = bytearray()
    try:
        while packed and len(out) <= limit:  # every gzip member, as gzip.decompress reads them
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += member.decompress(packed, limit + 1 - len(out))
            if not member.eof and len(out) <= limit:
                raise EbmError(f"{path}: corrupt gzip in IDX file: it ends before its end-of-stream marker")
            packed = member.unused_data
    except zlib.error as exc:
        raise EbmError(f"{path}: corrupt gzip in IDX file: {exc}") from None
    return bytes(out)


def _paths(c: IdxConfig) -> tuple[tuple[Path, Path | None], tuple[Path, Path | None] | None]:
    """(images, labels) of the training set and of the held-out set (or None)."""
    if c.name == "fashion_mnist":
        other = "test" if c.split == "train" else "train"
        train, test = ([Path(c.root) / f for f in FASHION_FILES[s]] for s in (c.split, other))
        for p in (*train, *test):
            if not p.exists():
                raise EbmError(f"{p}: Fashion-MNIST file not found; `apt-get install "
                               f"dataset-fashion-mnist` provides it (or set `root`)")
        return tuple(train), tuple(test)
    if not c.images:
        raise EbmError("data.idx: `images` (path of an IDX file) is required when name = 'files'")
    maybe = (lambda p: Path(p) if p else None)
    test = (Path(c.test_images), maybe(c.test_labels)) if c.test_images else None
    return (Path(c.images), maybe(c.labels)), test


def read_idx_images(images_path: Path, labels_path: Path | None,
                    size: int | None = None, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images ``(N, C, H, W)`` in [−1, 1] and labels (or None) from a pair of IDX files."""
    images = read_idx(images_path)
    if images.ndim == 3:
        images = images[:, None]  # (N, H, W) → (N, 1, H, W)
    elif images.ndim != 4:
        raise EbmError(f"{images_path}: expected images of 3 or 4 dimensions (N, H, W[, C]) "
                       f"or (N, C, H, W), got shape {images.shape}")
    labels = None
    if labels_path is not None:
        labels = read_idx(labels_path)
        if labels.ndim != 1 or len(labels) != len(images):
            raise EbmError(f"{labels_path}: expected {len(images)} labels, got shape {labels.shape}")
    if limit is not None:
        images = images[:limit]
        labels = None if labels is None else labels[:limit]
    n, c = images.shape[:2]
    check_fits(str(images_path), tensor_bytes(*images.shape), what=f"{n:,} images as float32")
    if size is not None:
        check_fits("$.data.size", tensor_bytes(n, c, size, size), what=f"{n:,} images resized to {size}×{size}")
    scale = 255.0 if images.dtype == np.uint8 else float(max(images.max(), 1))
    x = to_unit_range(torch.from_numpy(np.ascontiguousarray(images)), scale)
    y = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    return resize(x, size), y


class IdxData(ImageData):
    """Images (and labels) read from IDX files."""

    @classmethod
    def from_config(cls, c: IdxConfig, ctx=None) -> "IdxData":
        train, test = _paths(c)
        x, y = read_idx_images(*train, c.size, c.limit)
        heldout = None if test is None else Batch(*read_idx_images(*test, c.size))
        num_classes = None if y is None else int(y.max()) + 1
        if c.exclude_classes:
            x, y = _without_classes(x, y, c.exclude_classes, num_classes, str(train[0]))
        return cls(x, y, batch_size=c.batch_size, conditional=c.conditional, flip=c.flip,
                   num_classes=num_classes, name=str(train[0]), heldout=heldout,
                   excluded_classes=c.exclude_classes, binarize=c.binarize)


def _without_classes(x, y, exclude: tuple[int, ...], num_classes: int | None, name: str):
    if y is None:
        raise EbmError(f"$.data.exclude_classes: {name} has no labels to exclude classes by")
    missing = [k for k in exclude if not (y == k).any()]
    if missing:
        raise EbmError(f"$.data.exclude_classes: no training image has label {missing[0]} "
                       f"(labels are 0..{num_classes - 1})")
    keep = ~torch.isin(y, torch.tensor(exclude, dtype=y.dtype))
    if not keep.any():
        raise EbmError(f"$.data.exclude_classes: excluding {list(exclude)} leaves no training images")
    return x[keep], y[keep]
