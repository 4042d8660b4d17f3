"""Part 4 of 9: Integrated Gradients.      Previous: 03_smoothgrad.py   Next: 05_gradcam.py

Intuition: walk from a baseline x' (an image that means "nothing") to the image x and
add up, pixel by pixel, how much the score changed on the way.

    IG_i(x) = (x_i - x'_i) * integral_0^1  dS_c(x' + alpha (x - x')) / dx_i  d alpha
            ~ (x_i - x'_i) * sum_k  w_k * dS_c(x' + alpha_k (x - x')) / dx_i
    completeness:  sum_i IG_i(x) = S_c(x) - S_c(x')      (exact for the true integral)

The gradient at x alone misses features whose effect has saturated (lecture 1); gradient x
input adds up to S_c(x) only for a linear model (lecture 2). IG averages lecture 1's gradient
along the straight path, so its attributions add up to the change of the score. The integral is
a quadrature (nodes alpha_k, weights w_k), and completeness is its error check: the paper asks
for the sum within 5% of S_c(x) - S_c(x'), and this script prints each example's error. Why
no rule reaches its textbook order on a ReLU network: the section "How the error falls".

Paper: M. Sundararajan, A. Taly, Q. Yan, "Axiomatic Attribution for Deep Networks", ICML 2017,
https://arxiv.org/abs/1703.01365 (baselines: Sturmfels, Lundberg, Lee, Distill 2020)

Run:          python 04_integrated_gradients.py                (ResNet-50, photos)
In seconds:   python 04_integrated_gradients.py --quick         (ResNet-18, 8 steps: far off, as printed)
Digits:       python 04_integrated_gradients.py --model mnist   (the course's digit CNN)
Options:      --steps 50  --method riemann_trapezoid  --tolerance 0.05  --max-steps 257  --batch-size 8
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

import demos
import utils

vanilla = utils.load_lecture("01_vanilla_gradient_saliency")  # lecture 1's dS_c/dx

STEPS = 50  # the paper uses 20 to 300; the completeness check tells you when it is enough
METHOD = "riemann_trapezoid"
METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
TOLERANCE = 0.05  # the paper's rule of thumb: sum IG within 5% of S_c(x) - S_c(x')
MAX_STEPS = 257  # --tolerance stops here, and says so, if an example still misses it
BATCH_SIZE = 8  # path points per forward pass (about 0.1 GB each on ResNet-50): memory, never the result


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


def integrated_gradients(model: nn.Module, inputs: torch.Tensor, target=None, baseline=None,
                         steps: int = STEPS, method: str = METHOD, batch_size: int | None = None,
                         progress: bool = False) -> torch.Tensor:
    """IG of every example, from `baseline` (None: zeros; a number; a tensor broadcast to `inputs`).

    The steps x N path points are evaluated `batch_size` at a time (None: all at once);
    each chunk is built when it is needed, so memory grows with `batch_size`, not `steps`.
    """
    x = inputs.detach()  # (N, C, H, W)
    x_baseline = utils.as_baseline(baseline, x)  # (N, C, H, W)
    alphas, weights = (t.to(x.device, x.dtype) for t in quadrature(method, steps))  # (steps,) each
    classes = utils.classes_at(model, x, target, batch_size)  # (N,) fixed at x
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
    x_baseline = utils.as_baseline(baseline, x)
    with torch.no_grad():
        score, classes = utils.target_scores(model(x), target)  # (N,) S_c(x)
        score_baseline = model(x_baseline.contiguous()).gather(1, classes[:, None]).squeeze(1)  # (N,)
    return attributions.detach().flatten(1).sum(1) - (score - score_baseline)


# %% Asking for a tolerance ---------------------------------------------------------------
#
# On an interval [a, b] of the path, the exact integral of dS_c/dalpha is S_c(b) - S_c(a),
# and the forward pass that comes with every gradient gives S_c for free. So each interval
# knows the error of its own trapezoid, (b - a)(g(a) + g(b))/2 - (S_c(b) - S_c(a)), and the
# path is refined where those errors are largest, not everywhere.


def scores_and_gradients(model: nn.Module, points: torch.Tensor, classes: torch.Tensor):
    """S_c and dS_c/dx at each point, (B,) and (B, C, H, W), from one forward and one backward pass."""
    with torch.enable_grad():
        p = points.detach().requires_grad_(True)
        scores, _ = utils.target_scores(model(p), classes)  # (B,), the classes' range checked
        grads, = torch.autograd.grad(scores.sum(), p)  # points do not interact: each gets its own gradient
    return scores.detach(), grads


def integrated_gradients_within(model: nn.Module, inputs: torch.Tensor, target=None, baseline=None,
                                tolerance: float = TOLERANCE, max_steps: int = MAX_STEPS,
                                batch_size: int | None = None, progress: bool = False):
    """IG by the trapezoid rule on a path refined, where the intervals' own errors are largest,
    until the completeness error is at most `tolerance` x |S_c(x) - S_c(x')|.

    Returns the attributions (N, C, H, W) and the path points each example took (N,). An
    example stops at `max_steps` points, met or not: check it with `completeness_delta`.
    Examples run one at a time; each keeps its points' gradients until its mesh is final
    (the weights change as intervals split), so memory grows with the points it takes.
    """
    if not tolerance > 0 or int(max_steps) != max_steps or max_steps < 2:
        raise utils.InputError(f"need tolerance > 0 and max_steps >= 2, got {tolerance} and {max_steps}")
    x = inputs.detach()  # (N, C, H, W)
    x_baseline = utils.as_baseline(baseline, x)
    classes = utils.classes_at(model, x, target, batch_size)  # (N,)
    chunk = utils.check_batch_size(batch_size) or max_steps
    shape = (-1,) + (1,) * (x.dim() - 1)  # to broadcast one number per point
    attributions, steps = torch.zeros_like(x), []
    for i in utils.progress_bar(range(x.shape[0]), "IG to tolerance", enabled=progress):
        direction = x[i] - x_baseline[i]  # (C, H, W)

        def at(alphas: torch.Tensor):  # S_c (A,) and dS_c/dx (A, C, H, W) at these points of the path
            parts = [scores_and_gradients(model, x_baseline[i] + a.to(x).view(shape) * direction,
                                          classes[i].expand(len(a))) for a in alphas.split(chunk)]
            return torch.cat([s for s, _ in parts]).double(), torch.cat([g for _, g in parts])

        alphas = torch.tensor([0.0, 1.0], dtype=torch.float64)  # (M,) the mesh, sorted
        score, grad = at(alphas)  # (M,), (M, C, H, W)
        while True:
            slopes = (grad * direction).flatten(1).double().sum(1)  # (M,) dS_c/dalpha
            h = alphas.diff()  # (M - 1,)
            local = h * (slopes[1:] + slopes[:-1]) / 2 - score.diff()  # (M - 1,) each interval's error
            change = score[-1] - score[0]  # S_c(x) - S_c(x')
            room = max_steps - len(alphas)
            if local.sum().abs() <= tolerance * change.abs() or room <= 0:  # sum IG - (S_c(x) - S_c(x'))
                break
            worst = local.abs().argsort(descending=True)  # split the worst intervals, which hold ...
            share = local.abs()[worst].cumsum(0)  # ... half of all the error, at most `room` of them
            worst = worst[:min(room, int(torch.searchsorted(share, share[-1] / 2)) + 1)]
            new = (alphas[worst] + alphas[worst + 1]) / 2  # (B,) their midpoints
            new_score, new_grad = at(new)
            alphas, order = torch.cat([alphas, new]).sort()
            score, grad = torch.cat([score, new_score])[order], torch.cat([grad, new_grad])[order]
        weights = torch.cat([h[:1], h[1:] + h[:-1], h[-1:]]) / 2  # (M,) the trapezoid on this mesh
        attributions[i] = direction * (weights.to(x).view(shape) * grad).sum(0)
        steps.append(len(alphas))
    return attributions, torch.tensor(steps)


# %% How the error falls with the steps --------------------------------------------------
#
# Why no rule converges at its textbook order (1/n^2 for the trapezoid, faster for
# Gauss-Legendre): summed over pixels the integrand is dS_c/dalpha along the path, and a
# network of ReLUs (ReLU6, max-pooling, ...) is piecewise linear, so along the path S_c is
# a polyline and dS_c/dalpha is piecewise constant, jumping wherever the path crosses a
# ReLU's kink. Those orders assume a smooth integrand; across a jump a rule errs by up to
# jump x spacing, ~1/n at best, and many jumps add up irregularly, so the error can even
# grow when n doubles. The convergence figure draws guide lines of slope 1/n and 1/n^2 through
# the trapezoid's first median to compare with. On the photos most of the error sits in the
# first few percent of the path from a black baseline, where dS_c/dalpha swings as the picture
# fades in. The digit CNN, whose convs have no bias, has a single jump, at alpha = 0 (at black
# every unit is off): the trapezoid errs by exactly 1/(2(n - 1)), falling like the 1/n guide, and
# rules without a node at 0 not at all. So check, do not trust a step count. --tolerance refines
# the path where it is wrong (the section above). On EfficientNet-Lite0 and three photos this
# met 5% on every path with at most 29 model evaluations, where Captum's default
# (Gauss-Legendre, 50) missed it on 3 of 6 (benchmarks/bench_ig_accuracy.py). Completeness is
# a check, not a proof: errors of opposite sign on different intervals can cancel in the sum.


def rule_errors(model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor, baseline,
                rules: Sequence[tuple[str, int]], batch_size: int | None = None) -> dict:
    """Completeness error of each (method, steps) rule, as a fraction of S_c(x) - S_c(x'), (N,) each.

    sum_i IG_i = sum_k w_k dS_c/dalpha(alpha_k), with dS_c/dalpha = dS_c/dx . (x - x'): the
    check needs one number per path point, and rules that share nodes (left, right and
    trapezoid at 2, 4, 8, ... steps) share their evaluations.
    """
    x = inputs.detach()
    x_baseline = utils.as_baseline(baseline, x)
    nodes = {rule: quadrature(*rule) for rule in rules}
    unique = torch.cat([alphas for alphas, _ in nodes.values()]).unique()  # (A,) sorted
    direction = x - x_baseline  # (N, C, H, W)
    slopes = torch.zeros(x.shape[0], len(unique), dtype=torch.float64)  # (N, A) dS_c/dalpha
    for k, i in utils.point_chunks(x.shape[0], len(unique), batch_size, x.device):
        alphas = unique[k].to(x).view((-1,) + (1,) * (x.dim() - 1))  # (B, 1, 1, 1)
        path = x_baseline[i] + alphas * direction[i]  # (B, C, H, W)
        grads = vanilla.vanilla_gradient(model, path, classes[i], absolute=False)  # (B, C, H, W)
        slopes[i.cpu(), k.cpu()] = (grads * direction[i]).flatten(1).double().sum(1).cpu()
    change = -completeness_delta(model, x, torch.zeros_like(x), baseline=x_baseline, target=classes)
    change = change.double().cpu()  # (N,) S_c(x) - S_c(x')
    return {rule: (slopes[:, torch.searchsorted(unique, alphas)] @ weights - change) / change
            for rule, (alphas, weights) in nodes.items()}


# %% Baselines: what "nothing" means -----------------------------------------------------

MNIST_MEAN = 0.1307  # the mean pixel of MNIST's training set: the digit track's "dataset mean"
BLUR_FRACTION = 1 / 16  # the blurred baseline's Gaussian sigma, as a fraction of the image size


def baselines_for(demo: demos.Demo, draws: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Four ideas of an empty input, each in the model's input space; noise has `draws` copies."""
    from torchvision.transforms.functional import gaussian_blur

    x = demo.x
    sigma = max(x.shape[-1] * BLUR_FRACTION, 0.5)
    kernel = 2 * math.ceil(3 * sigma) + 1
    mean = torch.tensor(demo.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(demo.std, device=x.device).view(1, -1, 1, 1)
    uniform = torch.rand((draws, *x.shape), generator=generator).to(x.device)  # (draws, N, C, H, W)
    pixel_mean = torch.tensor(utils.IMAGENET_MEAN if demo.track == "imagenet" else (MNIST_MEAN,), device=x.device)
    dataset_mean = ((pixel_mean.view(1, -1, 1, 1) - mean) / std).expand_as(x)  # 0 only if normalised by it
    return {
        "black": demo.black(),  # (0 - mean) / std; a 0 input is the normalisation's mean (Captum PR #428)
        "blurred": gaussian_blur(x, [kernel, kernel], [sigma, sigma]),
        "uniform noise": (uniform - mean) / std,  # noise drawn in pixel space, then normalised
        "dataset mean": dataset_mean,
    }


def ig_for_baseline(model, x, target, baseline, steps, batch_size):
    """(attributions, sum of attributions, S_c(x) - S_c(x')) for one baseline, or the mean over
    a stack of baselines (draws, N, ...), as for the uniform noise."""
    stack = baseline if baseline.dim() == x.dim() + 1 else baseline[None]
    attributions, deltas = [], []
    for x_baseline in stack:
        a = integrated_gradients(model, x, target=target, baseline=x_baseline, steps=steps, method=METHOD,
                                 batch_size=batch_size)
        attributions.append(a)
        deltas.append(completeness_delta(model, x, a, baseline=x_baseline, target=target))
    a = torch.stack(attributions).mean(0)  # (N, C, H, W)
    total = a.flatten(1).sum(1)  # (N,)
    return a, total, total - torch.stack(deltas).mean(0)


# %% Figures --------------------------------------------------------------------------

PATH_FRAMES = 6  # images shown along the path


def plot_path(demo: demos.Demo, x_baseline: torch.Tensor, classes: torch.Tensor, explained: str):
    """The first example at a few points of the straight path, and its class score along it."""
    import matplotlib.ticker as ticker

    x, c = demo.x[:1], int(classes[0])
    # the curve is sampled densely near the baseline, where the score changes fastest
    alphas = torch.cat([torch.linspace(0, 1, PATH_FRAMES), torch.linspace(0, 0.1, 41),
                        torch.linspace(0.1, 1, 37)]).unique().to(x.device)  # (A,) sorted
    path = x_baseline[:1] + alphas.view(-1, 1, 1, 1) * (x - x_baseline[:1])  # (A, C, H, W)
    with torch.no_grad():
        logits = utils.forward_in_chunks(demo.model, path, BATCH_SIZE)  # (A, K)
    scores = logits[:, c].cpu()
    probabilities = logits.softmax(1)[:, c].cpu()
    frames = torch.searchsorted(alphas, torch.linspace(0, 1, PATH_FRAMES, device=x.device))  # (PATH_FRAMES,)
    images = demo.display(path[frames])
    fig, axes = utils.figure_grid(2, (PATH_FRAMES + 1) // 2 + 1, landscape=True,
                                  title=f"x' + alpha (x - x'): from the black baseline to '{demo.names[0]}'; "
                                        f"p = probability of '{utils.shorten(explained)}'")
    curve = axes[0, -1].get_gridspec()
    for ax in axes[:, -1]:
        ax.remove()
    ax = fig.add_subplot(curve[:, -1])  # the score curve takes the last column, both rows
    sizes = utils.fonts(fig)
    for image_ax, frame, image in zip(axes[:, :-1].flat, frames.tolist(), images):
        utils.show_image(image_ax, image, f"alpha = {alphas[frame]:.1f}, p = {probabilities[frame]:.0%}")
    ax.plot(alphas.cpu(), scores, color="tab:red", lw=2)
    ax.xaxis.set_major_locator(ticker.AutoLocator())
    ax.yaxis.set_major_locator(ticker.AutoLocator())
    ax.tick_params(labelsize=sizes["ticks"])
    ax.set_xlabel("alpha", fontsize=sizes["label"])
    ax.set_title("S_c (logit) along the path", fontsize=sizes["title"])
    ax.grid(True, alpha=0.3)
    return fig


def plot_baselines(demo: demos.Demo, baselines: dict[str, torch.Tensor],
                   results: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], rows: int):
    """Row 0: the baselines of the first example. Then per example: IG from each baseline."""
    names = list(baselines)
    fig, axes = utils.figure_grid(rows + 1, len(names) + 1, landscape=True,
                                  title="Integrated Gradients depends on the baseline (signed"
                                        + (", sum over channels)" if demo.x.shape[1] > 1 else ")"))
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
                               signed=True, bar=False)
    utils.shared_colorbar(fig, axes[1:, 1:], signed=True, label="red +, blue -, 1 = 99th pct of |IG|")
    return fig


BANDS = ("riemann_trapezoid", "gausslegendre")  # this lecture's default and Captum's: their spread is shown
# marker, line style and a sideways shift (a factor on the step count) for each rule, so that
# rules with the same error (on the digits, three are exact) do not hide one another
LINES = {"riemann_left": ("o", "-", 0.94), "riemann_right": ("s", "--", 0.97),
         "riemann_middle": ("^", "-.", 1.0), "riemann_trapezoid": ("D", "-", 1.03),
         "gausslegendre": ("x", ":", 1.06)}


def percent(value: float, _position=None) -> str:
    """A tick label in one format at every scale: 10%, 1%, 0.01%, 0.00001% (never 1e-05%)."""
    return np.format_float_positional(float(f"{value:.3g}"), trim="-") + "%"


def plot_convergence(errors: dict[tuple[str, int], torch.Tensor], tolerance: float, what: str):
    """Median |completeness error| over the examples against path points; min-max bands for two rules."""
    import matplotlib.ticker as ticker

    fig, axes = utils.figure_grid(1, 1, landscape=True, title=f"Completeness error against steps\n{what}")
    sizes = utils.fonts(fig)
    ax = axes[0, 0]
    for method in METHODS:
        rules = sorted(rule for rule in errors if rule[0] == method)
        n = np.array([steps for _, steps in rules], dtype=float)
        e = 100 * torch.stack([errors[rule].abs() for rule in rules]).numpy()  # (counts, N) in %
        marker, style, shift = LINES[method]
        line, = ax.loglog(n * shift, np.median(e, axis=1), marker=marker, ls=style, lw=2, ms=9, mfc="none",
                          mew=2, label=method)
        if e.shape[1] > 1 and method in BANDS:
            ax.fill_between(n * shift, e.min(axis=1), e.max(axis=1), color=line.get_color(), alpha=0.18, lw=0)
    first = sorted(rule for rule in errors if rule[0] == "riemann_trapezoid")  # guides through its first median
    n0, e0 = first[0][1], 100 * float(np.median(errors[first[0]].abs().numpy()))
    if e0 > 0:
        n = np.array([steps for _, steps in first], dtype=float)
        for power, style in ((1, (0, (1, 2))), (2, (0, (4, 3)))):
            ax.loglog(n, e0 * (n0 / n) ** power, color="0.45", lw=1.5, ls=style,
                      label=f"guide: ~1/n{'' if power == 1 else '^2'} (textbook order of\n"
                            f"{'a rule across a jump' if power == 1 else 'the trapezoid, smooth'})")
    rule = "the paper's rule of thumb" if tolerance == TOLERANCE else "--tolerance"
    ax.axhline(100 * tolerance, color="k", lw=1.5, label=f"{rule}, {100 * tolerance:g}%")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=2))
    ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(percent))
    ax.tick_params(labelsize=sizes["ticks"])
    ax.set_xlabel("path points (model evaluations per example)", fontsize=sizes["label"])
    ax.set_ylabel("|sum IG - (S_c(x) - S_c(x'))| / |S_c(x) - S_c(x')|", fontsize=sizes["label"])
    ax.legend(fontsize=sizes["label"], title="lines: median over the examples\nbands: min to max, for the\n"
              "trapezoid and Gauss-Legendre\npoints shifted sideways a little\nso that none hides another",
              title_fontsize=sizes["label"], loc="upper left",
              bbox_to_anchor=(1.02, 1.0))
    ax.grid(True, which="major", alpha=0.3)
    return fig


# %% The demo -------------------------------------------------------------------------

QUICK_STEPS = 8  # far too few for 5% on a real network: --quick prints how far off it is
QUICK_PHOTOS = 2  # --quick explains this many photos ...
QUICK_DIGITS = 3  # ... or digits
QUICK_SIZE = 112  # --quick shrinks photos to this size: IG evaluates the model hundreds of times
DIGITS = 6
BASELINE_ROWS = 3  # examples in the baseline comparison, which runs IG 3 + NOISE_DRAWS times each
NOISE_DRAWS = 4  # uniform-noise baselines averaged over this many draws (2 with --quick)
CONVERGENCE_LEVELS = 7  # the convergence figure doubles the steps from 2 to 2^7 = 128 ...
QUICK_CONVERGENCE_LEVELS = 4  # ... or to 16 with --quick


def convergence_rules(levels: int) -> list[tuple[str, int]]:
    """Each rule at 2, 4, ..., 2^levels steps (the trapezoid: that many intervals), sharing nodes
    where they can: the midpoint and Gauss-Legendre rules stop one doubling earlier."""
    rules = []
    for j in range(1, levels + 1):
        rules += [("riemann_left", 2 ** j), ("riemann_right", 2 ** j), ("riemann_trapezoid", 2 ** j + 1)]
        if j < levels:  # these nodes are new ones, not shared: keep the run short
            rules += [("riemann_middle", 2 ** j), ("gausslegendre", 2 ** j)]
    return rules


CHANGE = "S(x)-S(x')"  # a column title


def print_completeness(names, explained, steps, total, change, tolerance: float) -> int:
    """One row per example: the error as a percentage of S_c(x) - S_c(x'), and the verdict."""
    error = (total - change) / change.abs()
    w_name, w_class = max(map(len, names + ["example"])), max(map(len, explained + ["class"]))
    print(f"  {'example':<{w_name}}  {'class':<{w_class}}  {'steps':>5}  {'sum IG':>9}  "
          f"{CHANGE:>10}  {'error':>8}  verdict")
    for name, c, n, s, d, e in zip(names, explained, steps, total.tolist(), change.tolist(), error.tolist()):
        verdict = f"within {100 * tolerance:g}%" if abs(e) <= tolerance else \
            f"OFF by more than {100 * tolerance:g}%"
        print(f"  {name:<{w_name}}  {c:<{w_class}}  {int(n):>5}  {s:9.3f}  {d:10.3f}  {e:+8.1%}  {verdict}")
    return int((error.abs() > tolerance).sum())


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    parser = utils.make_parser(__doc__)
    parser.add_argument("--steps", type=utils.int_in_range(2, 2000), default=None,
                        help=f"points on the path (default {STEPS}; {QUICK_STEPS} with --quick)")
    parser.add_argument("--method", choices=METHODS, default=METHOD, help="quadrature rule for the integral")
    parser.add_argument("--tolerance", type=utils.float_in_range(1e-4, 1.0), default=None,
                        help="refine the path until every example's completeness error is within this "
                             f"fraction of S(x) - S(x') (the paper: {TOLERANCE}); replaces --steps and "
                             "--method")
    parser.add_argument("--max-steps", type=utils.int_in_range(2, 100_000), default=MAX_STEPS,
                        help=f"with --tolerance, the most path points per example (default {MAX_STEPS})")
    parser.add_argument("--batch-size", type=utils.int_in_range(1, 100_000), default=BATCH_SIZE,
                        help="path points per forward pass (memory, not results)")
    args = parser.parse_args(argv)
    demo = demos.setup_demo(args, n_images=QUICK_PHOTOS if args.quick else None,
                            n_digits=QUICK_DIGITS if args.quick else DIGITS, quick_size=QUICK_SIZE)
    target = demos.demo_target(args, demo)
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    tolerance = args.tolerance or TOLERANCE
    progress = not args.quick
    generator = torch.Generator().manual_seed(args.seed)
    classes, explained = demo.explained_classes(target)  # (N,) and their names
    demos.print_what_photos_show(demo, target)
    black = demo.black()

    # 1. Completeness from the black baseline: each example's error against the paper's 5%.
    if args.tolerance:
        attributions, used = integrated_gradients_within(
            demo.model, demo.x, target=classes, baseline=black, tolerance=args.tolerance,
            max_steps=args.max_steps, batch_size=args.batch_size, progress=progress)
        how = (f"the trapezoid rule on a path refined until within {100 * args.tolerance:g}% "
               f"(at most {args.max_steps} points)")
    else:
        attributions = integrated_gradients(demo.model, demo.x, target=classes, baseline=black, steps=steps,
                                            method=args.method, batch_size=args.batch_size, progress=progress)
        used, how = torch.full((len(classes),), steps), f"{args.method} with {steps} steps"
    delta = completeness_delta(demo.model, demo.x, attributions, baseline=black, target=classes)
    total = attributions.flatten(1).sum(1)
    print(f"\nCompleteness, {how}, black baseline x':\n"
          f"is sum_i IG_i within {100 * tolerance:g}% of S_c(x) - S_c(x')?")
    off = print_completeness(demo.names, explained, used.tolist(), total, total - delta, tolerance)
    if off and args.tolerance:
        print(f"{off} of {len(classes)} examples still miss {100 * tolerance:g}% at --max-steps "
              f"{args.max_steps}: their paths cross more ReLU kinks than that many points resolve. "
              "Raise --max-steps "
              "(each point costs a forward and a backward pass) or read their attributions as that far off.")
    elif off:
        few = f"{steps} steps are too few for this network"
        if args.quick and not args.steps:
            few = f"--quick takes only {steps} steps, to run in seconds, and that is too few for this network"
        print(f"{off} of {len(classes)} examples miss the paper's {100 * tolerance:g}%: {few} "
              "(see the header: along the path the integrand jumps). Ask for "
              f"--tolerance {TOLERANCE} and the path is refined until they are within it.")
    else:
        print(f"Every example is within {100 * tolerance:g}%.")
    utils.save_figure(plot_path(demo, black, classes, explained[0]), args.out_dir,
                      f"04_path_{demo.track}.png")

    # 2. Baselines side by side, and the table of sums against S(x) - S(x').
    rows = min(1 if args.quick else BASELINE_ROWS, demo.x.shape[0])
    sub = dataclasses.replace(demo, x=demo.x[:rows], names=demo.names[:rows])
    baselines = baselines_for(sub, 2 if args.quick else NOISE_DRAWS, generator)
    results = {}
    for name, baseline in utils.progress_bar(baselines.items(), "baselines", enabled=progress, leave=True):
        results[name] = ig_for_baseline(demo.model, sub.x, classes[:rows], baseline, steps, args.batch_size)
    print(f"\nThe baseline decides what IG explains ({steps} steps; noise: the mean over its draws):")
    width = max(map(len, demo.names[:rows] + ["example"]))
    print(f"  {'example':<{width}} " + " ".join(f"{name:>23}" for name in baselines))
    print(f"  {'':<{width}} " + " ".join(f"{'sum IG / ' + CHANGE:>23}" for _ in baselines))
    for row in range(rows):
        cells = [f"{results[n][1][row]:10.4g} /{results[n][2][row]:10.4g}" for n in baselines]
        print(f"  {demo.names[row]:<{width}} " + " ".join(f"{c:>23}" for c in cells))
    utils.save_figure(plot_baselines(sub, baselines, results, rows), args.out_dir,
                      f"04_baselines_{demo.track}.png")

    # 3. How the error falls as the steps double, every example, black baseline.
    rules = convergence_rules(QUICK_CONVERGENCE_LEVELS if args.quick else CONVERGENCE_LEVELS)
    errors = rule_errors(demo.model, demo.x, classes, black, rules, args.batch_size)
    print(f"\nMedian |completeness error| over the {len(classes)} examples, black baseline, by path points:")
    for method in METHODS:
        cells = [f"{n}: {np.median(errors[m, n].abs().numpy()):.1%}" for m, n in rules if m == method]
        print(f"  {method:>18}  " + "  ".join(cells))
    kind = "photo" if demo.track == "imagenet" else "digit"
    examples = f"{len(classes)} {kind}{'' if len(classes) == 1 else 's'}"
    what = f"{examples}, {demo.network}, black baseline"
    skip_zero = [m for m in METHODS if float(quadrature(m, 2)[0].min()) > 0]  # rules without a node at 0
    if max(float(errors[m, n].abs().max()) for m, n in rules if m in skip_zero) < 1e-4:
        print(f"Every rule without a node at alpha = 0 ({', '.join(skip_zero)}) is exact: dS_c/dalpha is "
              "constant along the path\nbut at alpha = 0, where every unit is off. So the trapezoid errs by "
              "exactly w_0 = 1/(2(n - 1)) and riemann_left by 1/n.")
    utils.save_figure(plot_convergence(errors, tolerance, what), args.out_dir,
                      f"04_convergence_{demo.track}.png")


if __name__ == "__main__":
    main()
