"""Exercise 1: occlusion sensitivity from scratch.

Intuition: hide a patch of the image and watch the class score; the pixels whose
hiding hurts the score most are the ones the network needed (Zeiler and Fergus, 2014,
"Visualizing and Understanding Convolutional Networks", https://arxiv.org/abs/1311.2901).

    S_c(x)        the logit of class c for image x (N, C, H, W)
    P             a window x window patch, all channels, with its top-left corner at
                  (top, left) = (i * stride, j * stride) for i = 0 .. ceil((H - window) / stride),
                  and j likewise over W: the last patch may hang over the right or bottom
                  edge and is then cut off there (this is how Captum places its patches)
    drop(P)     = S_c(x) - S_c(x with the pixels of P set to `baseline`)
    occlusion_p = mean over the patches P that contain pixel p of drop(P)

Every pixel gets the same value in all its channels. A positive value means hiding
that region lowers the score: the network used it.

Your tasks (run this file to see which are left, then grade it):
    TODO 1  patch_corners(size, window, stride): the corners along one axis
    TODO 2  occlusion(model, inputs, target=None, window=8, stride=4, baseline=0.0)

Grade:    python exercises/grade.py 1 exercises/01_occlusion.py
Run:      python exercises/01_occlusion.py     (a figure in outputs/exercises/ once both are done)
"""
from __future__ import annotations

import math  # math.ceil, for TODO 1
import sys
from pathlib import Path

import torch
from torch import nn

EXERCISES = next((p for p in Path(__file__).resolve().parents if (p / "tasks.py").is_file()), None)
if EXERCISES:  # inside the course folder; grade.py finds tasks.py for a copy kept elsewhere
    sys.path.insert(0, str(EXERCISES))
import tasks  # noqa: E402  (puts the course folder on sys.path)
import utils  # noqa: E402


# %% TODO 1: where the patches go --------------------------------------------------------------


def patch_corners(size: int, window: int, stride: int) -> list[int]:
    """Start of every patch along an axis of `size` pixels: 0, stride, 2 stride, ...

    There are ceil((size - window) / stride) + 1 of them, so the last one reaches the
    last pixel, hanging over the edge when `stride` does not divide `size - window`.
        patch_corners(10, 4, 4) == [0, 4, 8]      the last patch covers pixels 8 and 9 only
    """
    # TODO 1: return the list of corners described above (math.ceil may help).
    raise NotImplementedError("write patch_corners: the start of every patch along one axis")


# %% TODO 2: the method ------------------------------------------------------------------------


def occlusion(model: nn.Module, inputs: torch.Tensor, target=None, window: int = 8, stride: int = 4,
              baseline: float = 0.0) -> torch.Tensor:
    """Occlusion sensitivity of every pixel, shaped like `inputs` (N, C, H, W).

    target    None (each example's predicted class), an int, or one class per example;
              a class outside [0, K) or a list of the wrong length raises ValueError
    window    side of the square patch, in pixels (1 <= window <= min(H, W))
    stride    step between patches, in pixels (1 <= stride <= window, so every pixel is covered)
    baseline  the value a hidden pixel gets
    No side effects: `inputs`, the model's mode and its parameters' .grad stay as they were.
    """
    # TODO 2, step by step:
    #   a. check window and stride (see above): a ValueError that names the allowed range
    #   b. under torch.no_grad(): S_c(x) and the classes from utils.target_scores(model(x), target),
    #      which already turns every form of `target` into classes and raises the ValueErrors
    #   c. for every (top, left) from patch_corners: hide the patch in a copy of x (slicing
    #      x[..., top:top + window, left:left + window] stops at the edge by itself), run the
    #      model, and add each example's drop S_c(x) - S_c(hidden) to the pixels of the patch
    #   d. count how many patches covered each pixel, and return the mean drop
    raise NotImplementedError("write occlusion: the mean score drop over the patches covering each pixel")


# %% The demo: occlusion beside the gradient on real digits -------------------------------------


def main() -> None:
    model = torch.nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    steps = [("patch_corners (TODO 1)", lambda: patch_corners(10, 4, 4)),
             ("occlusion (TODO 2)", lambda: occlusion(model, torch.rand(1, 1, 4, 4), window=2, stride=2))]
    if not tasks.report(1, steps):
        return
    print("patch_corners(10, 4, 4) =", patch_corners(10, 4, 4), "(Captum's placement: [0, 4, 8])")
    digits, labels = tasks.heldout_digits()
    x = digits[::30][:6]  # one of each of the first six digits
    cnn = utils.load_mnist_cnn()
    maps = occlusion(cnn, x, window=6, stride=2)  # (6, 1, 28, 28)
    grads = utils.load_lecture("01_vanilla_gradient_saliency").vanilla_gradient(cnn, x)  # (6, 1, 28, 28)
    shown = utils.scale_for_display(maps[:, 0].numpy(), signed=True)  # (6, 28, 28) in [-1, 1]
    magnitude = utils.scale_for_display(grads[:, 0].numpy())  # (6, 28, 28) in [0, 1]
    fig, axes = utils.figure_grid(3, len(x), title="Occlusion (6x6 patches, stride 2) beside the gradient")
    for i in range(len(x)):
        utils.show_image(axes[0, i], x[i, 0].numpy(), f"digit {int(labels[::30][i])}")
        utils.show_heatmap(axes[1, i], shown[i], "occlusion", signed=True, outline=x[i, 0].numpy(),
                           label="score drop")
        utils.show_heatmap(axes[2, i], magnitude[i], "|gradient| (lecture 1)", label="|dS/dx|")
    print("figure:", utils.save_figure(fig, tasks.out_dir(), "01_occlusion.png"))


if __name__ == "__main__":
    main()
