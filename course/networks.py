"""The course's own small networks, whose trained weights ship in data/ (so every lecture runs offline)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from course.cli import InputError, file_kind, shown
from course.models import describe_state_dict, read_state_dict
from course.paths import MNIST_WEIGHTS


class MnistCNN(nn.Module):
    """The course's digit classifier: 28x28 grey digits, pixels in [0, 1] (no normalisation).

    CAM's architecture (Zhou et al., 2016): convolutions, then global average
    pooling over the last conv's 7x7 map and ONE linear layer, so class c's
    logit is S_c = sum_k w_ck * mean_ij A_k[i, j] + b_c, with A the output of
    the ReLU after the last conv (`features.12`, read at `CAM_LAYER`,
    `features.13`). There dS_c/dA_k[i, j] = w_ck / 49 at every position, so
    Grad-CAM at CAM_LAYER is exactly CAM, sum_k w_ck A_k, divided by 49
    (lecture 5). Every position is scored by the same weights, so an empty
    corner cannot count as evidence the way a Flatten + Linear head lets it.

    The convolutions have no bias: on black background every activation is 0,
    so the evidence can only sit where there is ink. A side effect worth
    knowing: without biases the features are positively homogeneous,
    f(a x) - b = a (f(x) - b) for a > 0, so from a black baseline integrated
    gradients equals gradient x input exactly, at any step count (lecture 4).

    Built only of modules LRP handles (lecture 9): Conv2d, ReLU, MaxPool2d,
    AdaptiveAvgPool2d, Flatten, Dropout, Linear; no BatchNorm, no residuals.
    Inputs in [0, 1] keep "zero" meaning "black", which lecture 2 relies on.
    Weights: data/mnist_cnn.pt, made by tools/train_mnist_cnn.py.
    """

    CAM_LAYER = "features.13"  # the ReLU after the last conv: the layer Grad-CAM reads (lectures 5, 7)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.ReLU(),  # 0, 1
            nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.ReLU(),  # 2, 3
            nn.MaxPool2d(2),  # 4: 28x28 -> 14x14
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.ReLU(),  # 5, 6
            nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.ReLU(),  # 7, 8
            nn.MaxPool2d(2),  # 9: 14x14 -> 7x7
            nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.ReLU(),  # 10, 11
            nn.Conv2d(128, 128, 3, padding=1, bias=False), nn.ReLU(),  # 12: the last conv; 13: CAM_LAYER
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # (N, 128, 7, 7) -> (N, 128, 1, 1): the global average
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MNIST_CLASSES = [str(d) for d in range(10)]


def load_network(build: Callable[[], nn.Module], path: Path, what: str, remedy: str) -> nn.Module:
    """`build()` with the trained weights in `path`, in eval mode; one line when they are missing or wrong.

    `what` names the network in messages ("the digit CNN"), `remedy` says how to get the file back.
    """
    path = Path(path)
    if file_kind(path, "--weights") == "missing":
        raise InputError(f"{shown(path)}: {what}'s weights are missing; {remedy}")
    model = build()
    state = read_state_dict(path)  # a folder, a pipe or a file that is no state dict: one line there
    expected = model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise InputError(f"{shown(path, 50)} holds the weights of {describe_state_dict(state)}; {what} needs its "
                         f"own {len(expected)} tensors, the first {next(iter(expected))!r}")
    model.load_state_dict(state)
    return model.eval()


def load_mnist_cnn(weights_file: Path | None = None) -> MnistCNN:
    """The course's digit CNN with the trained weights shipped in `data/`, in eval mode."""
    return load_network(MnistCNN, Path(weights_file) if weights_file else MNIST_WEIGHTS, "the digit CNN (MnistCNN)",
                        "run tools/train_mnist_cnn.py to make them, or restore data/ from the repository")
