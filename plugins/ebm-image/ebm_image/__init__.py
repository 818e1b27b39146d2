"""The image modality for ebm: data (digits, IDX, folders, textures), ConvNet energies, metrics.

All images are ``(N, C, H, W)`` float32 in [−1, 1]. Dequantisation noise is not added here:
it belongs per batch to the objective (``ebm-mle``'s ``data_noise``), so each step sees fresh
noise and the data set stays fixed.
"""

from ebm_image.common import ImageData
from ebm_image.digits import DigitsConfig, DigitsData
from ebm_image.energies import (
    GenConvNet,
    GenConvNetConfig,
    ImageEnergy,
    ResNetConfig,
    ResNetEnergy,
    SwishCNN,
    SwishCNNConfig,
)
from ebm_image.folder import FolderData, ImageFolderConfig
from ebm_image.frame import FrameConfig, FrameEnergy
from ebm_image.idx import IdxConfig, IdxData, read_idx, read_idx_images
from ebm_image.tasks import (
    OOD,
    ClassAccuracy,
    ClassAccuracyConfig,
    Denoise,
    DenoiseConfig,
    Inpaint,
    InpaintConfig,
    OODConfig,
)
from ebm_image.texture import TextureConfig, TextureData
from ebmcore import Component, hookimpl

__all__ = ["OOD", "ClassAccuracy", "ClassAccuracyConfig", "Denoise", "DenoiseConfig", "DigitsConfig", "DigitsData",
           "FolderData", "FrameConfig", "FrameEnergy", "GenConvNet", "GenConvNetConfig", "IdxConfig", "IdxData",
           "ImageData", "ImageEnergy", "ImageFolderConfig", "Inpaint", "InpaintConfig", "OODConfig", "ResNetConfig",
           "ResNetEnergy", "SwishCNN", "SwishCNNConfig", "TextureConfig", "TextureData", "read_idx", "read_idx_images"]


@hookimpl
def ebm_components():
    return [
        Component("data", "digits", DigitsConfig, DigitsData.from_config),
        Component("data", "idx", IdxConfig, IdxData.from_config),
        Component("data", "image_folder", ImageFolderConfig, FolderData.from_config),
        Component("data", "texture", TextureConfig, TextureData.from_config),
        Component("energy", "swish_cnn", SwishCNNConfig, SwishCNN.from_config),
        Component("energy", "genconvnet", GenConvNetConfig, GenConvNet.from_config),
        Component("energy", "resnet", ResNetConfig, ResNetEnergy.from_config),
        Component("energy", "frame", FrameConfig, FrameEnergy.from_config),
        Component("task", "inpaint", InpaintConfig, Inpaint.from_config, requires=("sampler",)),
        Component("task", "denoise", DenoiseConfig, Denoise.from_config, requires=("sampler",)),
        Component("task", "ood", OODConfig, OOD.from_config),
        Component("task", "class_accuracy", ClassAccuracyConfig, ClassAccuracy.from_config),
    ]
