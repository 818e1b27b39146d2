"""The image modality for ebm: data (digits, IDX, folders, textures), ConvNet energies, metrics.

All images are ``(N, C, H, W)`` float32 in [−1, 1]. Dequantisation noise is not added here:
it belongs per batch to the objective (``ebm-mle``'s ``data_noise``), so each step sees fresh
noise and the data set stays fixed.
"""

from ebm_image.common import ImageData, image_grid_png
from ebm_image.digits import DigitsConfig, digits_data
from ebm_image.energies import (
    GenConvNetConfig,
    ResNetConfig,
    SwishCNNConfig,
    genconvnet,
    resnet,
    swish_cnn,
)
from ebm_image.folder import ImageFolderConfig, image_folder_data
from ebm_image.frame import FrameConfig, FrameEnergy
from ebm_image.idx import IdxConfig, idx_data, read_idx, read_idx_images
from ebm_image.tasks import (
    ClassAccuracyConfig,
    DenoiseConfig,
    InpaintConfig,
    OODConfig,
    build_class_accuracy,
    build_denoise,
    build_inpaint,
    build_ood,
)
from ebm_image.texture import TextureConfig, texture_data
from ebmcore import Component, hookimpl

__all__ = ["ClassAccuracyConfig", "DenoiseConfig", "DigitsConfig", "FrameConfig", "FrameEnergy", "GenConvNetConfig", "IdxConfig",
           "ImageData", "ImageFolderConfig", "InpaintConfig", "OODConfig", "ResNetConfig", "SwishCNNConfig",
           "TextureConfig", "digits_data", "genconvnet", "idx_data", "image_folder_data", "image_grid_png",
           "read_idx", "read_idx_images", "resnet", "swish_cnn", "texture_data"]


@hookimpl
def ebm_components():
    return [
        Component("data", "digits", DigitsConfig, digits_data),
        Component("data", "idx", IdxConfig, idx_data),
        Component("data", "image_folder", ImageFolderConfig, image_folder_data),
        Component("data", "texture", TextureConfig, texture_data),
        Component("energy", "swish_cnn", SwishCNNConfig, swish_cnn),
        Component("energy", "genconvnet", GenConvNetConfig, genconvnet),
        Component("energy", "resnet", ResNetConfig, resnet),
        Component("energy", "frame", FrameConfig, FrameEnergy.from_config),
        Component("task", "inpaint", InpaintConfig, build_inpaint, requires=("sampler",)),
        Component("task", "denoise", DenoiseConfig, build_denoise, requires=("sampler",)),
        Component("task", "ood", OODConfig, build_ood),
        Component("task", "class_accuracy", ClassAccuracyConfig, build_class_accuracy),
    ]
