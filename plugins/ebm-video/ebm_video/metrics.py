"""A classifier-free distance between sets of clips: how far their statistics over time are
from the held-out clips'.

The statistics of a set of clips ``(N, C, T, H, W)``:

- ``autocorr``: the correlation of frame t with frame t + ℓ (all pixels of both frames),
  averaged over t and clips, at lags ℓ = 1, 2, 4 (those shorter than the clip);
- ``spectrum``: how the temporal variation is spread over frequencies: the power of each
  pixel's deviation from its clip's mean frame, by temporal frequency (the DC term, zero
  by construction, left out), averaged over pixels, as shares summing to 1;
- ``motion``: the root-mean-square of those deviations (the spectrum's total);
- ``histogram``: the shares of pixel values in 16 equal bins over [−1, 1].

``video`` is the sum of the L1 distances of the four, each in its natural scale (shares
and correlations are at most 2 apart per group, motion at most 2). Its yardsticks, all
measured against the same held-out clips: ``video/heldout`` the training clips (the floor:
the same process, other times), ``video/shuffled`` the training clips with their frames in
a random order (right pictures, wrong motion), ``video/noise`` uniform noise (the
ceiling), ``video/gaussian`` a Gaussian fitted to the training clips.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ebmcore.kit.metrics import beside, fitted_gaussian

LAGS = (1, 2, 4)
BINS = 16


def clip_statistics(x: Tensor) -> dict[str, Tensor]:
    """The four statistics of the clips ``x`` ``(N, C, T, H, W)`` (float64)."""
    x = x.detach().to("cpu", torch.float64).clamp(-1, 1)
    n, _, t = x.shape[:3]
    frames = x.transpose(1, 2).reshape(n, t, -1)  # (N, T, pixels)
    centred = frames - frames.mean(2, keepdim=True)
    unit = centred / centred.norm(dim=2, keepdim=True).clamp_min(1e-12)
    autocorr = torch.stack([(unit[:, :-lag] * unit[:, lag:]).sum(2).mean() for lag in LAGS if lag < t])
    deviation = frames - frames.mean(1, keepdim=True)  # from each clip's mean frame
    power = torch.fft.rfft(deviation, dim=1).abs().pow(2)[:, 1:].mean((0, 2))
    spectrum = power / power.sum().clamp_min(1e-12)
    motion = deviation.pow(2).mean().sqrt().view(1)
    histogram = torch.histc(x, bins=BINS, min=-1, max=1) / x.numel()
    return {"autocorr": autocorr, "spectrum": spectrum, "motion": motion, "histogram": histogram}


def statistics_distance(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    """The sum over the statistics of their L1 distances."""
    return float(sum((a[k] - b[k]).abs().sum() for k in a))


class VideoMetrics:
    """``video`` of sample clips against the held-out clips, beside its yardsticks."""

    def __init__(self, train: Tensor, heldout: Tensor, *, seed: int = 0):
        self.reference = clip_statistics(heldout)
        self.train, self.seed = train, seed
        self._yardsticks: dict[int, dict[str, float]] = {}

    def distance(self, x: Tensor) -> float:
        return statistics_distance(clip_statistics(x), self.reference)

    def yardsticks(self, n: int) -> dict[str, float]:
        """Each yardstick from ``n`` clips (as many as the samples), computed once per n."""
        if n not in self._yardsticks:
            g = torch.Generator().manual_seed(self.seed)
            train = self.train[torch.randperm(len(self.train), generator=g)[:n]]
            order = torch.argsort(torch.rand(len(train), train.shape[2], generator=g), dim=1)
            shuffled = torch.stack([clip[:, o] for clip, o in zip(train, order, strict=True)])
            noise = torch.rand((n, *train.shape[1:]), generator=g) * 2 - 1
            gaussian = fitted_gaussian(self.train, n, rng=torch.Generator().manual_seed(self.seed + 1))
            self._yardsticks[n] = {"heldout": self.distance(train), "shuffled": self.distance(shuffled),
                                   "noise": self.distance(noise), "gaussian": self.distance(gaussian)}
        return self._yardsticks[n]

    def __call__(self, samples: Tensor) -> dict[str, float]:
        if len(samples) < 1:
            return {}
        return beside("video", self.distance(samples), self.yardsticks(min(len(samples), len(self.train))))
