"""Part 6 of 9: guided backpropagation.        Previous: 05_gradcam.py   Next: 07_guided_gradcam.py

Intuition: follow the gradient back to the pixels, but at every ReLU let through only
the signals that excite the neuron and that push the score up.

    forward   y = ReLU(x) = max(x, 0)                      unchanged
    backward  ordinary:  dS/dx = dS/dy * [x > 0]
              guided:    R_x   = max(R_y, 0) * [x > 0]     at every ReLU (ReLU6: * [0 < x < 6])
    GB_c(x) = the input gradient dS_c/dx computed with the guided rule

The maps are sharp because the negative signals are thrown away; Nie, Zhang and Patel (ICML
2018, https://arxiv.org/abs/1805.07039) show that this largely reconstructs the image, whatever
the class (the two-class figure shows both). Adebayo et al. (NeurIPS 2018,
https://arxiv.org/abs/1810.03292) found its maps change little when the weights are randomised;
lecture 8 repeats that check on this course's networks and prints how much each map changes.

Paper: J. T. Springenberg, A. Dosovitskiy, T. Brox, M. Riedmiller, "Striving for Simplicity:
The All Convolutional Net", ICLR workshop 2015, https://arxiv.org/abs/1412.6806

Run:          python 06_guided_backpropagation.py            (ResNet-50; the composite, the cat, the coffee)
In seconds:   python 06_guided_backpropagation.py --quick     (ResNet-18, the composite only)
Offline:      python 06_guided_backpropagation.py --quick --model efficientnet_lite0   (ReLU6 throughout)
Digits:       python 06_guided_backpropagation.py --model mnist
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import demos
import utils

vanilla_gradient = utils.load_lecture("01_vanilla_gradient_saliency").vanilla_gradient


# %% The guided ReLU ------------------------------------------------------------------


class GuidedReLU(torch.autograd.Function):
    """min(max(x, 0), top) forwards (top None: a ReLU; 6: a ReLU6); backwards only positive
    gradients, and only where 0 < x < top."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, top: float | None = None, inplace: bool = False) -> torch.Tensor:
        if inplace:
            y = x.clamp_(0, top)  # ResNet's nn.ReLU(inplace=True) overwrites its input
            ctx.mark_dirty(x)  # tell autograd, so the graph stays correct
        else:
            y = x.clamp(0, top)
        ctx.save_for_backward(y)  # 0 < y < top exactly where 0 < x < top; y survives in-place calls
        ctx.top = top
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        (y,) = ctx.saved_tensors
        passes = y > 0  # the ReLU: the guided rule
        if ctx.top is not None:
            # The clamp at `top` is a saturation, not a rectifier: it keeps its ordinary
            # backward (hardtanh's), zero where x >= top. A saturated unit does not respond
            # to its input, whatever the sign of the signal. Captum gives the same on the
            # network with each ReLU6 written as nn.ReLU followed by a clamp.
            passes = passes & (y < ctx.top)
        return grad_y.clamp(min=0) * passes, None, None  # R_x = max(R_y, 0) * [0 < x < top]


def _relu(input, inplace=False):  # torch.nn.functional.relu; nn.ReLU.forward calls it
    return GuidedReLU.apply(input, None, inplace)


def _relu_out_of_place(input):  # torch.relu, Tensor.relu
    return GuidedReLU.apply(input, None, False)


def _relu_in_place(input):  # torch.relu_, F.relu_, Tensor.relu_
    return GuidedReLU.apply(input, None, True)


def _relu6(input, inplace=False):  # F.relu6
    return GuidedReLU.apply(input, 6.0, inplace)


_hardtanh = F.hardtanh


def _hardtanh_guided_at_zero(input, min_val=-1.0, max_val=1.0, inplace=False):
    """F.hardtanh, which nn.ReLU6.forward calls with (0, 6): a ReLU then a clamp when min_val
    is 0, so the ReLU part is guided; any other hardtanh is not a rectifier and stays as it is."""
    if min_val == 0 and max_val > 0:
        return GuidedReLU.apply(input, max_val, inplace)
    return _hardtanh(input, min_val, max_val, inplace)


# Every way PyTorch code usually calls a ReLU. Module hooks would only see nn.ReLU
# modules (Captum's limitation); patching the functions sees F.relu in a forward too,
# and nn.ReLU6 (its forward calls F.hardtanh(x, 0, 6)).
PATCHES = [
    (F, "relu", _relu), (F, "relu_", _relu_in_place),
    (torch, "relu", _relu_out_of_place), (torch, "relu_", _relu_in_place),
    (torch.Tensor, "relu", _relu_out_of_place), (torch.Tensor, "relu_", _relu_in_place),
    (F, "relu6", _relu6), (F, "hardtanh", _hardtanh_guided_at_zero),
]
_ABSENT = object()


@contextlib.contextmanager
def guided_relu() -> Iterator[None]:
    """Inside this block every ReLU call is a GuidedReLU; the originals come back in `finally`.

    Models keep their modules and flags: nn.ReLU.forward calls F.relu, nn.ReLU6.forward
    calls F.hardtanh, and both are patched. Not seen: a `from torch.nn.functional import
    relu` made before the block, a ReLU written as `x.clamp(min=0)`, and activations that are
    not rectifiers (GELU, SiLU): they keep their ordinary gradient. Not thread-safe: the patch is global while the block runs.
    """
    # Tensor.relu lives on a C base class; remember whether Tensor itself had the name.
    originals = [(owner, name, vars(owner).get(name, _ABSENT)) for owner, name, _ in PATCHES]
    try:
        for owner, name, replacement in PATCHES:
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in originals:
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


# %% The method ---------------------------------------------------------------------


def guided_backprop(model: nn.Module, inputs: torch.Tensor, target=None) -> torch.Tensor:
    """Guided backpropagation of Springenberg et al. (2015): dS_c/dx with guided ReLUs.

    model    returns logits (N, K); its ReLUs may be nn.ReLU modules (in place or not,
             used once or several times) or F.relu / torch.relu / Tensor.relu calls;
             nn.ReLU6 modules and F.relu6 calls are guided at 0 and keep their clamp at 6
    target   None (the prediction), an int, or one class per example
    Returns the signed map, shaped like `inputs`, detached, same device and dtype.
    """
    # The forward pass is the ordinary one; only the backward rule of each ReLU changes.
    # So guided backpropagation is lecture 1's gradient, taken through guided ReLUs.
    with guided_relu():
        return vanilla_gradient(model, inputs, target, absolute=False)  # (N, C, H, W)


# %% The checkerboard -----------------------------------------------------------------
#   On EfficientNet-Lite0 guided backprop is speckle on a checkerboard: a stride-2 convolution's
#   backward pass sends its signal to even and odd pixels unequally (Odena, Dumoulin and Olah,
#   "Deconvolution and Checkerboard Artifacts", Distill 2016, https://distill.pub/2016/deconv-checkerboard/),
#   and with only positive signals kept nothing cancels it. The share of each map's energy at the
#   period-2 frequencies measures it, against the vanilla gradient's.


def checkerboard_share(maps: torch.Tensor) -> list[float]:
    """Per example, the share of a map's energy at the period-2 frequencies, (N,) floats.

    The map (summed over channels, its mean removed) goes through a 2-D Fourier transform;
    a pattern that repeats every 2 pixels lives at the 3 frequencies (0, W/2), (H/2, 0) and
    (H/2, W/2). An image without such a pattern puts about 3 / (H W) of its energy there
    (0.006% at 224 x 224). NaN when H or W is odd.
    """
    a = maps.detach().double().sum(1)  # (N, H, W)
    H, W = a.shape[-2:]
    if H % 2 or W % 2:
        return [float("nan")] * a.shape[0]
    energy = torch.fft.fft2(a - a.mean((1, 2), keepdim=True)).abs().square()  # (N, H, W)
    at_two = energy[:, 0, W // 2] + energy[:, H // 2, 0] + energy[:, H // 2, W // 2]  # (N,)
    return (at_two / energy.flatten(1).sum(1).clamp_min(1e-300)).tolist()


# %% Figures --------------------------------------------------------------------------


def plot_versus_vanilla(demo: demos.Demo, vanilla: torch.Tensor, guided: torch.Tensor, explained: list[str],
                        grid: list[float]):
    """Per example: image | vanilla |dS/dx| | guided backprop (magnitude) | guided backprop (signed)."""
    images = demo.display()
    fig, panels = utils.example_grid(len(images), 4, title=f"Vanilla gradient vs guided backpropagation, "
                                     f"{demo.network} (each map: max over channels, 1 = its 99th percentile)")
    vanilla_heat = utils.scale_for_display(utils.reduce_channels(vanilla, "max_abs"))
    guided_heat = utils.scale_for_display(utils.reduce_channels(guided, "max_abs"))
    for row, (axes, image, name) in enumerate(zip(panels, images, demo.names)):
        utils.show_image(axes[0], image, f"{name}\nfor '{utils.shorten(explained[row], 16)}'")
        utils.show_heatmap(axes[1], vanilla_heat[row], "vanilla |dS/dx|", bar=False)
        utils.show_heatmap(axes[2], guided_heat[row], f"guided |R|\n{grid[row]:.1%} at period 2",
                           bar=False)
        utils.show_signed_map(axes[3], guided[row: row + 1], "guided, signed", bar=False)
    utils.shared_colorbar(fig, [axes[k] for axes in panels for k in (1, 2)], label="1 = 99th pct of |map|")
    utils.shared_colorbar(fig, [axes[3] for axes in panels], signed=True,
                          label=("sum over RGB; " if demo.x.shape[1] > 1 else "")
                          + "red +, blue -, 1 = 99th pct")
    return fig


def plot_two_classes(demo: demos.Demo, index: int, classes: list[int], vanilla: torch.Tensor,
                     guided: torch.Tensor, scores: dict[str, tuple[float, float]]):
    """Two rows (vanilla, guided), one column per class: does the map change with the class?"""
    image = demo.display()[index]
    fig, axes = utils.figure_grid(2, 3, landscape=True, title=f"One image, two classes, {demo.network}: "
                                  "does the map change with the class? (1 = identical maps)")
    for row, (method, maps) in enumerate([("vanilla gradient", vanilla), ("guided backprop", guided)]):
        cosine, spearman = scores[method]
        utils.show_image(axes[row, 0], image, f"{method}\ncosine {cosine:.2f}, rank corr. {spearman:.2f}")
        heat = utils.scale_for_display(utils.reduce_channels(maps, "max_abs"))
        for col, c in enumerate(classes, start=1):
            utils.show_heatmap(axes[row, col], heat[col - 1],
                               f"{method} for\n'{utils.shorten(demo.class_name(c))}'", bar=False)
    utils.shared_colorbar(fig, axes[:, 1:],
                          label=("max over RGB, " if demo.x.shape[1] > 1 else "") + "1 = 99th pct")
    return fig


# %% The demo -------------------------------------------------------------------------

QUICK_PHOTOS = 1  # --quick explains the composite ...
QUICK_DIGITS = 4  # ... or this many digits
DIGITS = 6
PHOTOS = [utils.COMPOSITE, "cat_chelsea.png", "coffee.png"]


def count_rectifiers(model: nn.Module) -> str:
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    relu6s = [m for m in model.modules() if isinstance(m, nn.ReLU6)]
    counts = f"{len(relus)} nn.ReLU modules ({sum(m.inplace for m in relus)} in place)"
    return counts + (f" and {len(relu6s)} nn.ReLU6 modules" if relu6s else "")


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    args = utils.make_parser(__doc__).parse_args(argv)
    demo = demos.setup_demo(args, n_images=QUICK_PHOTOS if args.quick else None,
                            n_digits=QUICK_DIGITS if args.quick else DIGITS, images=PHOTOS)
    target = demos.demo_target(args, demo)
    with torch.no_grad():
        logits = demo.model(demo.x)  # (N, K)
    classes = utils.resolve_target(logits, target)  # (N,)
    explained = [demo.class_name(int(c)) for c in classes]
    print(f"\n{demo.network} has {count_rectifiers(demo.model)}. Inside guided_relu() every one is guided: "
          "the block swaps\nPyTorch's relu and hardtanh functions (which nn.ReLU and nn.ReLU6 call to "
          "compute their outputs) for the\nguided rule, so ReLUs written as function calls in a forward "
          "are guided too.")

    vanilla = vanilla_gradient(demo.model, demo.x, target, absolute=False)  # (N, C, H, W)
    guided = guided_backprop(demo.model, demo.x, target)  # (N, C, H, W)
    grid = checkerboard_share(guided)
    plain = checkerboard_share(vanilla)
    H, W = demo.x.shape[-2:]
    print(f"\nA checkerboard? The share of each map's energy at the period-2 frequencies "
          f"(3 of {H * W:,}; a map without\nsuch a pattern: about {3 / (H * W):.3%}):")
    for name, g, v in zip(demo.names, grid, plain):
        print(f"  {name:>16}: guided backprop {g:7.3%}   vanilla gradient {v:7.3%}")
    worst = max(grid)
    if worst > 20 * 3 / (H * W):
        strided = sum(isinstance(m, nn.Conv2d) and max(m.stride) > 1 for m in demo.model.modules())
        cause = (f"its {strided} strided convolutions send the backward signal to even and odd pixels "
                 "unequally" if strided else
                 "its pooling layers send the backward signal to some pixels of each window only")
        print(f"Guided backprop puts up to {worst:.1%} of its energy into that pattern: the grid in the "
              "figure. "
              f"In {demo.network}\n{cause}, and with only positive signals kept nothing cancels it "
              "(Odena et al., 2016).")
    else:
        print("No checkerboard here: the guided map's energy at those frequencies is near what a map without "
              "the pattern has.")
    utils.save_figure(plot_versus_vanilla(demo, vanilla, guided, explained, grid), args.out_dir,
                      f"06_guided_backprop_{demo.track}.png")

    # The sanity check: explain one image for two classes. A class-discriminative map
    # changes with the class; guided backpropagation mostly redraws the image's edges.
    index = 0
    pair = demos.contrast_classes(demo, logits, index)
    if target is not None:  # --target replaces the first class
        pair = [target] + [c for c in pair if c != target][:1]
    x = demo.x[index: index + 1].expand(2, -1, -1, -1)  # the same image twice, one class each
    maps = {"vanilla gradient": vanilla_gradient(demo.model, x, pair, absolute=False),
            "guided backprop": guided_backprop(demo.model, x, pair)}
    scores = {}
    print(f"\nSimilarity of the maps for '{demo.class_name(pair[0])}' and '{demo.class_name(pair[1])}' "
          f"on {demo.names[index]} (|map|, max over channels; 1 = identical):")
    for method, m in maps.items():
        magnitude = torch.from_numpy(utils.reduce_channels(m, "max_abs"))  # (2, H, W)
        scores[method] = utils.map_similarity(magnitude[0], magnitude[1])
        print(f"  {method:>16}: cosine {scores[method][0]:.3f}   Spearman {scores[method][1]:.3f}")
    print("  Near 1 for guided backprop means the two classes get nearly the same picture: it shows")
    print("  edges the network responds to, not which class they support. Lecture 7 fixes that.")
    figure = plot_two_classes(demo, index, pair, maps["vanilla gradient"], maps["guided backprop"], scores)
    utils.save_figure(figure, args.out_dir, f"06_guided_backprop_two_classes_{demo.track}.png")


if __name__ == "__main__":
    main()
