import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from ebm_image import DigitsConfig, DigitsData, FolderData, IdxConfig, IdxData, ImageFolderConfig, read_idx
from ebm_image.idx import FASHION_ROOT
from PIL import Image

import ebmcore
from ebmcore import EbmError
from ebmcore.kit.pictures import image_grid_png

# --- digits ---------------------------------------------------------------------------------

def test_digits_are_1797_grey_8x8_images_in_minus_one_to_one_without_cond_by_default():
    data = DigitsData.from_config(DigitsConfig(heldout=0))
    batch = data.dataset()
    assert batch.x.shape == (1797, 1, 8, 8) and data.event_shape == (1, 8, 8)
    assert batch.x.dtype == torch.float32
    assert batch.x.min() == -1 and batch.x.max() == 1
    assert batch.cond is None and data.num_classes == 10


def test_conditional_digits_give_the_ten_labels_as_cond():
    batch = DigitsData.from_config(DigitsConfig(conditional=True, heldout=0)).dataset()
    assert batch.cond.shape == (1797,) and batch.cond.dtype == torch.long
    assert set(batch.cond.tolist()) == set(range(10))


def test_digits_resize_to_16_keeps_range_and_the_mean_image():
    small = DigitsData.from_config(DigitsConfig()).dataset().x
    big = DigitsData.from_config(DigitsConfig(size=16)).dataset().x
    assert big.shape == (1437, 1, 16, 16)
    assert big.min() >= -1 and big.max() <= 1
    assert abs(big.mean().item() - small.mean().item()) < 0.05


def test_flip_appends_mirrored_copies_with_their_labels():
    data = DigitsData.from_config(DigitsConfig(flip=True, conditional=True, heldout=0))
    x, y = data.dataset()
    assert x.shape[0] == 2 * 1797
    assert torch.equal(x[1797:], x[:1797].flip(-1)) and torch.equal(y[1797:], y[:1797])


def test_digits_hold_out_a_fixed_split_disjoint_from_training():
    a, b = DigitsData.from_config(DigitsConfig()), DigitsData.from_config(DigitsConfig())
    train, test = a.dataset().x, a.heldout().x
    assert train.shape[0] == 1437 and test.shape[0] == 360
    assert torch.equal(test, b.heldout().x)  # the same split every time
    flat_train = {tuple(r) for r in train.flatten(1).tolist()}
    overlap = sum(tuple(r) in flat_train for r in test.flatten(1).tolist())
    assert overlap <= 2  # sklearn's digits hold a couple of exact duplicates
    assert set(a.heldout().cond.tolist()) == set(range(10))


def test_too_large_a_digits_holdout_is_an_error():
    with pytest.raises(EbmError, match="heldout"):
        DigitsData.from_config(DigitsConfig(heldout=1797))


# --- IDX ------------------------------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def idx_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 4, 4), dtype=np.uint8)
    images[0] = 0
    images[1] = 255
    labels = np.array([0, 1, 2, 1, 0], dtype=np.uint8)
    plain = tmp_path / "images-idx3-ubyte"
    plain.write_bytes(idx_bytes(images))
    packed = tmp_path / "images-idx3-ubyte.gz"
    packed.write_bytes(gzip.compress(idx_bytes(images)))
    lab = tmp_path / "labels-idx1-ubyte.gz"
    lab.write_bytes(gzip.compress(idx_bytes(labels)))
    return images, labels, plain, packed, lab


def test_read_idx_round_trips_plain_and_gzip_files(idx_files, tmp_path):
    images, labels, plain, packed, lab = idx_files
    assert np.array_equal(read_idx(plain), images)
    assert np.array_equal(read_idx(packed), images)
    assert np.array_equal(read_idx(lab), labels)
    wide = np.arange(-3, 3, dtype=np.int32).reshape(2, 3)
    (tmp_path / "wide").write_bytes(idx_bytes(wide))
    assert np.array_equal(read_idx(tmp_path / "wide"), wide)


def test_idx_data_scales_to_minus_one_to_one_and_gives_labels_as_cond(idx_files):
    images, labels, plain, packed, lab = idx_files
    data = IdxData.from_config(IdxConfig(images=str(packed), labels=str(lab), conditional=True))
    x, y = data.dataset()
    assert x.shape == (5, 1, 4, 4) and data.num_classes == 3
    assert (x[0] == -1).all() and (x[1] == 1).all()
    assert torch.allclose(x, torch.from_numpy(images).float().unsqueeze(1) / 127.5 - 1)
    assert y.tolist() == labels.tolist()
    resized = IdxData.from_config(IdxConfig(images=str(plain), size=8, limit=3)).dataset()
    assert resized.x.shape == (3, 1, 8, 8) and resized.cond is None


def test_idx_file_with_wrong_magic_raises_naming_the_file(tmp_path):
    bad = tmp_path / "bad-magic.idx"
    bad.write_bytes(b"\x01\x02\x08\x03" + bytes(100))
    with pytest.raises(EbmError, match="bad-magic.idx.*magic"):
        read_idx(bad)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_idx_file_raises_naming_the_file(idx_files, tmp_path, compress):
    images = idx_files[0]
    data = idx_bytes(images)[:-7]
    bad = tmp_path / ("short.gz" if compress else "short")
    bad.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(EbmError, match="short.*truncated"):
        read_idx(bad)


def test_truncated_gzip_stream_raises_naming_the_file(idx_files, tmp_path):
    bad = tmp_path / "cut.gz"
    bad.write_bytes(idx_files[3].read_bytes()[:20])
    with pytest.raises(EbmError, match="cut.gz"):
        read_idx(bad)


def test_missing_fashion_mnist_says_which_package_provides_it(tmp_path):
    with pytest.raises(EbmError, match="train-images-idx3-ubyte.gz.*apt-get install dataset-fashion-mnist"):
        IdxData.from_config(IdxConfig(name="fashion_mnist", root=str(tmp_path)))


def test_fashion_mnist_shortcut_reads_the_conventional_file_names(idx_files, tmp_path):
    images, labels, _, packed, lab = idx_files
    root = tmp_path / "fashion"
    root.mkdir()
    for split in ("t10k", "train"):
        (root / f"{split}-images-idx3-ubyte.gz").write_bytes(packed.read_bytes())
        (root / f"{split}-labels-idx1-ubyte.gz").write_bytes(lab.read_bytes())
    data = IdxData.from_config(IdxConfig(name="fashion_mnist", root=str(root), split="test", conditional=True))
    x, y = data.dataset()
    assert x.shape == (5, 1, 4, 4) and y.tolist() == labels.tolist()
    assert data.heldout().x.shape == (5, 1, 4, 4)  # the other split


def test_idx_files_hold_out_the_test_files_when_given(idx_files):
    images, labels, plain, packed, lab = idx_files
    data = IdxData.from_config(IdxConfig(images=str(plain), test_images=str(packed), test_labels=str(lab)))
    assert data.heldout().x.shape == (5, 1, 4, 4) and data.heldout().cond.tolist() == labels.tolist()
    assert IdxData.from_config(IdxConfig(images=str(plain))).heldout() is None


@pytest.mark.skipif(not Path(FASHION_ROOT).is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_the_installed_debian_fashion_mnist_has_60000_training_and_10000_test_images():
    data = IdxData.from_config(IdxConfig(name="fashion_mnist"))
    assert data.dataset().x.shape == (60000, 1, 28, 28) and data.num_classes == 10
    assert data.heldout().x.shape == (10000, 1, 28, 28)


# --- image folders --------------------------------------------------------------------------

def write_png(path, colour, size=(6, 5)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def class_folder(tmp_path):
    root = tmp_path / "pics"
    write_png(root / "cats" / "a.png", (255, 0, 0))
    write_png(root / "cats" / "b.png", (255, 0, 0))
    write_png(root / "dogs" / "c.png", (0, 0, 255))
    return root


def test_image_folder_labels_come_from_sorted_class_subfolders(class_folder):
    data = FolderData.from_config(ImageFolderConfig(root=str(class_folder), size=4, conditional=True))
    x, y = data.dataset()
    assert x.shape == (3, 1, 4, 4) and data.num_classes == 2
    assert y.tolist() == [0, 0, 1]


def test_image_folder_keeps_colour_in_rgb_and_collapses_it_in_grey(class_folder):
    rgb = FolderData.from_config(ImageFolderConfig(root=str(class_folder), size=4, channels=3)).dataset().x
    grey = FolderData.from_config(ImageFolderConfig(root=str(class_folder), size=4, channels=1)).dataset().x
    assert rgb.shape == (3, 3, 4, 4) and grey.shape == (3, 1, 4, 4)
    assert torch.allclose(rgb[0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    assert torch.allclose(rgb[2, :, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))
    assert grey.min() > -1 and grey.max() < 1 and grey[0, 0, 0, 0] != grey[2, 0, 0, 0]


def test_image_folder_without_subfolders_has_no_labels(tmp_path):
    write_png(tmp_path / "x.png", (10, 20, 30))
    data = FolderData.from_config(ImageFolderConfig(root=str(tmp_path), size=3))
    assert data.dataset().x.shape == (1, 1, 3, 3) and data.dataset().cond is None
    with pytest.raises(EbmError, match="conditional"):
        FolderData.from_config(ImageFolderConfig(root=str(tmp_path), conditional=True))


def test_corrupt_image_raises_naming_the_file(class_folder):
    (class_folder / "dogs" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(EbmError, match="broken.png"):
        FolderData.from_config(ImageFolderConfig(root=str(class_folder)))


def test_empty_image_folder_raises(tmp_path):
    with pytest.raises(EbmError, match="no images"):
        FolderData.from_config(ImageFolderConfig(root=str(tmp_path)))


# --- pictures and registration --------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_save_samples_writes_a_grid_png_of_the_right_size_that_is_not_one_colour(tmp_path, channels):
    x = torch.linspace(-2, 2, 10 * channels * 16).reshape(10, channels, 4, 4)
    path = tmp_path / "grid.png"
    digits = DigitsData.from_config(DigitsConfig())
    digits.save_samples(x, path)
    img = Image.open(path)
    # 10 images → 8 columns × 2 rows of 4×4 with 1-pixel borders, enlarged 4×
    assert img.size == ((8 * 5 + 1) * 4, (2 * 5 + 1) * 4)
    assert img.mode == ("L" if channels == 1 else "RGB")
    assert len(img.getcolors(maxcolors=100000)) > 2


def test_save_samples_shows_at_most_64_images(tmp_path):
    image_grid_png(torch.rand(100, 1, 2, 2) * 2 - 1, tmp_path / "g.png", scale=1)
    assert Image.open(tmp_path / "g.png").size == (8 * 3 + 1, 8 * 3 + 1)


def test_components_are_registered_with_the_default_host(class_folder):
    data = ebmcore.build("data", "digits", size=16)
    assert data.event_shape == (1, 16, 16) and data.batch_size == 64
    folder = ebmcore.build("data", "image_folder", root=str(class_folder), size=4, channels=3)
    assert folder.event_shape == (3, 4, 4)
    with pytest.raises(ebmcore.RecipeError, match="channels"):
        ebmcore.build("data", "image_folder", root=str(class_folder), channels=2)
    with pytest.raises(ebmcore.RecipeError, match="size"):
        ebmcore.build("data", "idx", images="x", size=0)
