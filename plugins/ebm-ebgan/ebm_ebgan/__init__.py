"""Autoencoder-energy GANs for ebm: the energy ``autoencoder`` (D(x), the reconstruction error
of a small conv autoencoder) and the objectives ``ebgan``, ``began`` and ``magan``, which
train it against a trainable generator (any ``ebmcore.LatentGenerator``)."""

from ebm_ebgan.autoencoder import AutoencoderConfig, AutoencoderEnergy
from ebm_ebgan.began import BEGAN, BEGANConfig
from ebm_ebgan.magan import MAGAN, MAGANConfig
from ebm_ebgan.objectives import EBGAN, AutoencoderGAN, EBGANConfig, hinge, pull_away
from ebmcore import Component, hookimpl

__all__ = ["BEGAN", "EBGAN", "MAGAN", "AutoencoderConfig", "AutoencoderEnergy", "AutoencoderGAN", "BEGANConfig",
           "EBGANConfig", "MAGANConfig", "hinge", "pull_away"]


@hookimpl
def ebm_components():
    return [
        Component("energy", "autoencoder", AutoencoderConfig, AutoencoderEnergy.from_config),
        Component("objective", "ebgan", EBGANConfig, EBGAN.from_config, requires=("energy", "generator")),
        Component("objective", "began", BEGANConfig, BEGAN.from_config, requires=("energy", "generator")),
        Component("objective", "magan", MAGANConfig, MAGAN.from_config, requires=("energy", "generator")),
    ]
