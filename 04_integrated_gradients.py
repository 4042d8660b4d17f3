"""Part 4 of 9: Integrated Gradients.      Previous: 03_smoothgrad.py   Next: 05_gradcam.py

Intuition: walk from a baseline x' (an image that means "nothing") to the image x and
add up, pixel by pixel, how much the score changed on the way.

    IG_i(x) = (x_i - x'_i) * integral_0^1  dS_c(x' + alpha (x - x')) / dx_i  d alpha
            ~ (x_i - x'_i) * sum_k  w_k * dS_c(x' + alpha_k (x - x')) / dx_i
    completeness:  sum_i IG_i(x) = S_c(x) - S_c(x')      (exact for the true integral)

The gradient at x alone misses features whose effect has saturated (lecture 1);
gradient x input adds up to S_c(x) only for a linear model (lecture 2). IG averages
lecture 1's gradient along the straight path, so its attributions add up to the change
of the score: the completeness check printed below. How close they get depends on the
quadrature rule (alpha_k, w_k) and the number of steps, which this lecture measures.

Paper: M. Sundararajan, A. Taly, Q. Yan, "Axiomatic Attribution for Deep Networks",
ICML 2017, https://arxiv.org/abs/1703.01365 (baselines: Sturmfels, Lundberg, Lee,
"Visualizing the Impact of Feature Attribution Baselines", Distill 2020).

Run:          python 04_integrated_gradients.py                (ResNet-50, photos)
In seconds:   python 04_integrated_gradients.py --quick         (ResNet-18, 8 steps)
Digits:       python 04_integrated_gradients.py --model mnist   (the course's digit CNN)
Options:      --steps 50  --method riemann_trapezoid  --batch-size 32
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

import utils

vanilla = utils.load_lecture("01_vanilla_gradient_saliency")  # lecture 1's dS_c/dx

STEPS = 50  # the paper uses 20 to 300; the completeness check tells you when it is enough
METHOD = "riemann_trapezoid"
METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
BATCH_SIZE = 32  # path points per forward pass: bounds memory, never changes the result
QUICK_STEPS = 8
QUICK_PHOTOS = 2  # --quick explains this many photos ...
QUICK_DIGITS = 3  # ... or digits
QUICK_SIZE = 112  # --quick shrinks photos to this size: IG evaluates the model hundreds of times
BASELINE_ROWS = 3  # examples in the baseline comparison, which runs IG 3 + NOISE_DRAWS times each
DIGITS = 6
NOISE_DRAWS = 4  # uniform-noise baselines averaged over this many draws (2 with --quick)
MNIST_MEAN = 0.1307  # the mean pixel of MNIST's training set: the digit track's "dataset mean"
BLUR_FRACTION = 1 / 16  # the blurred baseline's Gaussian sigma, as a fraction of the image size
PATH_FRAMES = 6  # images shown along the path
CONVERGENCE_STEPS = (2, 4, 8, 16, 32, 64)  # step counts for the |delta| plot (up to 8 with --quick)


# %% The method ---------------------------------------------------------------------


def quadrature(method: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes alpha_k in [0, 1] and weights w_k, so that integral_0^1 g ~ sum_k w_k g(alpha_k).

    Left, right, middle and Gauss-Legendre are Captum's rules; the trapezoid rule is
    the true one (Captum 0.9 weights its nodes 1/n, which sum to (n - 1)/n).
    """
    if method not in METHODS:
        raise utils.InputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    fewest = 2 if method == "riemann_trapezoid" else 1  # the trapezoid needs both ends
    if int(steps) != steps or steps < fewest:
        raise utils.InputError(f"{method} needs a whole number of steps >= {fewest}, got {steps}")
    k = torch.arange(steps, dtype=torch.float64)  # (steps,)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)  # a rule for [-1, 1]
        return torch.from_numpy((nodes + 1) / 2), torch.from_numpy(weights / 2)  # mapped to [0, 1]
    if method == "riemann_trapezoid":
        weights = torch.full((steps,), 1 / (steps - 1), dtype=torch.float64)
        weights[[0, -1]] /= 2  # each end belongs to one interval only
        return k / (steps - 1), weights
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[method]
    return (k + offset) / steps, torch.full((steps,), 1 / steps, dtype=torch.float64)


def as_baseline(baseline, x: torch.Tensor) -> torch.Tensor:
    """x' like `x`: None is zeros, a number fills it, a tensor is broadcast (a view, no copy)."""
    if baseline is None or isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline or 0.0))
    baseline = torch.as_tensor(baseline).detach().to(device=x.device, dtype=x.dtype)
    try:
        return torch.broadcast_to(baseline, x.shape)
    except RuntimeError:
        raise utils.InputError(f"a baseline of shape {tuple(baseline.shape)} does not broadcast to "
                               f"the inputs' shape {tuple(x.shape)}") from None


def integrated_gradients(model: nn.Module, inputs: torch.Tensor, target=None, baseline=None,
                         steps: int = STEPS, method: str = METHOD, batch_size: int | None = None,
                         progress: bool = False) -> torch.Tensor:
    """IG of every example, from `baseline` (None: zeros; a number; a tensor broadcast to `inputs`).

    The steps x N path points are evaluated `batch_size` at a time (None: all at once);
    each chunk is built when it is needed, so memory grows with `batch_size`, not `steps`.
    """
    x = inputs.detach()  # (N, C, H, W)
    x_baseline = as_baseline(baseline, x)  # (N, C, H, W)
    alphas, weights = (t.to(x.device, x.dtype) for t in quadrature(method, steps))  # (steps,) each
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)  # (N,) fixed at x
    direction = x - x_baseline  # (N, C, H, W)
    grads_mean = torch.zeros_like(x)  # (N, C, H, W) accumulates sum_k w_k dS_c/dx at the path points
    shape = (-1,) + (1,) * (x.dim() - 1)  # to broadcast one number per point
    for k, i in utils.point_chunks(x.shape[0], steps, batch_size, x.device, progress, "IG"):
        path = x_baseline[i] + alphas[k].view(shape) * direction[i]  # (B, C, H, W)
        grads = vanilla.vanilla_gradient(model, path, classes[i], absolute=False)  # (B, C, H, W)
        grads_mean.index_add_(0, i, weights[k].view(shape) * grads)  # w_k dS_c/dx into example i's row
    return (direction * grads_mean).detach()  # (N, C, H, W): the (x - x') factor is the point


def completeness_delta(model: nn.Module, inputs: torch.Tensor, attributions: torch.Tensor,
                       baseline=None, target=None) -> torch.Tensor:
    """sum_i IG_i(x) - (S_c(x) - S_c(x')) per example, shape (N,); 0 for the exact integral."""
    x = inputs.detach()
    x_baseline = as_baseline(baseline, x)
    with torch.no_grad():
        score, classes = utils.target_scores(model(x), target)  # (N,) S_c(x)
        score_baseline = model(x_baseline.contiguous()).gather(1, classes[:, None]).squeeze(1)  # (N,)
    return attributions.detach().flatten(1).sum(1) - (score - score_baseline)


# %% Baselines: what "nothing" means -----------------------------------------------------


def baselines_for(demo: utils.Demo, draws: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Four ideas of an empty input, each in the model's input space; noise has `draws` copies."""
    from torchvision.transforms.functional import gaussian_blur

    x = demo.x
    sigma = max(x.shape[-1] * BLUR_FRACTION, 0.5)
    kernel = 2 * math.ceil(3 * sigma) + 1
    mean = torch.tensor(demo.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(demo.std, device=x.device).view(1, -1, 1, 1)
    uniform = torch.rand((draws, *x.shape), generator=generator).to(x.device)  # (draws, N, C, H, W)
    dataset_mean = torch.zeros_like(x) if demo.track == "imagenet" else torch.full_like(x, MNIST_MEAN)
    return {
        "black": demo.black(),  # (0 - mean) / std: on ImageNet, 0 itself is the mean colour
        "blurred": gaussian_blur(x, [kernel, kernel], [sigma, sigma]),
        "uniform noise": (uniform - mean) / std,  # noise drawn in pixel space, then normalised
        "dataset mean": dataset_mean,
    }


def ig_for_baseline(model, x, target, baseline, steps, batch_size, progress):
    """(attributions, sum of attributions, S_c(x) - S_c(x')) for one baseline, or the mean over
    a stack of baselines (draws, N, ...), as for the uniform noise."""
    stack = baseline if baseline.dim() == x.dim() + 1 else baseline[None]
    attributions, deltas = [], []
    for x_baseline in stack:
        a = integrated_gradients(model, x, target, x_baseline, steps, METHOD, batch_size, progress)
        attributions.append(a)
        deltas.append(completeness_delta(model, x, a, x_baseline, target))
    a = torch.stack(attributions).mean(0)  # (N, C, H, W)
    total = a.flatten(1).sum(1)  # (N,)
    return a, total, total - torch.stack(deltas).mean(0)


# %% Figures --------------------------------------------------------------------------


def plot_path(demo: utils.Demo, x_baseline: torch.Tensor, classes: torch.Tensor, explained: str):
    """The first example at a few points of the straight path, and its class score along it."""
    import matplotlib.ticker as ticker

    x, c = demo.x[:1], int(classes[0])
    alphas = torch.linspace(0, 1, 41, device=x.device)  # (41,)
    path = x_baseline[:1] + alphas.view(-1, 1, 1, 1) * (x - x_baseline[:1])  # (41, C, H, W)
    with torch.no_grad():
        logits = demo.model(path)  # (41, K)
    scores = logits[:, c].cpu()
    probabilities = logits.softmax(1)[:, c].cpu()
    frames = np.linspace(0, 40, PATH_FRAMES).round().astype(int)
    images = demo.display(path[frames])
    fig, axes = utils.figure_grid(1, PATH_FRAMES + 1, panel=2.2,
                                  title=f"x' + alpha (x - x'): from the black baseline to '{demo.names[0]}'; "
                                        f"p = probability of '{explained}'")
    for ax, frame, image in zip(axes[0], frames, images):
        utils.show_image(ax, image, f"alpha = {alphas[frame]:.1f}, p = {probabilities[frame]:.0%}")
    ax = axes[0, -1]
    ax.plot(alphas.cpu(), scores, color="tab:red")
    ax.xaxis.set_major_locator(ticker.AutoLocator())
    ax.yaxis.set_major_locator(ticker.AutoLocator())
    ax.tick_params(labelsize=7)
    ax.set_xlabel("alpha", fontsize=8)
    ax.set_title("S_c (logit) along the path", fontsize=9)
    return fig


def plot_baselines(demo: utils.Demo, baselines: dict[str, torch.Tensor],
                   results: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], rows: int):
    """Row 0: the baselines of the first example. Then per example: IG from each baseline."""
    names = list(baselines)
    fig, axes = utils.figure_grid(rows + 1, len(names) + 1, panel=2.4,
                                  title="Integrated Gradients depends on the baseline "
                                        "(signed, sum over channels)")
    utils.show_image(axes[0, 0], demo.display()[0], f"x = {demo.names[0]}")
    for col, name in enumerate(names, start=1):
        b = baselines[name]
        first = b[0, :1] if b.dim() == demo.x.dim() + 1 else b[:1]  # a noise baseline: its first draw
        utils.show_image(axes[0, col], demo.display(first)[0], f"baseline x': {name}")
    images = demo.display()
    for row in range(rows):
        utils.show_image(axes[row + 1, 0], images[row], demo.names[row])
        for col, name in enumerate(names, start=1):
            a, total, change = results[name]
            heat = utils.scale_for_display(utils.reduce_channels(a[row:row + 1], "sum"), signed=True)[0]
            utils.show_heatmap(axes[row + 1, col], heat,
                               f"IG from {name}\nsum {total[row]:.3g}, S(x)-S(x') {change[row]:.3g}",
                               signed=True, label="99th pct = 1")
    return fig


def plot_convergence(step_counts: Sequence[int], deltas: dict[str, list[float]], name: str):
    """|completeness delta| against steps on log-log axes, one line per quadrature rule."""
    import matplotlib.ticker as ticker

    fig, axes = utils.figure_grid(1, 1, panel=4.6,
                                  title=f"Completeness error against steps, '{name}', black baseline")
    ax = axes[0, 0]
    for method, values in deltas.items():
        ax.loglog(step_counts, np.maximum(values, 1e-12), marker="o", label=method)
    n = np.asarray(step_counts, dtype=float)
    first = max(values[0] for values in deltas.values())
    ax.loglog(n, first * n[0] / n, "k:", lw=1, label="slope 1/n (guide)")
    ax.loglog(n, first * (n[0] / n) ** 2, "k--", lw=1, label="slope 1/n^2 (guide)")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=2))
    ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.yaxis.set_major_locator(ticker.LogLocator())
    ax.tick_params(labelsize=8)
    ax.set_xlabel("steps (model evaluations per example)", fontsize=9)
    ax.set_ylabel("|sum IG - (S_c(x) - S_c(x'))|", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    return fig


# %% The demo -------------------------------------------------------------------------


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    parser = utils.make_parser(__doc__)
    parser.add_argument("--steps", type=utils.int_in_range(2, 2000), default=None,
                        help=f"points on the path (default {STEPS}; {QUICK_STEPS} with --quick)")
    parser.add_argument("--method", choices=METHODS, default=METHOD, help="quadrature rule for the integral")
    parser.add_argument("--batch-size", type=utils.int_in_range(1, 100_000), default=BATCH_SIZE,
                        help="path points per forward pass (memory, not results)")
    args = parser.parse_args(argv)
    demo = utils.setup_demo(args, n_images=QUICK_PHOTOS if args.quick else None,
                            n_digits=QUICK_DIGITS if args.quick else DIGITS, quick_size=QUICK_SIZE)
    target = utils.demo_target(args, demo)
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    progress = not args.quick
    generator = torch.Generator().manual_seed(args.seed)
    classes, explained = demo.explained_classes(target)  # (N,) and their names
    black = demo.black()

    # 1. The completeness check, with the chosen rule, from the black baseline.
    attributions = integrated_gradients(demo.model, demo.x, target, black, steps, args.method,
                                        args.batch_size, progress)
    delta = completeness_delta(demo.model, demo.x, attributions, black, target)
    total = attributions.flatten(1).sum(1)
    print(f"\nCompleteness, {args.method} with {steps} steps, black baseline: sum_i IG_i = S_c(x) - S_c(x')?")
    print(f"  {'example':>16} {'class':>14} {'sum IG':>10} {'S(x)-S(x_)':>11} {'delta':>10}")
    for name, c, s, d in zip(demo.names, explained, total.tolist(), delta.tolist()):
        print(f"  {name:>16} {c[:14]:>14} {s:10.4f} {s - d:11.4f} {d:+10.2e}")
    utils.save_figure(plot_path(demo, black, classes, explained[0]), args.out_dir,
                      f"04_path_{demo.track}.png")

    # 2. Baselines side by side, and the table of sums against F(x) - F(x').
    rows = min(1 if args.quick else BASELINE_ROWS, demo.x.shape[0])
    sub = dataclasses.replace(demo, x=demo.x[:rows], names=demo.names[:rows])
    baselines = baselines_for(sub, 2 if args.quick else NOISE_DRAWS, generator)
    results = {}
    for name, baseline in utils.progress_bar(baselines.items(), "baselines", enabled=progress, leave=True):
        results[name] = ig_for_baseline(demo.model, sub.x, target, baseline, steps,
                                        args.batch_size, False)
    print(f"\nThe baseline decides what IG explains ({steps} steps; noise: the mean over its draws):")
    print(f"  {'example':>16} " + " ".join(f"{name:>23}" for name in baselines))
    print(f"  {'':>16} " + " ".join(f"{'sum IG / S(x)-S(x_)':>23}" for _ in baselines))
    for row in range(rows):
        cells = [f"{results[n][1][row]:10.4g} /{results[n][2][row]:10.4g}" for n in baselines]
        print(f"  {demo.names[row]:>16} " + " ".join(f"{c:>23}" for c in cells))
    utils.save_figure(plot_baselines(sub, baselines, results, rows), args.out_dir,
                      f"04_baselines_{demo.track}.png")

    # 3. How fast each rule converges: |delta| against steps, first example, black baseline.
    step_counts = [s for s in CONVERGENCE_STEPS if not args.quick or s <= 8]
    first = demo.x[:1]
    # S_c(x) - S_c(x') once: the delta of an all-zero attribution is minus that change
    change = -float(completeness_delta(demo.model, first, torch.zeros_like(first), black[:1], classes[:1]))
    deltas: dict[str, list[float]] = {}
    for method in utils.progress_bar(METHODS, "convergence", enabled=progress, leave=True):
        deltas[method] = []
        for s in step_counts:
            a = integrated_gradients(demo.model, first, classes[:1], black[:1], s, method, args.batch_size)
            deltas[method].append(abs(float(a.sum()) - change))
    print(f"\n|completeness delta| on '{demo.names[0]}' by steps {step_counts}:")
    for method, values in deltas.items():
        print(f"  {method:>18}: " + "  ".join(f"{v:.1e}" for v in values))
    utils.save_figure(plot_convergence(step_counts, deltas, demo.names[0]), args.out_dir,
                      f"04_convergence_{demo.track}.png")


if __name__ == "__main__":
    main()
