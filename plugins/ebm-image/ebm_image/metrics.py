"""Sample quality of labelled image data: classifier-feature Fréchet distance and class coverage.

``fd`` compares the samples' classifier features with those of the training images (the
reference statistics). Its yardsticks (:class:`ebmcore.kit.metrics.Yardsticks`) are
computed once, with the same number of images as the samples, so the bias of a finite
sample is the same for all:

- ``fd/heldout``: held-out real images (the floor: what a perfect model would score);
- ``fd/noise``: uniform noise in [−1, 1] (the ceiling);
- ``fd/gaussian``: a full-covariance Gaussian fitted to the reference training images,
  clamped to [−1, 1] as samples are (the simplest model), and ``fd/vs_gaussian``.

``classes/covered`` counts classes that receive at least a fifth of a fair share of the
samples' predicted labels; ``classes/entropy`` is the entropy of that histogram divided by
log(classes) (1: all classes equally often).
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor

from ebm_image.classifier import Classifier
from ebmcore.kit.metrics import Yardsticks, beside

#: reference statistics use at most this many training images
REFERENCE_IMAGES = 10_000

#: reference statistics already computed in this process, by classifier and images: every
#: run on a data set embeds the same 10,000 images (seconds), which tests do dozens of times
_REFERENCE_CACHE: dict[str, tuple[Tensor, Tensor]] = {}


def _reference_stats(classifier: Classifier, reference: Tensor) -> tuple[Tensor, Tensor]:
    h = hashlib.sha256(reference.float().contiguous().numpy().tobytes())
    for name, t in classifier.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().contiguous().numpy().tobytes())
    key = h.hexdigest()
    if key not in _REFERENCE_CACHE:
        if len(_REFERENCE_CACHE) >= 8:
            _REFERENCE_CACHE.pop(next(iter(_REFERENCE_CACHE)))
        _REFERENCE_CACHE[key] = gaussian_stats(classifier.embed(reference)[0])
    return _REFERENCE_CACHE[key]


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of ``(N, D)`` features, in float64."""
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def frechet_distance(a: tuple[Tensor, Tensor], b: tuple[Tensor, Tensor]) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2(Σa^½ Σb Σa^½)^½), with symmetric eigendecompositions."""
    mu_a, cov_a = a
    mu_b, cov_b = b
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def class_coverage(pred: Tensor, num_classes: int) -> dict[str, float]:
    share = torch.bincount(pred, minlength=num_classes).double() / len(pred)
    nonzero = share[share > 0]
    return {"classes/covered": float((share >= 0.2 / num_classes).sum()),
            "classes/entropy": float(-(nonzero * nonzero.log()).sum() / math.log(num_classes)),
            "classes/max_share": float(share.max())}


class ClassifierMetrics:
    """FD (beside its yardsticks) and coverage of samples for one data set."""

    def __init__(self, classifier: Classifier, train_x: Tensor, heldout_x: Tensor, num_classes: int,
                 *, seed: int = 0):
        self.classifier, self.num_classes = classifier, num_classes
        rng = torch.Generator().manual_seed(seed)
        reference = train_x[torch.randperm(len(train_x), generator=rng)[:REFERENCE_IMAGES]]
        self.reference = _reference_stats(classifier, reference)
        self.heldout_x = heldout_x
        shape = heldout_x.shape[1:]
        self.yardsticks = Yardsticks(self.fd, train=reference, heldout=heldout_x, seed=seed + 1,
                                     noise=lambda n, g: torch.rand((n, *shape), generator=g) * 2 - 1)

    def fd(self, x: Tensor) -> float:
        """The FD of images ``x`` (clamped to [−1, 1], as samples are) to the reference."""
        return frechet_distance(gaussian_stats(self.classifier.embed(x.float().clamp(-1, 1))[0]), self.reference)

    def __call__(self, samples: Tensor) -> dict[str, float]:
        samples = samples.detach().float().cpu().clamp(-1, 1)
        if len(samples) < 2:
            return {}  # a covariance needs two samples
        feats, pred = self.classifier.embed(samples)
        out = beside("fd", frechet_distance(gaussian_stats(feats), self.reference),
                     self.yardsticks(min(len(samples), len(self.heldout_x))))
        out.update(class_coverage(pred, self.num_classes))
        return out
