"""Exercise 3: design an evaluation protocol, and rank methods with it.

Deletion (Petsiuk et al., 2018, RISE, https://arxiv.org/abs/1806.07421) removes the
most salient pixels first and watches the class probability fall: a faithful map
makes it fall fast (a small area under the curve). Two traps: "removing" a pixel
by painting it black makes images the network never saw, and a fast fall can come
from the holes themselves, not from the pixels' importance. This protocol answers both:

    removal     a pixel takes the value of a blurred copy of the image (blurred below,
                RISE's substrate: an 11x11 Gaussian of sigma 5, zero-padded)
    curve       p_c(x_k), k = 0 .. steps, where x_k has its top round(k H W / steps)
                pixels (all channels together) taken from the blurred copy; the class c
                is fixed at x; the ranking is torch.argsort(descending=True, stable=True)
                of the flattened map: a (N, C, H, W) map (also C = 1) is first summed in
                absolute value over channels, a (N, H, W) map is used as it is
    AUC         the trapezoidal area under the curve over an x axis from 0 to 1
    MoRF/LeRF   gap = AUC(least relevant first) - AUC(most relevant first), where "least
                relevant first" is the curve of the negated (reduced) map: both orders
                make the same kind of holes, so only the order differs. Larger is better;
                0 is what a map unrelated to the model scores on average.

Then rank three methods and a chance line by their mean gap on the same digits.

Your tasks (run this file to see which are left, then grade it):
    TODO 1  deletion_curve_blurred(model, inputs, saliency, target=None, steps=STEPS)
    TODO 2  area_under_curve(curve)
    TODO 3  morf_lerf_gap(model, inputs, saliency, target=None, steps=STEPS)
    TODO 4  rank_methods(model, inputs, target=None, seed=0, steps=STEPS)

Grade:    python exercises/grade.py 3 exercises/03_evaluation_protocol.py
Run:      python exercises/03_evaluation_protocol.py     (a figure in outputs/exercises/ once done)
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

EXERCISES = next((p for p in Path(__file__).resolve().parents if (p / "tasks.py").is_file()), None)
if EXERCISES:  # inside the course folder; grade.py finds tasks.py for a copy kept elsewhere
    sys.path.insert(0, str(EXERCISES))
import tasks  # noqa: E402  (puts the course folder on sys.path)
import utils  # noqa: E402

vanilla = utils.load_lecture("01_vanilla_gradient_saliency")
smooth = utils.load_lecture("03_smoothgrad")
gradcam = utils.load_lecture("05_gradcam")

STEPS = 20  # points on a curve after the first: 28 x 28 / 20, about 39 pixels per step
SG_SAMPLES = 16  # SmoothGrad's noisy copies
CHANCE_CELLS = 7  # the chance map: 7 x 7 uniform random values, upsampled (smooth, so it makes blobs, not dust)
METHODS = ("vanilla_gradient", "smoothgrad", "grad_cam", "chance")
BLUR_SIZE, BLUR_SIGMA = 11, 5.0


def blurred(x: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W) blurred per channel by an 11x11 Gaussian of sigma 5, zero-padded (given, not a TODO)."""
    t = torch.arange(BLUR_SIZE, dtype=x.dtype, device=x.device) - (BLUR_SIZE - 1) / 2
    g = torch.exp(-t ** 2 / (2 * BLUR_SIGMA ** 2))
    kernel = g[:, None] * g[None, :] / g.sum() ** 2  # (11, 11), sums to 1
    c = x.shape[1]
    return F.conv2d(x, kernel.expand(c, 1, BLUR_SIZE, BLUR_SIZE), padding=BLUR_SIZE // 2, groups=c)


# %% TODO 1: the deletion curve with a blurred substrate ---------------------------------------------


def pixel_map(saliency: torch.Tensor) -> torch.Tensor:
    """(N, H, W): a (N, C, H, W) map summed in absolute value over channels; a (N, H, W) map as it is (given)."""
    s = saliency.detach()
    return s.abs().sum(1) if s.dim() == 4 else s


def deletion_curve_blurred(model: nn.Module, inputs: torch.Tensor, saliency: torch.Tensor, target=None,
                           steps: int = STEPS) -> torch.Tensor:
    """(N, steps + 1): p_c as the most salient pixels take the blurred image's values."""
    # TODO 1, step by step:
    #   a. the substrate blurred(x) and the (N, H, W) map pixel_map(saliency)
    #   b. each pixel's place in the ranking: torch.argsort(..., descending=True, stable=True) on the
    #      flattened map gives the order; scatter turns an order into places (or compare ranks another way)
    #   c. the classes, fixed at x (utils.resolve_target(model(x), target)), under torch.no_grad()
    #   d. for k = 0 .. steps: pixels placed before round(k * H * W / steps) come from the substrate
    #      (torch.where), all channels together; keep the softmax probability of each example's class
    raise NotImplementedError("write deletion_curve_blurred: (N, steps + 1) probabilities")


# %% TODO 2 and 3: the area, and the gap between the two orders ---------------------------------------


def area_under_curve(curve: torch.Tensor) -> torch.Tensor:
    """(N,) trapezoidal area of each row over an x axis from 0 to 1."""
    # TODO 2: the trapezoid rule with a spacing of 1 / (number of points - 1).
    raise NotImplementedError("write area_under_curve")


def morf_lerf_gap(model: nn.Module, inputs: torch.Tensor, saliency: torch.Tensor, target=None,
                  steps: int = STEPS) -> torch.Tensor:
    """(N,) AUC(least relevant first) - AUC(most relevant first): larger means more faithful."""
    # TODO 3: reduce the map first (pixel_map), then one curve for it and one for its negative.
    raise NotImplementedError("write morf_lerf_gap: AUC(LeRF) - AUC(MoRF) per example")


# %% TODO 4: ranking the methods ------------------------------------------------------------------------


def chance_map(inputs: torch.Tensor, seed: int) -> torch.Tensor:
    """(N, 1, H, W): 7 x 7 uniform random values from `seed`, upsampled bilinearly."""
    cells = torch.rand(inputs.shape[0], 1, CHANCE_CELLS, CHANCE_CELLS, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(cells, size=inputs.shape[-2:], mode="bilinear", align_corners=False)


def rank_methods(model: nn.Module, inputs: torch.Tensor, target=None, seed: int = 0,
                 steps: int = STEPS) -> list[tuple[str, float]]:
    """[(method, mean gap over the inputs)], best first; the same list for the same seed."""
    # TODO 4: one map per name in METHODS, all for `target`:
    #   vanilla_gradient  vanilla.vanilla_gradient(model, inputs, target)            (lecture 1, |dS/dx|)
    #   smoothgrad        smooth.smoothgrad(..., n_samples=SG_SAMPLES,
    #                                       generator=torch.Generator().manual_seed(seed))   (lecture 3)
    #   grad_cam          gradcam.grad_cam(model, inputs, target)                   (lecture 5)
    #   chance            chance_map(inputs, seed)
    # then each method's mean gap over the inputs (a float), sorted from the largest gap down.
    raise NotImplementedError("write rank_methods: [(method, mean gap)], best first")


# %% The demo ------------------------------------------------------------------------------------------------


def main() -> None:
    model = utils.load_mnist_cnn()
    images, labels = tasks.heldout_digits()
    x = images[::15]  # 20 digits, two of each class
    tiny = x[:1]
    steps = [("deletion_curve_blurred (TODO 1)", lambda: deletion_curve_blurred(model, tiny, tiny, steps=2)),
             ("area_under_curve (TODO 2)", lambda: area_under_curve(torch.ones(1, 3))),
             ("morf_lerf_gap (TODO 3)", lambda: morf_lerf_gap(model, tiny, tiny, steps=2)),
             ("rank_methods (TODO 4)", lambda: rank_methods(model, tiny, steps=2))]
    if not tasks.report(3, steps):
        return
    for seed in (0, 1):
        print(f"seed {seed}:", ", ".join(f"{name} {gap:+.3f}" for name, gap in rank_methods(model, x, seed=seed)))
    grads = vanilla.vanilla_gradient(model, x)
    morf = deletion_curve_blurred(model, x, grads).mean(0)
    lerf = deletion_curve_blurred(model, x, -pixel_map(grads)).mean(0)
    import matplotlib.pyplot as plt

    fig, axes = utils.figure_grid(1, 2, panel=3.4, title="Deletion into a blurred copy: the order matters")
    utils.show_image(axes[0, 0], torch.cat([x[0, 0], blurred(x)[0, 0]], 1).numpy(), "a digit and its substrate")
    fractions = torch.linspace(0, 1, len(morf))
    axes[0, 1].plot(fractions, morf, label="most relevant first (MoRF)")
    axes[0, 1].plot(fractions, lerf, label="least relevant first (LeRF)")
    axes[0, 1].set_xticks([0, 0.5, 1])
    axes[0, 1].set_yticks([0, 0.5, 1])
    axes[0, 1].set_xlabel("fraction of pixels blurred", fontsize=8)
    axes[0, 1].set_ylabel("p(class), mean of 20 digits", fontsize=8)
    axes[0, 1].set_title("|gradient| order", fontsize=9)
    axes[0, 1].legend(fontsize=7)
    plt.setp(axes[0, 1].get_xticklabels() + axes[0, 1].get_yticklabels(), fontsize=7)
    print("figure:", utils.save_figure(fig, tasks.out_dir(), "03_evaluation_protocol.png"))


if __name__ == "__main__":
    main()
