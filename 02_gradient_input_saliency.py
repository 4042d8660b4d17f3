"""Part 2 of 9: gradient x input.   Previous: 01_vanilla_gradient_saliency.py   Next: 03_smoothgrad.py

Intuition: the gradient says how much a pixel *could* move the score; multiplying by the
pixel's value says how much it *did*, as in a linear model, where weight x value is each
feature's share of the score.

    A_c(x)_i = x_i * dS_c/dx_i (x)                 signed: red raises S_c, blue lowers it
    linear model S_c(x) = w . x + b:   sum_i A_c(x)_i + b = S_c(x)   exactly

What it fixes: sensitivity is weighed by presence, so the map often looks sharper, and its
sum means something (exactly S_c(x) - S_c(0) for a linear model or a bias-free ReLU network).
What it breaks: an input at zero gets zero, whatever its importance; the demo shows where zero is.

Papers: A. Shrikumar, P. Greenside, A. Shcherbina, A. Kundaje, "Not Just a Black Box",
2016, https://arxiv.org/abs/1605.01713; M. Ancona, E. Ceolini, C. Oztireli, M. Gross,
"Towards better understanding of gradient-based attribution methods", ICLR 2018,
https://arxiv.org/abs/1711.06104

Run:          python 02_gradient_input_saliency.py                (ResNet-50, five photos)
In seconds:   python 02_gradient_input_saliency.py --quick         (ResNet-18, two photos)
Digits:       python 02_gradient_input_saliency.py --model mnist   (where zero is black)
Offline:      python 02_gradient_input_saliency.py --model efficientnet_lite0
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

import demos
import utils

vanilla = utils.load_lecture("01_vanilla_gradient_saliency")  # lecture 1's dS_c/dx

# %% The method ---------------------------------------------------------------------


def gradient_x_input(model: nn.Module, inputs: torch.Tensor, target=None) -> torch.Tensor:
    """x * dS_c/dx for every example, signed, shaped like `inputs` (Shrikumar et al., 2016).

    model    returns logits (N, K);   inputs  (N, ...) on any device
    target   None (the prediction), an int, or one class per example
    Returns a tensor shaped like `inputs`, detached, same device and dtype.
    """
    x = inputs.detach()  # (N, C, H, W)
    # Lecture 1's gradient, signed: the sign matters once we multiply by x.
    grads = vanilla.vanilla_gradient(model, x, target, absolute=False)  # (N, C, H, W)
    # Elementwise: each input's first-order share of S_c, exact when S_c is linear.
    # Where x_i = 0 the share is 0, whatever grads_i says: the price of this method.
    return x * grads  # (N, C, H, W)


# %% The sanity checks that teach it ---------------------------------------------------
# The sum: S_c(x) - S_c(0) exactly for a linear model, and for a ReLU network without biases before
# its last layer (Euler's theorem; the digit CNN is one); otherwise only its first-order estimate,
# often far off (lecture 4 makes it exact). Zero: digits are raw [0, 1], so zero is black and the
# background (a 0's empty hole) can never be credited. Photos are normalised: zero is the colour the
# normalisation subtracts (ImageNet's mean colour, or mid-grey for EfficientNet-Lite), and a black
# pixel, (0 - mean) / std, lies far from it, so multiplying by it inflates its share, which the demo
# measures. Either way the map depends on where zero is: the baseline that lecture 4 makes explicit.

LINEAR_SEED = 0  # the random linear model of the sanity check ...
LINEAR_CLASSES = 3  # ... and its number of classes


def linear_check(x: torch.Tensor, classes: int = LINEAR_CLASSES, seed: int = LINEAR_SEED):
    """On a random linear model S(x) = W x + b: (sum of x * dS_c/dx + b_c, S_c(x)) per example,
    c its predicted class."""
    with torch.random.fork_rng(devices=[]):  # a private seed: the caller's random state is untouched
        torch.manual_seed(seed)
        linear = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), classes)).to(x.device).eval()
    attributions = gradient_x_input(linear, x)  # (N, C, H, W)
    with torch.no_grad():
        score, c = utils.target_scores(linear(x), None)  # (N,), (N,)
    bias = linear[1].bias.detach()[c]  # (N,)
    return attributions.flatten(1).sum(1) + bias, score


def biasless_convolutions(model: nn.Module) -> bool:
    """Whether every conv of `model` has no bias (then, with ReLU and max pooling, the part of
    S_c before the last layer's bias is positively homogeneous: S(a x) - b = a (S(x) - b))."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return bool(convs) and all(m.bias is None for m in convs)


def share_on(pixels: torch.Tensor, grads: torch.Tensor, attributions: torch.Tensor):
    """How much of each map sits on some pixels: (fraction of the pixels, share of |dS/dx|,
    share of |x dS/dx|), each `(N,)`. `pixels` is a boolean mask `(N, H, W)`; a pixel's
    amount is the sum over its channels of the absolute values."""
    mask = pixels.flatten(1).float()  # (N, H * W)

    def share(a: torch.Tensor) -> torch.Tensor:  # (N,) the part of sum |a| that sits on the mask
        a = a.abs().sum(1).flatten(1)  # (N, H * W)
        return (a * mask).sum(1) / a.sum(1).clamp_min(1e-12)

    return mask.mean(1), share(grads), share(attributions)


# %% Figures --------------------------------------------------------------------------


def plot_imagenet(demo: demos.Demo, grads, attributions, explained):
    """Per photo: photo | |dS/dx| | |x * dS/dx| | x * dS/dx signed.

    The two magnitudes share a colour map and a scale (each map's 99th percentile = 1),
    so the columns compare directly: pixels far from the mean colour gain, those near it
    lose. The signed map shows why the sum is a poor estimate: neighbours cancel.
    """
    images = demo.display()
    magnitude = utils.scale_for_display(utils.reduce_channels(grads, "sum_abs"))
    amount = utils.scale_for_display(utils.reduce_channels(attributions, "sum_abs"))
    signed = utils.scale_for_display(utils.reduce_channels(attributions, "sum"), signed=True)
    fig, panels = utils.example_grid(len(images), 4, title=f"Vanilla gradient (lecture 1) against gradient x "
                                     f"input, {demo.network}: each photo explained for its class")
    for row, (axes, image, name) in enumerate(zip(panels, images, demo.names)):
        utils.show_image(axes[0], image, f"{utils.shorten(name, 16)}\n'{utils.shorten(explained[row], 16)}'")
        utils.show_heatmap(axes[1], magnitude[row], "|dS/dx|", bar=False)
        utils.show_heatmap(axes[2], amount[row], "|x * dS/dx|", bar=False)
        utils.show_heatmap(axes[3], signed[row], "x * dS/dx", signed=True, bar=False)
    utils.shared_colorbar(fig, [axes[k] for axes in panels for k in (1, 2)],
                          label="sum over RGB, 1 = 99th pct")
    utils.shared_colorbar(fig, [axes[3] for axes in panels], signed=True,
                          label="red: raises S, blue: lowers S (1 = 99th pct)")
    return fig


def plot_mnist(demo: demos.Demo, grads, attributions, explained):
    """Per digit: digit | signed dS/dx | signed x * dS/dx: the black background goes blank."""
    images = demo.display()
    gradient = utils.scale_for_display(utils.reduce_channels(grads, "sum"), signed=True)
    signed = utils.scale_for_display(utils.reduce_channels(attributions, "sum"), signed=True)
    fig, panels = utils.example_grid(len(images), 3, title=f"Gradient x input, {demo.network}: zero is black")
    for row, (axes, image, name) in enumerate(zip(panels, images, demo.names)):
        utils.show_image(axes[0], image, f"{name}, explaining '{explained[row]}'")
        utils.show_heatmap(axes[1], gradient[row], "dS/dx: black pixels matter too", signed=True,
                           outline=image, bar=False)
        utils.show_heatmap(axes[2], signed[row], "x * dS/dx: black gets 0", signed=True, outline=image,
                           bar=False)
    utils.shared_colorbar(fig, [axes[k] for axes in panels for k in (1, 2)], signed=True,
                          label="red: (this) ink raises S, blue: lowers it; 1 = 99th pct")
    return fig


# %% The demo -------------------------------------------------------------------------

QUICK_PHOTOS = 2  # --quick explains this many photos ...
QUICK_DIGITS = 4  # ... or digits
DIGITS = 6
DARK = 0.15  # a photo's pixel is dark when every channel is below this, on a 0 (black) to 1 scale


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    args = utils.make_parser(__doc__).parse_args(argv)
    demo = demos.setup_demo(args, n_images=QUICK_PHOTOS if args.quick else None,
                            n_digits=QUICK_DIGITS if args.quick else DIGITS)
    target = demos.demo_target(args, demo)
    with torch.no_grad():
        logits = demo.model(demo.x)  # (N, K)
        zero_scores = demo.model(torch.zeros_like(demo.x))  # (N, K) the scores at x = 0
    classes = utils.resolve_target(logits, target)  # (N,)
    explained = [demo.class_name(int(c)) for c in classes]
    demos.print_what_photos_show(demo, target, logits)

    # 1. The method, with lecture 1's gradient beside it.
    grads = vanilla.vanilla_gradient(demo.model, demo.x, target, absolute=False)  # (N, C, H, W)
    attributions = gradient_x_input(demo.model, demo.x, target)  # (N, C, H, W)

    # 2. The sanity check on a linear model, where the sum is exact.
    total_plus_bias, logit = linear_check(demo.x)
    print("\nSanity check on a random linear model S(x) = W x + b (made for this check, same inputs):")
    print("sum_i x_i dS_c/dx_i + b_c should equal S_c(x), its logit for its own predicted class c:")
    for name, lhs, rhs in zip(demo.names, total_plus_bias.tolist(), logit.tolist()):
        print(f"  {name:>16}: sum + bias {lhs:+.5f}   S_c(x) {rhs:+.5f}")

    # 3. On the network: does the sum of x * dS/dx still give S_c(x) - S_c(0)?
    zero = "a black image" if demo.track == "mnist" else "x = 0, the normalisation's mean colour everywhere"
    print(f"\nThe network ({demo.network}) is not linear. Does the sum of x * dS/dx still give "
          f"S_c(x) - S_c(0),\nS_c(0) being the logit for {zero}?")
    totals = attributions.flatten(1).sum(1)  # (N,)
    change = (logits.gather(1, classes[:, None]) - zero_scores.gather(1, classes[:, None]))[:, 0]  # (N,)
    for name, total, d in zip(demo.names, totals.tolist(), change.tolist()):
        print(f"  {name:>16}: sum of x * dS/dx {total:+9.3f}   S_c(x) - S_c(0) {d:+9.3f}")
    if torch.allclose(totals, change, rtol=1e-3, atol=1e-4):
        print("Exactly, though the network is not linear: "
              + ("its convolutions have no biases, so\n" if biasless_convolutions(demo.model) else "\n")
              + "S_c(x) - S_c(0) is positively homogeneous (scaling x by a > 0 scales it by a: ReLU, max "
              "and average\npooling pass scaling through), and for such a function sum_i x_i dS_c/dx_i "
              "= S_c(x) - S_c(0)\n(Euler's theorem). Biases, batch norm or ReLU6's clamp break it: "
              "try --model efficientnet_lite0.")
    else:
        hint = " (try --model mnist)" if biasless_convolutions(utils.MnistCNN()) else ""
        print("No: it is only the first-order (Taylor) estimate of that difference, expanded at x; "
              "lecture 4 makes it\nexact. It is exact on a ReLU network without biases before its "
              f"last layer{hint}.")

    # 4. Where zero lies: the share the dark (photos) or black (digits) pixels get.
    if demo.track == "imagenet":
        black = tuple(round(b, 2) for b in demo.black()[0, :, 0, 0].tolist())
        mean = tuple(round(m, 3) for m in demo.mean)
        pictures = torch.as_tensor(demo.display(), device=demo.x.device)  # (N, H, W, C) in [0, 1]
        dark = (pictures < DARK).all(dim=-1)  # (N, H, W)
        fraction, grad_share, attribution_share = share_on(dark, grads, attributions)
        print(f"\nHere the inputs are normalised: x = 0 is the colour {mean} (on a 0 to 1 scale) that "
              "the\nnormalisation subtracts, and it gets no attribution. A black pixel lies far from it, at "
              f"x = {black},\nso multiplying by x enlarges its share. Dark pixels (every channel below {DARK:.0%}):")
        rows = zip(demo.names, fraction.tolist(), grad_share.tolist(), attribution_share.tolist())
        for name, f, g, a in rows:
            print(f"  {name:>16}: {f:6.1%} of the pixels are dark; they hold {g:6.1%} of |dS/dx|, "
                  f"{a:6.1%} of |x * dS/dx|")
        print("Try --model mnist: there the pixels are raw, zero is black, and the background is "
              "most of the image.")
    else:
        fraction, grad_share, attribution_share = share_on(demo.x[:, 0] == 0, grads, attributions)
        print("\nBlack pixels (x = 0) get no attribution at all, however much the gradient says they matter:")
        rows = zip(demo.names, fraction.tolist(), grad_share.tolist(), attribution_share.tolist())
        for name, f, g, a in rows:
            print(f"  {name:>16}: {f:6.1%} of the pixels are black; they hold {g:6.1%} of |dS/dx|, "
                  f"{a:.1%} of |x * dS/dx|")

    # 5. The figure: the gradient beside gradient x input, for every example.
    plot = plot_imagenet if demo.track == "imagenet" else plot_mnist
    utils.save_figure(plot(demo, grads, attributions, explained), args.out_dir,
                      f"02_gradient_x_input_{demo.track}.png")


if __name__ == "__main__":
    main()
