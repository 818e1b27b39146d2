"""FRAME (Zhu, Wu & Mumford 1998) as a differentiable energy.

    E(x) = Σ_k Σ_pos φ_k((F_k ∗ x)(pos))  [+ ‖x‖² / (2σ²)]

A fixed filter bank F_k (built here in torch, all ``kernel × kernel``):

- intensity: the identity (a delta), so φ models the grey-level histogram;
- difference of Gaussians at ``dog_scales`` (centre σ, surround 2σ): zero-mean blob detectors;
- Gabor filters, cosine and sine phase, at ``orientations`` angles and ``gabor_scales``
  envelope widths σ (wavelength 2σ·π/√(2 ln 2)·… simplified to λ = 2.5σ), made zero-mean.

Every filter except the identity has zero mean and unit L2 norm. With ``padding =
"reflect"`` (the default) the image is mirrored at its borders before filtering, so every
pixel is constrained by as many responses as any other (with "valid", responses are taken
only where the filter fits and the border pixels, seen by few responses, stay noisy).

FRAME's potentials are step functions on histogram bins; here φ_k is smooth so that
Langevin applies: a cubic B-spline (twice continuously differentiable) with ``bins``
learned coefficients on a uniform grid of response values over
[−``response_range``, ``response_range``], constant beyond it (φ′ jumps to 0 there).
Each response touches only four coefficients, so the energy costs little more than the
convolution. The coefficients start at zero (E = 0: the uniform model, or the reference
Gaussian) and maximum likelihood matches, basis function by basis function, the soft
histograms of each filter's responses on the samples to those on the data — FRAME's
moment matching.
"""

import math
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmcore import EbmError, Energy
from ebmcore import config as cfg


def gaussian_kernel(sigma: float, size: int) -> Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    g = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
    return g / g.sum()


def _unit(k: Tensor) -> Tensor:
    k = k - k.mean()
    return k / k.norm()


def dog_kernel(sigma: float, size: int) -> Tensor:
    """Difference of Gaussians (centre σ minus surround 2σ), zero-mean, unit norm: responds to blobs of radius ≈ σ."""
    return _unit(gaussian_kernel(sigma, size) - gaussian_kernel(2 * sigma, size))


def gabor_kernel(sigma: float, theta: float, phase: float, size: int) -> Tensor:
    """Gabor filter: Gaussian envelope σ times a cosine of wavelength 2.5σ across angle θ; zero-mean, unit norm."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    u = x * math.cos(theta) + y * math.sin(theta)
    envelope = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
    return _unit(envelope * torch.cos(2 * math.pi * u / (2.5 * sigma) + phase))


def filter_bank(kernel: int = 11, dog_scales=(0.7, 1.4, 2.8), gabor_scales=(1.5, 3.0),
                orientations: int = 4) -> tuple[Tensor, list[str]]:
    """The bank ``(K, 1, kernel, kernel)`` float32 and a name per filter."""
    if kernel % 2 == 0:
        raise ValueError(f"kernel must be odd, got {kernel}")
    filters, names = [], []
    delta = torch.zeros(kernel, kernel, dtype=torch.float64)
    delta[kernel // 2, kernel // 2] = 1.0
    filters.append(delta)
    names.append("intensity")
    for s in dog_scales:
        filters.append(dog_kernel(s, kernel))
        names.append(f"dog/{s:g}")
    for s in gabor_scales:
        for i in range(orientations):
            theta = math.pi * i / orientations
            for phase, pname in ((0.0, "cos"), (math.pi / 2, "sin")):
                filters.append(gabor_kernel(s, theta, phase, kernel))
                names.append(f"gabor/{s:g}/{round(math.degrees(theta))}/{pname}")
    return torch.stack(filters).unsqueeze(1).float(), names


@attrs.frozen
class FrameConfig:
    """FRAME (Zhu, Wu & Mumford 1998): learned smooth potentials of fixed filter responses, summed over positions."""

    kernel: int = cfg.positive("filter size (odd)", default=11)
    dog_scales: tuple[float, ...] = cfg.doc("σ of the difference-of-Gaussians filters", default=(0.7, 1.4, 2.8))
    gabor_scales: tuple[float, ...] = cfg.doc("envelope σ of the Gabor filters", default=(1.5, 3.0))
    orientations: int = cfg.positive("Gabor orientations (each with a cosine and a sine phase)", default=4)
    bins: int = attrs.field(default=33, validator=attrs.validators.ge(2),
                            metadata={"doc": "B-spline knots (learned coefficients) per potential φ_k"})
    response_range: float = cfg.positive("the knots cover responses in [−r, r]; φ_k is constant beyond",
                                         default=2.0)
    padding: Literal["reflect", "valid"] = cfg.doc(
        "'reflect': mirror the borders (every pixel equally constrained); 'valid': only where filters fit",
        default="reflect")
    reference_std: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "add ‖x‖²/(2σ²) (a Gaussian reference model)"})


class FrameEnergy(Energy):
    """E(x) = Σ_k Σ_pos φ_k((F_k ∗ x)(pos)), φ_k(r) = Σ_j w_kj · B₃((r − c_j) / h), cubic B-splines B₃."""

    def __init__(self, channels: int = 1, kernel: int = 11, dog_scales=(0.7, 1.4, 2.8),
                 gabor_scales=(1.5, 3.0), orientations: int = 4, bins: int = 33,
                 response_range: float = 2.0, padding: str = "reflect", reference_std: float | None = None):
        super().__init__()
        bank, self.filter_names = filter_bank(kernel, dog_scales, gabor_scales, orientations)
        k = len(bank)
        # every channel is filtered separately (grouped convolution); a grey image has one
        self.channels = channels
        self.register_buffer("filters", bank.repeat(channels, 1, 1, 1), persistent=False)
        # power basis of the uniform cubic B-spline: rows t⁰ … t³, columns w_{j−1} … w_{j+2}
        self.register_buffer("_bspline", torch.tensor([[1, 4, 1, 0], [-3, 0, 3, 0], [3, -6, 3, 0],
                                                       [-1, 3, -3, 1]], dtype=torch.float32) / 6,
                             persistent=False)
        self._spectra: dict = {}
        self.response_range, self.bins = response_range, bins
        self.width = 2 * response_range / (bins - 1)
        self.weights = nn.Parameter(torch.zeros(channels * k, bins))
        self.padding = padding
        self.reference_std = reference_std

    @classmethod
    def from_config(cls, c: FrameConfig, ctx) -> "FrameEnergy":
        shape = ctx.need_event_shape("energy 'frame'")
        if len(shape) != 3 or min(shape[1:]) < c.kernel:
            raise ValueError(f"energy 'frame' needs images (C, H, W) at least {c.kernel}×{c.kernel} "
                             f"(the filter size), the data are {shape}")
        if c.kernel % 2 == 0:
            raise EbmError(f"$.energy.kernel: must be odd, got {c.kernel}")
        return cls(shape[0], c.kernel, c.dog_scales, c.gabor_scales, c.orientations, c.bins,
                   c.response_range, c.padding, c.reference_std)

    def responses(self, x: Tensor) -> Tensor:
        """Filter responses ``(B, C·K, H', W')``: a cross-correlation, of the mirrored image
        (H' = H) or only where the filters fit (H' = H − kernel + 1).

        Computed by FFT: the circular correlation equals the plain one wherever the filter
        does not wrap, and those are exactly the positions kept. (Ten times faster on a CPU
        than ``conv2d`` with 11×11 filters.)
        """
        k = self.filters.shape[-1]
        if self.padding == "reflect":
            x = F.pad(x, (k // 2,) * 4, mode="reflect")
        c, h, w = x.shape[1:]
        spectrum = self._filter_spectrum(h, w, x.device, x.dtype)
        xf = torch.fft.rfft2(x)  # (B, C, h, w//2+1)
        kk = spectrum.shape[0] // c
        prod = xf.repeat_interleave(kk, dim=1) * spectrum
        return torch.fft.irfft2(prod, s=(h, w))[..., :h - k + 1, :w - k + 1]

    def _filter_spectrum(self, h: int, w: int, device, dtype) -> Tensor:
        key = (h, w, str(device), dtype)
        cached = self._spectra.get(key)
        if cached is None:
            padded = F.pad(self.filters[:, 0], (0, w - self.filters.shape[-1], 0, h - self.filters.shape[-2]))
            cached = torch.fft.rfft2(padded.to(device, dtype)).conj()
            self._spectra[key] = cached
        return cached

    def potentials(self, r: Tensor) -> Tensor:
        """φ_k(r) for responses ``r`` ``(B, C·K, P)``, elementwise.

        On knot interval j (t ∈ [0, 1) inside it) the spline is the cubic
        a₀ + a₁t + a₂t² + a₃t³ whose coefficients are fixed linear maps of the four
        coefficients w_{j−1} … w_{j+2}; they are tabulated once per call and gathered.
        """
        b = r.shape[0]
        n = self.bins
        u = ((r + self.response_range) / self.width).clamp(0, n - 1)  # knot units
        j = u.detach().floor().clamp_(max=n - 2)
        t = u - j
        idx = j.long()
        w = F.pad(self.weights.unsqueeze(0), (1, 2), mode="replicate")[0]  # end coefficients repeated
        poly = w.unfold(1, 4, 1)[:, :n - 1] @ self._bspline.T  # (C·K, n−1, 4): a₀ … a₃ per interval
        a = [torch.gather(poly[..., i].unsqueeze(0).expand(b, -1, -1), 2, idx) for i in range(4)]
        return ((a[3] * t + a[2]) * t + a[1]) * t + a[0]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        r = self.responses(x).flatten(2)
        e = self.potentials(r).sum(dim=(1, 2))
        if self.reference_std is not None:
            e = e + x.flatten(1).pow(2).sum(1) / (2 * self.reference_std**2)
        return e


__all__ = ["FrameConfig", "FrameEnergy", "dog_kernel", "filter_bank", "gabor_kernel", "gaussian_kernel"]
