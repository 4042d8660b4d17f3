"""The course's own small networks, whose trained weights ship in data/ (so every lecture runs offline)."""
from __future__ import annotations


import torch
from torch import nn

from plumbing.paths import MNIST_WEIGHTS


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


# %% Lecture 9's two digit networks (weights in data/, made by tools/train_digit_vit.py) ------------

DIGIT_VIT_WEIGHTS = MNIST_WEIGHTS.parent / "digit_vit.pt"
DIGIT_MLP_WEIGHTS = MNIST_WEIGHTS.parent / "digit_mlp.pt"
DIGIT_VIT = dict(image_size=28, patch_size=4, num_layers=4, num_heads=4, hidden_dim=64, mlp_dim=128,
                 num_classes=10)  # 7x7 patches of 4x4 pixels: the digit CNN's 7x7 grid, 50 tokens


def digit_vit() -> nn.Module:
    """torchvision's VisionTransformer for 28x28 grey digits in [0, 1], untrained.

    The class is torchvision's own; only its patch embedding takes one input channel instead of
    three, so it reads the same tensors as the digit CNN.
    """
    from torchvision.models import VisionTransformer

    model = VisionTransformer(**DIGIT_VIT)
    p, hidden = DIGIT_VIT["patch_size"], DIGIT_VIT["hidden_dim"]
    model.conv_proj = nn.Conv2d(1, hidden, kernel_size=p, stride=p)
    nn.init.trunc_normal_(model.conv_proj.weight, std=(1 / (p * p)) ** 0.5)  # torchvision's own init
    nn.init.zeros_(model.conv_proj.bias)
    return model


def digit_mlp() -> nn.Module:
    """784 -> 128 -> 10 on a flattened digit: no convolution, no idea of neighbours.

    It takes (N, 784) or (N, 1, 28, 28) (flattened first, which changes nothing for (N, 784)).
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 128), nn.ReLU(), nn.Linear(128, 10))
