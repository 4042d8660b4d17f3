"""Part 1 of 9: vanilla gradient saliency.        Next: 02_gradient_input_saliency.py

Intuition: a pixel matters to a class if nudging it would change the class score most.

    S_c(x)    the logit of class c for the image x (before the softmax)
    M_c(x)  = | dS_c / dx |, evaluated at x             one number per pixel and channel
    shown as  max over the colour channels of | dS_c / dx |   (Simonyan et al.)

The gradient is the best linear approximation of the network around x:
S_c(x + d) ~ S_c(x) + d . dS_c/dx for a small step d. The map answers "where would
a tiny change matter?", not "what did the network use?". Keep the difference in mind:
lectures 2 and 4 turn the gradient into an attribution (each pixel's share of the score),
and lecture 3 removes its noise.

Paper: K. Simonyan, A. Vedaldi, A. Zisserman, "Deep Inside Convolutional Networks:
Visualising Image Classification Models and Saliency Maps", ICLR workshop 2014,
https://arxiv.org/abs/1312.6034

Run:          python 01_vanilla_gradient_saliency.py                (ResNet-50, five photos)
In seconds:   python 01_vanilla_gradient_saliency.py --quick         (ResNet-18, two photos)
Digits:       python 01_vanilla_gradient_saliency.py --model mnist   (the course's digit CNN)
Offline:      python 01_vanilla_gradient_saliency.py --model efficientnet_lite0
Figures go to outputs/. Offline without cached torchvision weights, a lecture says so and
runs on EfficientNet-Lite0 (its weights ship in a package, requirements-dev.txt) or on digits.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

import demos
import utils

QUICK_PHOTOS = 2  # --quick explains this many photos ...
QUICK_DIGITS = 4  # ... or digits
DIGITS = 6
TAYLOR_STEP = 1e-2  # length (L2 norm) of the nudge in the sanity check, in the model's input units


# %% The method ---------------------------------------------------------------------


def vanilla_gradient(model: nn.Module, inputs: torch.Tensor, target=None, absolute: bool = True) -> torch.Tensor:
    """dS_c/dx for every example: the saliency map of Simonyan et al. (2014).

    model    returns logits (N, K);   inputs  (N, ...) on any device
    target   None (the prediction), an int, or one class per example
    absolute return |dS_c/dx| (the paper's map) instead of the signed gradient
    Returns a tensor shaped like `inputs`, detached, same device and dtype.
    """
    x = inputs.detach().clone().requires_grad_(True)  # a fresh leaf: the caller's tensor is untouched
    with torch.enable_grad():  # works even inside the caller's torch.no_grad()
        logits = model(x)  # (N, K)
        scores, _ = utils.target_scores(logits, target)  # (N,) S_c for each example
        # S_c of example i depends on x[i] only (in eval mode), so the gradient of the
        # sum over the batch is every example's own gradient, in one backward pass.
        # autograd.grad, not .backward(): the parameters' .grad stay as they were.
        (grads,) = torch.autograd.grad(scores.sum(), x)  # (N, C, H, W)
    return (grads.abs() if absolute else grads).detach()


# %% The sanity check that teaches it ---------------------------------------------------


def taylor_check(model: nn.Module, x: torch.Tensor, grads: torch.Tensor, classes: torch.Tensor,
                 step: float = TAYLOR_STEP) -> tuple[torch.Tensor, torch.Tensor]:
    """Nudge each image by `step` along its gradient: (predicted, actual) change of S_c.

    The first-order prediction is step * ||dS_c/dx||. If the two agree, the map
    really is the local sensitivity of the score, which is all it claims to be.
    """
    norms = grads.flatten(1).norm(dim=1)  # (N,)
    direction = grads / norms.clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))  # unit steps
    with torch.no_grad():
        before = model(x).gather(1, classes[:, None]).squeeze(1)
        after = model(x + step * direction).gather(1, classes[:, None]).squeeze(1)
    return step * norms, after - before


# %% Figures --------------------------------------------------------------------------


def title_of(name: str, prediction: Sequence[tuple[str, float]]) -> str:
    label, probability = prediction[0]
    return f"{utils.shorten(name, 18)}\npredicted '{utils.shorten(label, 16)}' ({probability:.0%})"


def plot_imagenet(demo: demos.Demo, grads: torch.Tensor, predictions, explained: list[str]):
    """Per photo: photo | max over channels of |dS_c/dx| | that map over the photo."""
    images = demo.display()
    heat = utils.scale_for_display(utils.reduce_channels(grads, "max_abs"))  # (N, H, W) in [0, 1]
    fig, panels = utils.example_grid(len(images), 3, title=f"Vanilla gradient, {demo.network}")
    for row, (axes, image, name) in enumerate(zip(panels, images, demo.names)):
        utils.show_image(axes[0], image, title_of(name, predictions[row]))
        label = f"|dS/dx| for '{utils.shorten(explained[row], 14)}'"
        utils.show_heatmap(axes[1], heat[row], label, bar=False)
        utils.show_heatmap(axes[2], heat[row], "over the photo", image=image, bar=False)
    utils.shared_colorbar(fig, [axes[1] for axes in panels], label="|dS/dx|, max over RGB, 1 = 99th pct")
    return fig


def plot_mnist(demo: demos.Demo, grads: torch.Tensor, predictions, explained: list[str]):
    """Per digit: digit | |dS_c/dx| | signed dS_c/dx on a colour map centred at zero.

    The digit's outline is drawn on both maps, to show how much of the gradient lies off the ink.
    """
    images = demo.display()
    magnitude = utils.scale_for_display(utils.reduce_channels(grads, "max_abs"))
    signed = utils.scale_for_display(utils.reduce_channels(grads, "sum"), signed=True)
    fig, panels = utils.example_grid(len(images), 3, title=f"Vanilla gradient, {demo.network}")
    for row, (axes, image, name) in enumerate(zip(panels, images, demo.names)):
        utils.show_image(axes[0], image, title_of(name, predictions[row]))
        utils.show_heatmap(axes[1], magnitude[row], f"|dS/dx| for '{explained[row]}'", outline=image,
                           bar=False)
        utils.show_heatmap(axes[2], signed[row], "dS/dx, signed", signed=True, outline=image, bar=False)
    utils.shared_colorbar(fig, [axes[1] for axes in panels], label="|dS/dx|, 1 = 99th pct")
    utils.shared_colorbar(fig, [axes[2] for axes in panels], signed=True,
                          label="red: more ink raises S, blue: lowers it")
    return fig


# %% The demo -------------------------------------------------------------------------


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    args = utils.make_parser(__doc__).parse_args(argv)
    demo = demos.setup_demo(args, n_images=QUICK_PHOTOS if args.quick else None,
                            n_digits=QUICK_DIGITS if args.quick else DIGITS)
    target = demos.demo_target(args, demo)
    with torch.no_grad():
        logits = demo.model(demo.x)  # (N, K)
    predictions = utils.top_k(logits, demo.categories, k=5)
    classes = utils.resolve_target(logits, target)  # (N,)
    explained = [demo.class_name(int(c)) for c in classes]

    # 1. What the network predicts: the five likeliest classes of every example.
    print(f"\nTop-5 predictions, {demo.network} (softmax probabilities):")
    for name, top in zip(demo.names, predictions):
        print(f"  {name:>16}: " + ", ".join(f"{label} {p:.1%}" for label, p in top))
    demos.print_what_photos_show(demo, target, logits)

    # 2. The method: one batched call explains every example; the signed gradient keeps both figures' data.
    grads = vanilla_gradient(demo.model, demo.x, target, absolute=False)  # (N, C, H, W)

    # 3. The sanity check: a small step along the gradient changes the score as the gradient predicts.
    predicted, actual = taylor_check(demo.model, demo.x, grads, classes)
    print(f"\nSanity check: move each input a distance {TAYLOR_STEP} (L2 norm) in the direction of "
          "dS/dx.\nTo first order the score S_c (the logit) rises by that distance x ||dS/dx||; "
          "the network's actual\nchange should match:")
    for name, c, p, a in zip(demo.names, explained, predicted.tolist(), actual.tolist()):
        print(f"  {name:>16} '{utils.shorten(c)}': predicted {p:+.5f}   actual {a:+.5f}   "
              f"({abs(a - p) / max(abs(p), 1e-12):.1%} apart)")

    # 4. The figure: each example, its map, and the map over it.
    plot = plot_imagenet if demo.track == "imagenet" else plot_mnist
    utils.save_figure(plot(demo, grads, predictions, explained), args.out_dir,
                      f"01_vanilla_gradient_{demo.track}.png")


if __name__ == "__main__":
    main()

