"""ConvNet energies for images ``(N, C, H, W)`` in [−1, 1].

- ``swish_cnn``: the small strided Swish CNN of the UvA EBM tutorial (seed 004).
- ``genconvnet``: the Generative ConvNet (Xie et al. 2016): a bottom-up ConvNet f(x) whose
  energy is −f(x) + ‖x‖²/2σ², i.e. an exponential tilting of a Gaussian reference.
- ``resnet``: a small residual energy in the style of IGEBM (Du & Mordatch 2019), with
  optional spectral normalisation.

All take any square or rectangular size: the head's input size is found by a dry run.
Each can be conditional (``condition``): on a class label (one energy per class from the
head, E(x, y); without a label, the marginal −log Σ_y exp(−E(x, y))) or on a completion
condition (:func:`ebmcore.kit.masks.completion_condition`, concatenated to x as channels).
"""

from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from ebmcore import Condition, Energy
from ebmcore import config as cfg
from ebmcore.kit.layers import ACTIVATIONS
from ebmcore.kit.likelihood import fitted_reference, reference_fit_field
from ebmcore.kit.readout import label_energy

Activation = Literal["swish", "relu", "leaky_relu", "elu", "softplus"]


def _reference_std() -> object:
    return attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
                       metadata={"doc": "add ‖x‖²/(2σ²), a Gaussian reference distribution (Xie et al. 2016)"})


ConditionName = Literal["none", "label", "completion"]


def _condition() -> object:
    return cfg.doc("'label': E(x, y) for class labels y (one head output per class); 'completion': "
                   "E(x, observed part), the condition of ebmcore.kit.masks.completion_condition "
                   "concatenated to x as channels; 'none'", default="none")


def _maybe_sn(layer: nn.Module, sn: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if sn else layer


def _image_shape(ctx, who: str) -> tuple[int, int, int]:
    shape = ctx.need_event_shape(who)
    if len(shape) != 3:
        raise ValueError(f"{who} needs images (channels, height, width), the data are {shape}")
    return shape


def _io(shape: tuple[int, int, int], condition: Condition, ctx, who: str) -> tuple[tuple[int, int, int], int]:
    """The features' input shape and the head's output size for a ``condition``."""
    c, h, w = shape
    if condition is Condition.LABEL:
        if not ctx.num_classes:
            raise ValueError(f"{who} with condition = 'label' needs data with classes (num_classes)")
        return shape, ctx.num_classes
    if condition is Condition.COMPLETION:
        return (2 * c + 1, h, w), 1  # x, the observed image and the missing indicator
    return shape, 1


def _flat_size(features: nn.Module, shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, *shape)).flatten(1).shape[1]


class ImageEnergy(Energy):
    """features → flatten → head, plus the optional Gaussian reference terms: ‖x‖²/2σ², or
    −log N(x) of a Gaussian fitted to the training images."""

    def __init__(self, features: nn.Module, head: nn.Module, reference_std: float | None = None,
                 condition: Condition = Condition.NONE, reference: nn.Module | None = None):
        super().__init__()
        self.features, self.head, self.reference_std = features, head, reference_std
        self.condition, self.reference = condition, reference

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        inp = x
        if self.condition is Condition.COMPLETION:
            if cond is None:
                raise ValueError("a completion energy needs its condition (the observed image and mask)")
            inp = torch.cat([x, cond.to(x.dtype)], dim=1)
        out = self.head(self.features(inp).flatten(1))
        e = label_energy(out, cond) if self.condition is Condition.LABEL else out.squeeze(-1)
        if self.reference_std is not None:
            e = e + x.flatten(1).pow(2).sum(1) / (2 * self.reference_std**2)
        if self.reference is not None:
            e = e + self.reference(x)
        return e


# --- Swish CNN (seed 004) -------------------------------------------------------------------

@attrs.frozen
class SwishCNNConfig:
    """The UvA tutorial's CNN (seed 004): four stride-2 convolutions with Swish, two linear layers."""

    hidden: int = cfg.positive("channels of the middle convolution (the first has half, the last two double)",
                               default=32)
    reference_std: float | None = _reference_std()
    reference_fit: float | None = reference_fit_field()
    condition: ConditionName = _condition()


class SwishCNN(ImageEnergy):
    """The UvA tutorial's CNN (seed 004)."""

    @classmethod
    def from_config(cls, c: SwishCNNConfig, ctx) -> "SwishCNN":
        condition = Condition(c.condition)
        shape, outputs = _io(_image_shape(ctx, "energy 'swish_cnn'"), condition, ctx, "energy 'swish_cnn'")
        h1, h2, h3 = c.hidden // 2 or 1, c.hidden, c.hidden * 2
        features = nn.Sequential(
            # padding 4 turns 28×28 into an effective 32×32, as in the tutorial
            nn.Conv2d(shape[0], h1, 5, stride=2, padding=4), nn.SiLU(),
            nn.Conv2d(h1, h2, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(h2, h3, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(h3, h3, 3, stride=2, padding=1), nn.SiLU())
        head = nn.Sequential(nn.Linear(_flat_size(features, shape), h3), nn.SiLU(), nn.Linear(h3, outputs))
        return cls(features, head, c.reference_std, condition,
                   fitted_reference(c.reference_fit, ctx, "energy 'swish_cnn'"))


# --- Generative ConvNet (Xie et al. 2016) ---------------------------------------------------

def _channels(_inst, _attr, value):
    if not value or any(c < 1 for c in value):
        raise ValueError(f"must be a non-empty list of positive channel counts, got {list(value)}")


@attrs.frozen
class GenConvNetConfig:
    """Generative ConvNet (Xie et al. 2016): bottom-up conv layers, a linear top, a Gaussian reference."""

    channels: tuple[int, ...] = attrs.field(default=(64, 128, 256), validator=_channels,
                                            metadata={"doc": "channels of each conv layer (each halves the size)"})
    kernel: int = cfg.positive("kernel size of the first layer (later layers use 3)", default=5)
    activation: Activation = cfg.doc("activation after each conv layer (the paper uses ReLU)",
                                     default="leaky_relu")
    reference_std: float | None = attrs.field(
        default=1.0, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "σ of the Gaussian reference ‖x‖²/(2σ²) (Xie et al. 2016); unset: none"})
    condition: ConditionName = _condition()


class GenConvNet(ImageEnergy):
    """The Generative ConvNet (Xie et al. 2016)."""

    @classmethod
    def from_config(cls, c: GenConvNetConfig, ctx) -> "GenConvNet":
        condition = Condition(c.condition)
        shape, outputs = _io(_image_shape(ctx, "energy 'genconvnet'"), condition, ctx, "energy 'genconvnet'")
        layers: list[nn.Module] = []
        prev = shape[0]
        for i, ch in enumerate(c.channels):
            k = c.kernel if i == 0 else 3
            layers += [nn.Conv2d(prev, ch, k, stride=2, padding=k // 2), ACTIVATIONS[c.activation]()]
            prev = ch
        features = nn.Sequential(*layers)
        return cls(features, nn.Linear(_flat_size(features, shape), outputs), c.reference_std, condition)


# --- ResNet (IGEBM style) -------------------------------------------------------------------

class ResBlock(nn.Module):
    """x + conv(act(conv(act(x)))), then optional 2× average-pool downsampling."""

    def __init__(self, channels: int, out: int, downsample: bool, sn: bool):
        super().__init__()
        self.body = nn.Sequential(nn.SiLU(), _maybe_sn(nn.Conv2d(channels, out, 3, padding=1), sn),
                                  nn.SiLU(), _maybe_sn(nn.Conv2d(out, out, 3, padding=1), sn))
        self.skip = nn.Identity() if channels == out else _maybe_sn(nn.Conv2d(channels, out, 1), sn)
        self.pool = nn.AvgPool2d(2) if downsample else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.skip(x) + self.body(x))


class SumPool(nn.Module):
    """Sum over positions after a final activation: IGEBM's global pooling."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.silu(x).sum((2, 3))


@attrs.frozen
class ResNetConfig:
    """A small residual energy (IGEBM style): stem conv, residual blocks with pooling, sum-pooled linear head."""

    width: int = cfg.positive("channels of the first stage (doubled after each downsampling)", default=32)
    blocks: int = cfg.positive("residual blocks; each but the last halves the size", default=3)
    spectral_norm: bool = cfg.doc("spectral normalisation of every conv and linear layer (IGEBM)", default=False)
    reference_std: float | None = _reference_std()
    condition: ConditionName = _condition()


class ResNetEnergy(ImageEnergy):
    """A small residual energy in the style of IGEBM."""

    @classmethod
    def from_config(cls, c: ResNetConfig, ctx) -> "ResNetEnergy":
        condition = Condition(c.condition)
        shape, outputs = _io(_image_shape(ctx, "energy 'resnet'"), condition, ctx, "energy 'resnet'")
        sn = c.spectral_norm
        layers: list[nn.Module] = [_maybe_sn(nn.Conv2d(shape[0], c.width, 3, padding=1), sn)]
        ch = c.width
        for i in range(c.blocks):
            last = i == c.blocks - 1
            out = ch if last else ch * 2
            layers.append(ResBlock(ch, out, downsample=not last, sn=sn))
            ch = out
        layers.append(SumPool())
        return cls(nn.Sequential(*layers), _maybe_sn(nn.Linear(ch, outputs), sn), c.reference_std, condition)
