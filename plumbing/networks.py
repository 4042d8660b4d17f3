"""Every network the course explains, one row each, and how a row becomes a network with its weights.

A new network is one row of NETWORKS (and its test): the `--model` flag, the demos' Grad-CAM layer,
lecture 5's depths, the check of a `--layer` and the words in a figure's title all read the row.
Building a row's network imports torchvision only then, so a mistake in the flags costs no second.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from plumbing import digit_networks
from plumbing.errors import InputError, file_kind, shown
from plumbing.weights import Lite0Weights, download_state_dict, efficientnet_lite0, read_state_dict


@dataclass(frozen=True)
class Network:
    """One network: how to build it, where its weights come from, and what the lectures read in it."""

    name: str  # the `--model` value
    track: str  # "imagenet": photos, ImageNet's 1,000 classes; "mnist": 28 x 28 grey digits in [0, 1]
    architecture: Callable[[], nn.Module]  # the untrained network (cheap on the "meta" device)
    weights: Callable[[], object]  # ImageNet: an object with meta["categories"] and transforms();
    #                                digits: the Path of the state dict shipped in data/
    cam_layer: str | None  # the demos' Grad-CAM layer: an output after its activation (None: none)
    stages: tuple[str, ...] = ()  # lecture 5's four depths, shallow to deep, each what the next layer reads
    input_size: int = 224  # the side of a demo input
    channels: int = 3
    layer_words: dict[str, str] = field(default_factory=dict)  # titles' words for a module name that says little
    state_key: str = ""  # a key that only this family's state dicts hold, for "holds the weights of ..."
    family: str = "a network"
    on_command_line: bool = True  # offered by `--model` (lecture 9's digit ViT and MLP are its own)
    remedy: str = "restore data/ from the repository"  # what to do when shipped weights are missing


def torchvision_network(builder: str) -> Callable[[], nn.Module]:
    """torchvision.models.`builder`(weights=None), imported when called."""
    def build() -> nn.Module:
        from torchvision import models
        return getattr(models, builder)(weights=None)
    return build


def torchvision_weights(enum: str) -> Callable[[], object]:
    """torchvision.models.`enum`.DEFAULT, imported when called."""
    def weights() -> object:
        from torchvision import models
        return getattr(models, enum).DEFAULT
    return weights


def lite0_weights() -> Lite0Weights:
    from torchvision import models
    # The class names are torchvision's ImageNet list, in the same order: no download.
    return Lite0Weights(models.ResNet50_Weights.DEFAULT.meta["categories"])


VIT_REMEDY = "run tools/train_digit_vit.py to make them, or restore data/ from the repository"
RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
# Why these layers: each is an output after its activation, what the rest of the network sees (a conv's
# raw output has negative values that the ReLU zeroes, yet they would still add alpha_k * A_k to a class
# activation map). ResNets: a block's output, after the residual addition; VGG-16: relu5_3, as in the
# Grad-CAM paper's code; EfficientNet-Lite0: its head's ReLU6 `_swish`, which its forward also calls on
# the stem first (a hook keeps the last call, the head's 7x7 map), and blocks' outputs for the stages
# (its MBConv blocks end without an activation, and their inner ReLU6 maps leave Grad-CAM almost nothing
# positive); the digit CNN: the ReLU after its last conv.
NETWORKS: dict[str, Network] = {row.name: row for row in [
    Network("resnet18", "imagenet", torchvision_network("resnet18"), torchvision_weights("ResNet18_Weights"),
            "layer4", RESNET_STAGES, state_key="layer1.0.conv1.weight", family="a ResNet"),
    Network("resnet50", "imagenet", torchvision_network("resnet50"), torchvision_weights("ResNet50_Weights"),
            "layer4", RESNET_STAGES, state_key="layer1.0.conv1.weight", family="a ResNet"),
    Network("vgg16", "imagenet", torchvision_network("vgg16"), torchvision_weights("VGG16_Weights"),
            "features.29", ("features.8", "features.15", "features.22", "features.29"),
            state_key="classifier.6.weight", family="a VGG"),
    Network("vit_b_16", "imagenet", torchvision_network("vit_b_16"), torchvision_weights("ViT_B_16_Weights"),
            None, state_key="class_token", family="a Vision Transformer"),
    # Optional (requirements-dev.txt): a real pretrained network whose weights ship in a package (offline).
    Network("efficientnet_lite0", "imagenet", efficientnet_lite0, lite0_weights,
            "_swish", ("_blocks.2", "_blocks.4", "_blocks.10", "_swish"),
            layer_words={"_swish": "head ReLU6 (_swish)"},  # the head's activation keeps a Swish's name
            state_key="_blocks.0._depthwise_conv.weight", family="an EfficientNet"),
    Network("mnist", "mnist", digit_networks.MnistCNN, lambda: digit_networks.MNIST_WEIGHTS,
            digit_networks.MnistCNN.CAM_LAYER, ("features.3", "features.8", "features.11", "features.13"),
            input_size=28, channels=1, state_key="classifier.3.weight", family="the digit CNN (MnistCNN)",
            remedy="run tools/train_mnist_cnn.py to make them, or restore data/ from the repository"),
    Network("digit_vit", "mnist", digit_networks.digit_vit, lambda: digit_networks.DIGIT_VIT_WEIGHTS, None,
            input_size=28, channels=1, state_key="conv_proj.weight", family="the digit ViT",
            on_command_line=False, remedy=VIT_REMEDY),
    Network("digit_mlp", "mnist", digit_networks.digit_mlp, lambda: digit_networks.DIGIT_MLP_WEIGHTS, None,
            input_size=28, channels=1, state_key="1.weight", family="the digit MLP", on_command_line=False,
            remedy=VIT_REMEDY),
]}


def model_choices() -> list[str]:
    """What `--model` offers: the ImageNet networks, then the digit CNN."""
    return [name for name, row in NETWORKS.items() if row.on_command_line]


def network(name: str) -> Network:
    """The row of `name`; an unknown name is one line that lists the choices."""
    if name not in NETWORKS:
        raise InputError(f"unknown model {name!r}; choose from {', '.join(model_choices())}")
    return NETWORKS[name]


def describe_state_dict(state: dict[str, torch.Tensor]) -> str:
    """What a state dict holds, in a few words: "a ResNet (122 tensors, 1000 outputs)"."""
    family = next((row.family for row in NETWORKS.values() if row.state_key in state), "a network")
    last = next((t for t in reversed(state.values()) if t.dim() == 1), None)  # the output layer's bias
    return f"{family} ({len(state)} tensors" + (f", {last.numel()} outputs)" if last is not None else ")")


def load_imagenet_model(name: str, weights_file: Path | None = None) -> tuple[nn.Module, list[str], object]:
    """An ImageNet classifier in eval mode: (model, class names, its preprocessing).

    Pretrained weights come from torchvision's weights API (`ResNet50_Weights.DEFAULT`
    and so on), from EfficientNet-Lite0's package, or from `weights_file`. Raises
    WeightsUnavailable when offline with nothing cached, InputError for a bad
    `weights_file` or a missing optional package.
    """
    row = network(name)
    if row.track != "imagenet":
        raise InputError(f"{name} is not an ImageNet network")
    model, weights = row.architecture(), row.weights()
    if weights_file:
        state = read_state_dict(weights_file)
    elif isinstance(weights, Lite0Weights):
        state = weights.state_dict()  # from its package, offline
    else:
        state = download_state_dict(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise InputError(f"{shown(weights_file or 'the checkpoint', 50)} holds the weights of "
                         f"{describe_state_dict(state)}; --model {name} needs those of "
                         f"{describe_state_dict(model.state_dict())}") from None
    return model.eval(), list(weights.meta["categories"]), weights.transforms()  # type: ignore[attr-defined]


def load_digit_network(name: str, weights_file: Path | None = None) -> nn.Module:
    """A digit network of the table with its trained weights (shipped in data/, or `weights_file`), in eval
    mode; one line when they are missing or wrong."""
    row = network(name)
    path = Path(weights_file) if weights_file else Path(row.weights())
    if file_kind(path, "--weights") == "missing":
        raise InputError(f"{shown(path)}: {row.family}'s weights are missing; "
                         f"{row.remedy}")
    model = row.architecture()
    state = read_state_dict(path)  # a folder, a pipe or a file that is no state dict: one line there
    expected = model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise InputError(f"{shown(path, 50)} holds the weights of {describe_state_dict(state)}; {row.family} "
                         f"needs its own {len(expected)} tensors, the first {next(iter(expected))!r}")
    model.load_state_dict(state)
    return model.eval()


def load_mnist_cnn(weights_file: Path | None = None) -> digit_networks.MnistCNN:
    """The course's digit CNN with the trained weights shipped in `data/`, in eval mode."""
    return load_digit_network("mnist", weights_file)  # type: ignore[return-value]


def load_digit_vit(weights_file: Path | None = None) -> nn.Module:
    """Lecture 9's digit ViT with the trained weights shipped in `data/`, in eval mode."""
    return load_digit_network("digit_vit", weights_file)


def load_digit_mlp(weights_file: Path | None = None) -> nn.Module:
    """Lecture 9's digit MLP with the trained weights shipped in `data/`, in eval mode."""
    return load_digit_network("digit_mlp", weights_file)
