"""Shared pieces of the image modality: scaling, resizing, flips and the PNG grid (image
files are read by :func:`ebmcore.kit.images.read_image`)."""

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ebmcore import Batch, Data, EbmError, Shuffled
from ebmcore import config as cfg
from ebmcore.kit.images import read_image
from ebmcore.kit.pictures import image_grid_png


def load_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as ``(channels, size, size)`` uint8; an unreadable file → EbmError naming it."""
    img = read_image(path, "L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def to_unit_range(x: torch.Tensor, max_value: float) -> torch.Tensor:
    """Map values in [0, max_value] to float32 in [−1, 1]."""
    return (x.float() / max_value * 2 - 1).clamp(-1, 1)


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear resize of ``(N, C, H, W)`` to ``size × size`` (None or the same size: unchanged)."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1]).clamp(-1, 1)


def with_flips(x: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Double the set by appending horizontally mirrored copies (labels repeated)."""
    x = torch.cat([x, x.flip(-1)])
    return x, (None if cond is None else torch.cat([cond, cond]))


Binarize = Literal["none", "threshold", "stochastic"]


def binarize_field() -> Binarize:
    """The ``binarize`` key of the image data sets."""
    return cfg.doc("map pixels to {0, 1} (RBMs): 'threshold' at mid-grey, 'stochastic' a Bernoulli "
                   "draw with the grey level as probability, redrawn for every training batch (the "
                   "training set as one batch and the held-out split are one fixed draw); 'none' "
                   "keeps [−1, 1]", default="none")


def binarized(x: torch.Tensor, how: Binarize, rng: torch.Generator) -> torch.Tensor:
    """Images in [−1, 1] as {0, 1}: thresholded at 0, or drawn with probability (x + 1)/2."""
    if how == "threshold":
        return (x > 0).float()
    return (torch.rand(x.shape, generator=rng) < (x + 1) / 2).float()


class _Redrawn(Shuffled):
    """Shuffled grey images with a fresh binary draw of every batch, from the stream's own
    (checkpointed) RNG, so a resumed run sees the same draws."""

    def next(self) -> Batch:
        grey = super().next()
        return Batch(binarized(grey.x, "stochastic", self.rng), grey.cond)


class ImageData(Data):
    """A fixed set of images in [−1, 1], optionally with integer class labels.

    ``cond`` is the labels only when ``conditional`` (for class-conditional energies);
    ``labels`` keeps them either way. ``heldout`` is a set never trained on (a test split),
    used by metrics and tasks; flips are not applied to it. ``binarize`` maps both to
    {0, 1} (:func:`binarized`; the fixed draws of ``"stochastic"`` use seeds 0 and 1).
    """

    def __init__(self, x: torch.Tensor, labels: torch.Tensor | None = None, *,
                 batch_size: int = 64, conditional: bool = False, flip: bool = False,
                 num_classes: int | None = None, name: str = "images",
                 heldout: Batch | None = None, excluded_classes: tuple[int, ...] = (),
                 binarize: Binarize = "none"):
        if conditional and labels is None:
            raise EbmError(f"{name}: conditional = true needs labels, but this data set has none")
        if flip:
            x, labels = with_flips(x, labels)
        self.binarize = binarize
        #: the grey images in [−1, 1] that stochastic binarisation redraws from
        self.grey = x.contiguous()
        if binarize != "none":
            x = binarized(x, binarize, torch.Generator().manual_seed(0))
            if heldout is not None:
                heldout = Batch(binarized(heldout.x, binarize, torch.Generator().manual_seed(1)), heldout.cond)
        self.x = x.contiguous()
        self.labels = None if labels is None else labels.long()
        self.conditional = conditional
        self.batch_size = batch_size
        self.event_shape = tuple(x.shape[1:])
        self.num_classes = num_classes
        self.name = name
        self._heldout = heldout
        self._metrics = None
        self._classifier = None
        #: labels left out of training (kept in the held-out split): no FD is scored, since
        #: the held-out split would count the classes the model must not learn
        self.excluded_classes = tuple(excluded_classes)

    def heldout(self) -> Batch | None:
        """Held-out images and their labels (or None): ``Batch(x, labels)``; None if there is
        no held-out split."""
        return self._heldout

    def dataset(self) -> Batch:
        return Batch(self.x, self.labels if self.conditional else None)

    def stream(self, rng: torch.Generator, *, rank: int = 0, world: int = 1):
        if self.binarize != "stochastic":
            return super().stream(rng, rank=rank, world=world)
        return _Redrawn(Batch(self.grey, self.dataset().cond), self.batch_size, rng, rank, world)

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Images as pictures and the classifier see them, in [−1, 1]: binary images (and an
        RBM's probabilities), in [0, 1], map black to white as the grey ones."""
        return x if self.binarize == "none" else 2 * x - 1

    def save_samples(self, x, path: Path) -> None:
        image_grid_png(self._pixels(x), Path(path))

    def classifier(self):
        """The data set's own classifier (trained on first use, then cached on disk)."""
        if self.labels is None or self.num_classes is None:
            raise EbmError(f"{self.name}: a classifier needs labels and num_classes")
        if self._classifier is None:
            from ebm_image.classifier import load_or_train

            held = self._heldout
            # trained on the grey images, binarised or not: one classifier (and one cache
            # entry) per data set, which binary images in [−1, 1] are scored by too
            self._classifier, self.classifier_info = load_or_train(
                self.grey, self.labels, self.num_classes, name=self.name,
                heldout=None if held is None or held.cond is None else (self._pixels(held.x), held.cond))
        return self._classifier

    def evaluate(self, samples: torch.Tensor) -> dict[str, float]:
        """Classifier-feature FD (beside its yardsticks: held-out images, noise, a fitted
        Gaussian) and class coverage; empty for data without labels or a held-out split, or
        with excluded classes."""
        if self.labels is None or self._heldout is None or self.num_classes is None or self.excluded_classes:
            return {}
        if self._metrics is None:
            from ebm_image.metrics import ClassifierMetrics

            self._metrics = ClassifierMetrics(self.classifier(), self._pixels(self.x), self._pixels(self._heldout.x),
                                              self.num_classes)
        return self._metrics(self._pixels(samples))
