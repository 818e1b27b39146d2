"""What the bundled energies build their layers from."""

from __future__ import annotations

from torch import nn

#: activation modules by the name a recipe gives (each energy's config lists the ones it allows;
#: "swish" and "silu" are one function under its two names)
ACTIVATIONS = {"swish": nn.SiLU, "silu": nn.SiLU, "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2),
               "elu": nn.ELU, "softplus": nn.Softplus, "tanh": nn.Tanh}


def check_per_layer(channels, kernels, strides) -> None:
    """A config's per-layer lists must have one entry per layer each (ValueError otherwise)."""
    if not len(channels) == len(kernels) == len(strides):
        raise ValueError(f"channels, kernels and strides must have one entry per layer, got "
                         f"{len(channels)}, {len(kernels)} and {len(strides)}")
