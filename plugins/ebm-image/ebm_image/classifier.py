"""A small classifier per labelled data set, trained once by the code and cached as safetensors.

Its penultimate features give the classifier-feature Fréchet distance (an FID for data sets
where Inception features make no sense, and with no download); its predictions say which
classes the samples cover. The cache key hashes the training images, labels and the
recipe of the classifier, so a different data set or size never reuses a stale file.
The cache folder is ``$EBM_CACHE_DIR`` or ``~/.cache/ebm``.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import sys
from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmcore import EbmError
from ebmcore.kit.files import atomic_write

#: bump when the architecture or training changes: old cache files are then ignored
VERSION = 1
FEATURES = 128
BATCH = 128
#: three epochs, but at least 600 and at most 1,200 Adam steps (small sets need more passes)
MIN_STEPS, MAX_STEPS = 600, 1200


def cache_dir() -> Path:
    return Path(os.environ.get("EBM_CACHE_DIR") or Path.home() / ".cache" / "ebm")


class Classifier(nn.Module):
    """Two conv blocks, adaptive pooling to 4×4, a 128-wide feature layer, a linear read-out."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, FEATURES), nn.ReLU())
        self.out = nn.Linear(FEATURES, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x))

    @torch.no_grad()
    def embed(self, x: Tensor, batch: int = 1000) -> tuple[Tensor, Tensor]:
        """Features ``(N, 128)`` and predicted classes ``(N,)`` in evaluation mode."""
        self.eval()
        feats = torch.cat([self.features(x[i:i + batch].float()) for i in range(0, len(x), batch)])
        return feats, self.out(feats).argmax(1)


def _key(x: Tensor, y: Tensor, num_classes: int) -> str:
    h = hashlib.sha256()
    h.update(f"v{VERSION} s{MIN_STEPS}-{MAX_STEPS} b{BATCH} k{num_classes} {tuple(x.shape)}".encode())
    h.update(x.float().contiguous().numpy().tobytes())
    h.update(y.long().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train_classifier(x: Tensor, y: Tensor, num_classes: int, *, seed: int = 0) -> Classifier:
    """Adam with a little dequantisation noise; deterministic per seed."""
    rng = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # parameter initialisation only; restored below
    model = Classifier(x.shape[1], num_classes)
    torch.random.set_rng_state(torch_state)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    per_epoch = -(-len(x) // BATCH)
    steps = min(max(3 * per_epoch, MIN_STEPS), MAX_STEPS)
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(len(x), generator=rng)
        i = step % per_epoch * BATCH
        idx = order[i:i + BATCH]
        xb = x[idx] + 0.03 * torch.randn(x[idx].shape, generator=rng)
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def load_or_train(x: Tensor, y: Tensor, num_classes: int, *, name: str,
                  heldout: tuple[Tensor, Tensor] | None = None) -> tuple[Classifier, dict]:
    """The cached classifier of this data set, training and caching it on first use.

    Returns the model and its sidecar info (``accuracy`` on the held-out set when given).
    A cache file whose hash does not match its sidecar is ignored and rebuilt.
    """
    path = cache_dir() / f"classifier-{_key(x, y, num_classes)}.safetensors"
    with _training_lock(path):  # two processes needing it at once: one trains, the other reads it after
        cached = _cached(path, num_classes, x.shape[1])
        if cached is not None:
            return cached
        print(f"ebm-image: training the {name} classifier for metrics (once; cached in {path.parent})",
              file=sys.stderr)
        return _train_and_cache(path, x, y, num_classes, name=name, heldout=heldout)


@contextlib.contextmanager
def _training_lock(path: Path):
    """An exclusive flock on ``<cache file>.lock`` (released when the process ends, however)."""
    lock = path.with_suffix(".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise EbmError(f"{lock}: cannot open the metrics classifier's cache ({exc.strerror or exc}); "
                       f"set EBM_CACHE_DIR to a folder this user may write") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"ebm-image: waiting for another process to train the classifier in {path.parent}",
                  file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _cached(path: Path, num_classes: int, channels: int) -> tuple[Classifier, dict] | None:
    """The classifier cached at ``path`` if its file matches its sidecar's hash."""
    info_path = path.with_suffix(".json")
    with torch.random.fork_rng(devices=[]):  # its initial weights are replaced: evaluating shifts no RNG
        model = Classifier(channels, num_classes)
    try:
        info, blob = json.loads(info_path.read_text()), path.read_bytes()
        if hashlib.sha256(blob).hexdigest() == info.get("sha256"):
            model.load_state_dict(safetensors.torch.load(blob))
            return model.eval(), info
        print(f"ebm-image: {path} does not match its hash; rebuilding it", file=sys.stderr)
    except (OSError, ValueError):
        pass  # not cached yet (or unreadable)
    return None


def _train_and_cache(path: Path, x: Tensor, y: Tensor, num_classes: int, *, name: str,
                     heldout: tuple[Tensor, Tensor] | None) -> tuple[Classifier, dict]:
    model = train_classifier(x, y, num_classes)
    blob = safetensors.torch.save({k: v.detach().contiguous() for k, v in model.state_dict().items()})
    info = {"data": name, "images": len(x), "shape": list(x.shape[1:]), "classes": num_classes,
            "version": VERSION, "sha256": hashlib.sha256(blob).hexdigest()}
    if heldout is not None:
        _, pred = model.embed(heldout[0])
        info["accuracy"] = round(float((pred == heldout[1]).float().mean()), 4)
    atomic_write(path, blob)
    atomic_write(path.with_suffix(".json"), json.dumps(info, indent=1).encode())  # last: the commit mark
    return model, info
