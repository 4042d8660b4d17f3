"""Shared fixtures: the tests run offline, in a private TORCH_HOME, on small networks."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

if os.environ.get("PYTEST_XDIST_WORKER"):  # the cores shared between the workers (children included), so
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    torch.set_num_threads(_threads)  # that no worker's torch threads wait on another's
    os.environ["OMP_NUM_THREADS"] = str(_threads)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import dataclasses  # noqa: E402

import utils  # noqa: E402
from plumbing.networks import NETWORKS  # noqa: E402
from plumbing.weights import cached_weights_path  # noqa: E402


lecture = utils.load_lecture  # the course's one way to import a numbered script


def replace_network(monkeypatch, name: str, architecture) -> None:
    """For one test, the table's row `name` builds `architecture()` instead (its weights stay)."""
    monkeypatch.setitem(NETWORKS, name, dataclasses.replace(NETWORKS[name], architecture=architecture))

SLOWEST_FIRST = ("test_exercises.py", "test_09_advanced_techniques.py", "test_08_comparative_analysis.py")


def pytest_collection_modifyitems(items):
    """The slowest test files first (pyproject.toml keeps this order for the workers), so that the
    two workers finish together instead of one starting the graders' tests when the other is done."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _refuse(*args, **kwargs):
    raise OSError("network access is disabled in the tests")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No test reaches the network, and none sees the user's own torch.hub cache."""
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("empty_torch_home")))


def with_batchnorm_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.2 * torch.randn(c, generator=generator))
    return model


def random_resnet18(num_classes: int = 1000, seed: int = 0) -> nn.Module:
    """torchvision's ResNet-18 (in-place ReLU used twice per block), random, in eval mode."""
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    return with_batchnorm_statistics(resnet18(num_classes=num_classes), seed).eval()


@pytest.fixture(scope="session")
def resnet18_checkpoint(tmp_path_factory) -> Path:
    """A random ResNet-18 state dict on disk, standing in for the pretrained download."""
    path = tmp_path_factory.mktemp("checkpoint") / "resnet18_random.pth"
    torch.save(random_resnet18().state_dict(), path)
    return path


@pytest.fixture
def cached_resnet18(monkeypatch, tmp_path, resnet18_checkpoint) -> Path:
    """A TORCH_HOME whose torch.hub cache holds 'the pretrained' ResNet-18 (random weights).

    With it, `--model resnet18` and every `--quick` run take the ImageNet track offline.
    """
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cached = cached_weights_path(NETWORKS["resnet18"].weights())
    cached.parent.mkdir(parents=True)
    cached.symlink_to(resnet18_checkpoint)
    return cached


def small_resnet(num_classes: int = 1000) -> nn.Module:
    """torchvision's ResNet with one BasicBlock per stage instead of two: the same kinds of layer
    (BatchNorm, in-place ReLU, residual sums with and without a downsampling branch, layer4,
    avgpool, fc) at about half of ResNet-18's work."""
    from torchvision.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)


@pytest.fixture
def cached_small_resnet18(monkeypatch, tmp_path) -> Path:
    """Like cached_resnet18, with small_resnet built under ResNet-18's name: for the lectures' slow
    --quick runs, whose point is the pipeline, not ResNet-18's depth (the other tests load the real
    architecture from the cache)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    replace_network(monkeypatch, "resnet18", small_resnet)
    cached = cached_weights_path(NETWORKS["resnet18"].weights())
    cached.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(with_batchnorm_statistics(small_resnet()).state_dict(), cached)
    return cached

