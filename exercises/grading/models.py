"""Small models the checks send to the student's code (module level, so the child can unpickle them).

The child imports this module (and no other grading module) to unpickle them: keep it free of
anything but torch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GradingCNN(nn.Module):
    """A small random CNN for any image size: conv, ReLU, conv, ReLU, 2x2 average pool, linear (5 classes)."""

    def __init__(self, channels: int = 3, classes: int = 5, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 2).flatten(1))


class SumModel(nn.Module):
    """Logits (sum of all pixels, 0): the drop of a patch is the sum of what it hides."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(1)
        return torch.stack([total, torch.zeros_like(total)], dim=1)


class SumOrConstant(nn.Module):
    """Logits (sum of all pixels, `constant`): hiding enough of the image flips the prediction to class 1."""

    def __init__(self, constant: float) -> None:
        super().__init__()
        self.constant = constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(1)
        return torch.stack([total, torch.full_like(total, self.constant)], dim=1)


class WeightedSum(nn.Module):
    """Logits (w . x, -w . x) for a weight tensor shaped like one example."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.weights).flatten(1).sum(1)
        return torch.stack([s, -s], 1)


class LinearTwoClass(nn.Module):
    """Logits (sum of w * x, 0): p_0 = sigmoid(w . x), by hand."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.weights).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


class ConstantModel(nn.Module):
    """Logits (2, 0, -1) whatever the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([2.0, 0.0, -1.0], dtype=x.dtype).expand(x.shape[0], 3)
