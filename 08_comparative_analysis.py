"""Part 8 of 9: comparing saliency methods.   Previous: 07_guided_gradcam.py   Next: 09_advanced_techniques.py

Intuition: seven maps of one image disagree, so measure them: a map is faithful when
removing what it points at destroys the prediction, and trustworthy when it changes
with the model it claims to explain. LIME and SHAP join as the model-agnostic pair.

    Shapley value  phi_j = sum_{S without j} |S|! (M-|S|-1)! / M! [v(S + j) - v(S)]
    KernelSHAP     min_phi sum_z pi(z) (v(z) - v(0) - z . phi)^2,  sum_j phi_j = v(1) - v(0),
                   pi(z) = (M-1) / (C(M,|z|) |z| (M-|z|)): with every coalition, the Shapley values
    LIME           min_g sum_z exp(-d(z)^2 / width^2) (v(z) - g0 - z . g)^2,  d = 1 - cos(z, 1)
    deletion(k)    p_c(x with its top round(k H W / steps) pixels set to a baseline)
    insertion(k)   p_c(a blurred x with its top pixels put back); AUC = trapezoid area over [0, 1]
    pointing game  hit when the map's maximum lies within 15 px of the object (at 224 px)
    sensitivity-n  corr over random pixel sets S of |S| = n: sum_S R  against  f_c(x) - f_c(x_S=0)
    sanity check   rank correlation of the map before and after randomising the weights

v(z) is the target logit with the grid cells in z kept and the others set to the baseline.
The two agree because pi(z) is the one weighting whose constrained regression over all 2^M
coalitions gives the Shapley values (Lundberg & Lee, Theorem 2); drawing z in proportion to
pi(z) estimates that regression, so KernelSHAP tends to the formula as samples grow.
A per-pixel random deletion order is no chance line: scattered holes push any image off the
data the network knows (Hooker et al. 2019; Rong et al. 2022). On EfficientNet-Lite2 and the
cat photo it gave AUC 0.09 where Grad-CAM's order gave 0.41 and its reverse 0.81, so the
chance lines here are a smooth random map and each method's own order reversed.

Papers: Lundberg & Lee, NeurIPS 2017, https://arxiv.org/abs/1705.07874 ; Ribeiro et al., KDD 2016,
https://arxiv.org/abs/1602.04938 ; Petsiuk et al. (RISE), BMVC 2018, https://arxiv.org/abs/1806.07421 ;
Zhang et al. (pointing game), ECCV 2016, https://arxiv.org/abs/1608.00507 ; Ancona et al., ICLR 2018,
https://arxiv.org/abs/1711.06104 ; Adebayo et al., NeurIPS 2018, https://arxiv.org/abs/1810.03292 ;
Hooker et al. (ROAR), NeurIPS 2019, https://arxiv.org/abs/1806.10758 ; Rong et al. (ROAD), ICML 2022,
https://arxiv.org/abs/2202.00449

Run:          python 08_comparative_analysis.py --model mnist   (digits: a few minutes)
ImageNet:     python 08_comparative_analysis.py --model efficientnet_lite0   (long on a CPU)
In seconds:   python 08_comparative_analysis.py --quick
Figures, the method guide (Markdown and CSV) go to outputs/.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

import utils

vanilla = utils.load_lecture("01_vanilla_gradient_saliency")
gxi = utils.load_lecture("02_gradient_input_saliency")
smooth = utils.load_lecture("03_smoothgrad")
ig = utils.load_lecture("04_integrated_gradients")
gradcam = utils.load_lecture("05_gradcam")
guided = utils.load_lecture("06_guided_backpropagation")
ggc = utils.load_lecture("07_guided_gradcam")

GRID = 7  # LIME's and SHAP's features: a 7 x 7 grid of cells (M = 49)
EXACT_FEATURES = 16  # up to 2^16 coalitions, the Shapley values are computed exactly
TOLERANCE = 15  # the pointing game's tolerance at 224 pixels (Zhang et al.; TorchRay)
BLUR_SIZE, BLUR_SIGMA = 11, 5.0  # RISE's insertion substrate
STROKE = 0.5  # a digit's ground truth: pixels brighter than half
SENSITIVITY_N = (0.002, 0.01, 0.05, 0.2, 0.5)  # subset sizes, as fractions of H * W
# What a run costs is set here. Each curve point, subset and coalition is one forward pass, and
# a 224-pixel photo costs a CPU ~100 times a 28-pixel digit, so the photo run draws fewer.
#   steps: points per deletion / insertion curve (RISE uses one per 224 pixels)
#   subsets: random subsets per size n for sensitivity-n (Ancona et al. use 100)
#   smooth, ig: SmoothGrad's noisy copies and IG's path points
#   lime, shap: coalitions per image (kernel_shap's own default, None, would draw 2M + 2048)
#   sanity: LIME's and SHAP's coalitions in the randomisation test; stages: its cumulative steps
#   sanity_rows, stability_rows: inputs used by the sanity check and by the second-seed run
#   batch: perturbed inputs per forward pass (memory, never the result)
DIGIT_RUN = dict(rows=20, steps=20, subsets=40, smooth=32, ig=32, lime=512, shap=1024, sanity=256, stages=5,
                 sanity_rows=4, stability_rows=20, batch=256)
PHOTO_RUN = dict(rows=7, steps=16, subsets=20, smooth=32, ig=32, lime=256, shap=512, sanity=128, stages=4,
                 sanity_rows=1, stability_rows=2, batch=16)
QUICK_RUN = dict(rows=2, steps=8, subsets=8, smooth=4, ig=4, lime=48, shap=64, sanity=32, stages=2,
                 sanity_rows=1, stability_rows=2, batch=64, size=112)
SIDE_BY_SIDE_ROWS = 6
MARKERS = "ovs^DphPX"  # one filled marker per method in the plots
GROUND_TRUTH = utils.DATA_DIR / "ground_truth.json"

SHORT = {"vanilla gradient": "gradient", "gradient x input": "grad x input", "SmoothGrad": "SmoothGrad",
         "integrated gradients": "IG", "Grad-CAM": "Grad-CAM", "guided backprop": "guided BP",
         "guided Grad-CAM": "guided Grad-CAM", "LIME": "LIME", "SHAP": "SHAP"}
GUIDE = {  # best use, limitation: the course's table; the run adds the numbers
    "vanilla gradient": ("a first look, one backward pass", "noisy; local sensitivity, not use"),
    "gradient x input": ("sharper pixel maps", "zero wherever the input is zero"),
    "SmoothGrad": ("cleaner gradient maps", "n times the cost; noise level to choose"),
    "integrated gradients": ("completeness and other axioms", "needs a baseline; steps to check"),
    "Grad-CAM": ("class-discriminative localisation", "coarse: the layer's resolution"),
    "guided backprop": ("sharp edges for figures", "not class-discriminative; fails the sanity check"),
    "guided Grad-CAM": ("sharp and class-discriminative", "inherits guided backprop's sanity failure"),
    "LIME": ("any model, no gradients", "a surrogate that changes with the samples"),
    "SHAP": ("additive, unique, sums to v(1) - v(0)", "the most model evaluations"),
}


# %% Features: LIME and SHAP explain cells of a grid, not pixels ------------------------------


def grid_mask(height: int, width: int, cells: int = GRID) -> torch.Tensor:
    """(1, 1, H, W) cell indices, cell edges at round(i * H / cells) and round(j * W / cells)."""
    row_edges = torch.tensor([round(i * height / cells) for i in range(1, cells)])  # (cells - 1,)
    col_edges = torch.tensor([round(j * width / cells) for j in range(1, cells)])
    rows = torch.bucketize(torch.arange(height), row_edges, right=True)  # (H,) the cell row of each pixel row
    cols = torch.bucketize(torch.arange(width), col_edges, right=True)  # (W,)
    return (rows[:, None] * cells + cols[None, :])[None, None]


def features_of(feature_mask, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The feature of every element, (1 or N, 1 or C, H, W) long, and the number of features M."""
    if feature_mask is None:
        if x.dim() != 4:
            raise utils.InputError(f"the default grid needs inputs (N, C, H, W), got shape {tuple(x.shape)}")
        return grid_mask(*x.shape[-2:]).to(x.device), GRID * GRID
    mask = torch.as_tensor(feature_mask, device=x.device)
    if mask.is_floating_point() or mask.dtype == torch.bool or mask.numel() == 0 or int(mask.min()) < 0:
        raise utils.InputError("feature_mask must hold integer feature indices 0 to M-1")
    try:
        if torch.broadcast_shapes(mask.shape, x.shape) != x.shape:
            raise RuntimeError
    except RuntimeError:
        raise utils.InputError(f"feature_mask of shape {tuple(mask.shape)} does not broadcast to the "
                               f"inputs' shape {tuple(x.shape)}") from None
    return mask.long().reshape((1,) * (x.dim() - mask.dim()) + tuple(mask.shape)), int(mask.max()) + 1


def like(baseline, x: torch.Tensor) -> torch.Tensor:
    """A baseline the shape of `x`: a number fills it, a tensor is broadcast."""
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if not isinstance(baseline, torch.Tensor):
        raise utils.InputError(f"a baseline is a number or a tensor like the inputs, got {baseline!r}")
    try:
        return torch.broadcast_to(baseline.detach().to(x.device, x.dtype), x.shape)
    except RuntimeError:
        raise utils.InputError(f"a baseline of shape {tuple(baseline.shape)} does not broadcast to "
                               f"the inputs' shape {tuple(x.shape)}") from None


def coalition_values(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, mask: torch.Tensor,
                     x_baseline: torch.Tensor, Z: torch.Tensor, batch_size: int | None,
                     progress: bool = False, desc: str = "coalitions") -> torch.Tensor:
    """v(z) for every example and coalition: (N, P) target logits, float64.

    Z is (P, M) booleans; x(z) keeps the features in z and takes the baseline elsewhere.
    """
    n = x.shape[0]
    values = torch.empty(n, Z.shape[0], dtype=torch.float64, device=x.device)  # (N, P)
    mask_n = mask.expand(n, *mask.shape[1:])  # (N, 1 or C, H, W), a view
    for k, i in utils.point_chunks(n, Z.shape[0], batch_size, x.device, progress, desc):
        keep = Z[k].gather(1, mask_n[i].flatten(1)).view(len(i), *mask.shape[1:])  # (B, 1 or C, H, W)
        x_z = torch.where(keep, x[i], x_baseline[i])  # (B, C, H, W)
        with torch.no_grad():
            values[i, k] = model(x_z).gather(1, classes[i, None]).squeeze(1).double()
    return values


def spread(phi: torch.Tensor, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Every element of a feature gets that feature's value: (N, M) -> the shape of `x`."""
    mask_n = mask.expand(x.shape[0], *mask.shape[1:]).flatten(1)  # (N, 1 or C * H * W)
    values = phi.to(x.device, x.dtype).gather(1, mask_n).view(x.shape[0], *mask.shape[1:])
    return values.expand_as(x).contiguous()


# %% SHAP: the Shapley formula, and KernelSHAP's regression ------------------------------------


def shapley_formula(v: torch.Tensor, M: int) -> torch.Tensor:
    """phi_j = sum over S without j of |S|! (M-|S|-1)! / M! (v(S + j) - v(S)).

    v is (N, 2^M): column p is the coalition whose bit j says whether feature j is in it.
    """
    coalition = torch.arange(2 ** M, device=v.device)
    size = sum((coalition >> j) & 1 for j in range(M))  # (2^M,) |S|
    weight = torch.tensor([math.factorial(s) * math.factorial(M - s - 1) / math.factorial(M)
                           for s in range(M)], dtype=torch.float64, device=v.device)  # (M,) by |S|
    phi = torch.empty(v.shape[0], M, dtype=torch.float64, device=v.device)
    for j in range(M):
        S = coalition[(coalition >> j) & 1 == 0]  # (2^(M-1),) the coalitions without j
        phi[:, j] = ((v[:, S | (1 << j)] - v[:, S]) * weight[size[S]]).sum(1)
    return phi  # (N, M)


def kernel_coalitions(M: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n coalitions (n, M): size s in 1..M-1 with probability ~ (M-1) / (s (M-s)), uniform within a size.

    Drawn so, each coalition comes with probability proportional to its Shapley kernel
    weight pi(z), so the regression below weights every drawn coalition equally.
    """
    s = torch.arange(1, M, dtype=torch.float64)
    sizes = torch.multinomial((M - 1) / (s * (M - s)), n, replacement=True, generator=generator) + 1  # (n,)
    order = torch.rand(n, M, generator=generator).argsort(1)  # (n, M) a random order of the features
    return torch.zeros(n, M, dtype=torch.bool).scatter_(1, order, torch.arange(M) < sizes[:, None])


def efficient_regression(Z: torch.Tensor, v: torch.Tensor, v_all: torch.Tensor, v_none: torch.Tensor):
    """min sum (v(z) - v(0) - z . phi)^2 subject to sum phi = v(1) - v(0), for every example at once.

    The constraint removes one unknown: phi_M = delta - sum of the others.
    """
    Z, delta = Z.double().cpu(), (v_all - v_none).cpu()  # (P, M), (N,)
    A = Z[:, :-1] - Z[:, -1:]  # (P, M-1)
    y = v.cpu() - v_none.cpu()[:, None] - Z[:, -1][None] * delta[:, None]  # (N, P)
    rest = torch.linalg.lstsq(A, y.T, driver="gelsd").solution.T  # (N, M-1), least squares per example
    return torch.cat([rest, (delta - rest.sum(1))[:, None]], 1).to(v.device)  # (N, M)


def kernel_shap(model: nn.Module, inputs: torch.Tensor, target=None, feature_mask=None, baseline=0.0,
                n_samples: int | None = None, batch_size: int | None = None,
                generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """Shapley values of the features (Lundberg and Lee, 2017), spread over their elements.

    n_samples None: the exact values by the formula when M <= 16, else KernelSHAP with 2M + 2048
    coalitions; an int: KernelSHAP with that many coalitions from `generator`.
    """
    x = inputs.detach()
    mask, M = features_of(feature_mask, x)
    x_baseline = like(baseline, x)
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)  # fixed at x
    if n_samples is None and M <= EXACT_FEATURES:
        bits = torch.arange(2 ** M)[:, None] >> torch.arange(M) & 1  # (2^M, M) every coalition
        v = coalition_values(model, x, classes, mask, x_baseline, bits.bool().to(x.device), batch_size,
                             progress, "SHAP")  # (N, 2^M)
        return spread(shapley_formula(v, M), mask, x)
    n = 2 * M + 2048 if n_samples is None else _count(n_samples, "n_samples")
    if M == 1:  # one feature takes all: efficiency alone gives its value
        Z = torch.zeros(0, 1, dtype=torch.bool)
    else:
        Z = kernel_coalitions(M, n, generator)  # (n, M)
    ends = torch.stack([torch.ones(M, dtype=torch.bool), torch.zeros(M, dtype=torch.bool)])  # v(1), v(0)
    v = coalition_values(model, x, classes, mask, x_baseline, torch.cat([ends, Z]).to(x.device), batch_size,
                         progress, "SHAP")  # (N, 2 + n)
    return spread(efficient_regression(Z, v[:, 2:], v[:, 0], v[:, 1]), mask, x)


def _count(n, name: str) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise utils.InputError(f"{name} must be a whole number >= 1, got {n}")
    return int(n)


# %% LIME: a weighted linear surrogate ----------------------------------------------------------


def lime(model: nn.Module, inputs: torch.Tensor, target=None, feature_mask=None, baseline=0.0,
         n_samples: int = 1000, kernel_width: float = 0.25, batch_size: int | None = None,
         generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """LIME (Ribeiro et al., 2016) on grid cells: the coefficients of a weighted linear fit of v(z) on z."""
    if not kernel_width > 0:
        raise utils.InputError(f"kernel_width must be > 0, got {kernel_width}")
    x = inputs.detach()
    mask, M = features_of(feature_mask, x)
    x_baseline = like(baseline, x)
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)
    Z = torch.rand(_count(n_samples, "n_samples"), M, generator=generator) < 0.5  # (n, M) each kept w.p. 1/2
    v = coalition_values(model, x, classes, mask, x_baseline, Z.to(x.device), batch_size, progress, "LIME")
    kept = Z.sum(1).double()  # (n,) |z|
    distance = 1 - kept.sqrt() / math.sqrt(M)  # cosine distance to all-ones: 1 - |z| / (sqrt|z| sqrt M)
    root_w = torch.exp(-distance ** 2 / kernel_width ** 2).sqrt()  # (n,) sqrt of the sample weights
    design = torch.cat([torch.ones(len(Z), 1, dtype=torch.float64), Z.double()], 1)  # (n, 1 + M): intercept
    fit = torch.linalg.lstsq(design * root_w[:, None], (v.cpu() * root_w).T,
                             driver="gelsd").solution  # (1 + M, N)
    return spread(fit[1:].T.to(x.device), mask, x)  # the intercept is not an attribution


# %% Deletion and insertion (RISE) --------------------------------------------------------------


def pixel_map(saliency: torch.Tensor) -> torch.Tensor:
    """(N, H, W): a (N, C, H, W) map summed in absolute value over channels; (N, H, W) as it is."""
    s = saliency.detach()
    if s.dim() == 4:
        return s.abs().sum(1)
    if s.dim() == 3:
        return s
    raise utils.InputError(f"a saliency map is (N, C, H, W) or (N, H, W), got shape {tuple(s.shape)}")


def blurred(x: torch.Tensor, size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """x blurred per channel by a size x size Gaussian of `sigma`, zero-padded as RISE does."""
    t = torch.arange(size, dtype=x.dtype, device=x.device) - (size - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = (g[:, None] * g[None, :]) / g.sum() ** 2  # (size, size), sums to 1
    c = x.shape[1]
    return F.conv2d(x, kernel.expand(c, 1, size, size), padding=size // 2, groups=c)


def reveal_curve(model: nn.Module, start: torch.Tensor, end: torch.Tensor, saliency: torch.Tensor,
                 classes: torch.Tensor, steps: int, batch_size: int | None, progress: bool) -> torch.Tensor:
    """(N, steps + 1) probabilities of the class: point k shows `end` at the top
    round(k H W / steps) pixels of the map, all channels of a pixel together, and `start` elsewhere."""
    heat = pixel_map(saliency).to(start.device)  # (N, H, W)
    n, h, w = heat.shape
    if tuple(start.shape[-2:]) != (h, w) or heat.shape[0] != start.shape[0]:
        raise utils.InputError(f"saliency of shape {tuple(saliency.shape)} does not match the inputs "
                               f"{tuple(start.shape)}")
    order = torch.argsort(heat.flatten(1), dim=1, descending=True, stable=True)  # (N, HW) most salient first
    place = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=order.device).expand(n, -1))
    counts = torch.tensor([round(k * h * w / steps) for k in range(steps + 1)], device=start.device)
    curve = torch.empty(n, steps + 1, dtype=start.dtype, device=start.device)
    for k, i in utils.point_chunks(n, steps + 1, batch_size, start.device, progress, "curves"):
        shown = (place[i] < counts[k, None]).view(-1, 1, h, w)  # (B, 1, H, W): all channels of a pixel
        with torch.no_grad():
            probs = model(torch.where(shown, end[i], start[i])).softmax(1)  # (B, K)
        curve[i, k] = probs.gather(1, classes[i, None]).squeeze(1)
    return curve


def deletion_curve(model: nn.Module, inputs: torch.Tensor, saliency: torch.Tensor, target=None,
                   steps: int = 50, baseline=0.0, batch_size: int | None = None,
                   progress: bool = False) -> torch.Tensor:
    """RISE's deletion: p_c as the most salient pixels go to `baseline`, most salient first."""
    x = inputs.detach()
    # RISE fixes the class for the whole curve: the one explained at x.
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)
    steps = _count(steps, "steps")
    return reveal_curve(model, x, like(baseline, x), saliency, classes, steps, batch_size, progress)


def insertion_curve(model: nn.Module, inputs: torch.Tensor, saliency: torch.Tensor, target=None,
                    steps: int = 50, baseline="blur", batch_size: int | None = None,
                    progress: bool = False) -> torch.Tensor:
    """RISE's insertion: from a blurred copy (or `baseline`), p_c as the input's pixels come back."""
    x = inputs.detach()
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)
    substrate = blurred(x) if isinstance(baseline, str) and baseline == "blur" else like(baseline, x)
    return reveal_curve(model, substrate, x, saliency, classes, _count(steps, "steps"), batch_size, progress)


def area_under_curve(curve: torch.Tensor) -> torch.Tensor:
    """(N,) trapezoidal area of each row over x from 0 to 1 (RISE's auc)."""
    c = curve.detach()
    return (c[:, 1:] + c[:, :-1]).sum(1) / (2 * (c.shape[1] - 1))


# %% The pointing game -----------------------------------------------------------------------


def near(mask: torch.Tensor, tolerance: float) -> torch.Tensor:
    """(N, H, W): the pixels strictly within `tolerance` (Euclidean) of some pixel of `mask`."""
    r = max(math.ceil(tolerance) - 1, 0)
    offsets = torch.arange(-r, r + 1, dtype=torch.float32)
    disc = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) < tolerance ** 2).float()  # (2r+1, 2r+1)
    hits = F.conv2d(mask.float()[:, None], disc[None, None].to(mask.device), padding=r)  # (N, 1, H, W)
    return hits[:, 0] > 0.5


def pointing_game(saliency: torch.Tensor, mask: torch.Tensor, tolerance: float = 15) -> torch.Tensor:
    """(N,) bools: the map's first maximum (in flattened order) lies within `tolerance` px of the mask."""
    heat = pixel_map(saliency)  # (N, H, W)
    if tuple(mask.shape) != tuple(heat.shape):
        raise utils.InputError(f"the mask is (N, H, W) = {tuple(heat.shape)}, got {tuple(mask.shape)}")
    peak = heat.flatten(1).argmax(1)  # (N,) torch.argmax returns the first maximum
    return near(mask.bool().to(heat.device), tolerance).flatten(1).gather(1, peak[:, None]).squeeze(1)


# %% Sensitivity-n ----------------------------------------------------------------------------


def random_subsets(n_examples: int, pixels: int, n, n_subsets: int, generator) -> torch.Tensor:
    """(N, n_subsets, pixels) booleans: sets of n pixels, uniform without replacement."""
    size = round(n * pixels) if isinstance(n, float) else int(n)
    if isinstance(n, bool) or not 1 <= size <= pixels:
        raise utils.InputError(f"n is a pixel count in [1, {pixels}] or a fraction of them, got {n}")
    subsets = torch.zeros(n_examples, _count(n_subsets, "n_subsets"), pixels, dtype=torch.bool)
    for i in range(n_examples):
        for j in range(n_subsets):
            subsets[i, j, torch.randperm(pixels, generator=generator)[:size]] = True
    return subsets


def output_drops(model, x, classes, subsets, baseline, batch_size, progress=False) -> torch.Tensor:
    """(N, S): f_c(x) - f_c(x with the subset's pixels, all channels, set to the baseline)."""
    n, h, w = x.shape[0], *x.shape[-2:]
    x_baseline, subsets = like(baseline, x), subsets.to(x.device)
    with torch.no_grad():
        f_x = model(x).gather(1, classes[:, None])  # (N, 1)
    drops = torch.empty(n, subsets.shape[1], dtype=x.dtype, device=x.device)
    for k, i in utils.point_chunks(n, subsets.shape[1], batch_size, x.device, progress, "sensitivity-n"):
        off = subsets[i, k].view(-1, 1, h, w)  # (B, 1, H, W)
        with torch.no_grad():
            f_off = model(torch.where(off, x_baseline[i], x[i])).gather(1, classes[i, None])  # (B, 1)
            drops[i, k] = f_x[i, 0] - f_off[:, 0]
    return drops


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last dimension."""
    a, b = a.double() - a.double().mean(-1, keepdim=True), b.double() - b.double().mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.square().sum(-1) * b.square().sum(-1)).sqrt()


def sensitivity_n(model: nn.Module, inputs: torch.Tensor, attributions: torch.Tensor, target=None,
                  n=0.1, n_subsets: int = 100, baseline=0.0, batch_size: int | None = None,
                  generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """(N,) Pearson correlation of sum_S R (over channels, signed) with f_c(x) - f_c(x_S=baseline)."""
    x = inputs.detach()
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)
    subsets = random_subsets(x.shape[0], x.shape[-2] * x.shape[-1], n, n_subsets, generator)  # (N, S, HW)
    drops = output_drops(model, x, classes, subsets, baseline, batch_size, progress)  # (N, S)
    return pearson(subset_sums(attributions, subsets), drops).to(x.dtype)


def subset_sums(attributions: torch.Tensor, subsets: torch.Tensor) -> torch.Tensor:
    """(N, S): the attributions summed over channels (signed) and over each subset's pixels."""
    R = attributions.detach().double().sum(1).flatten(1).cpu()  # (N, HW)
    return torch.einsum("nsp,np->ns", subsets.double(), R)


# %% The sanity check: randomise the model, watch the map ----------------------------------------


def randomisation_stages(model: nn.Module, stages: int = 5) -> list[tuple[str, list[str]]]:
    """Cumulative groups of conv and linear layers, from the output backwards: (label, names so far)."""
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))][::-1]
    cuts = range(1, len(layers) + 1) if len(layers) <= stages + 1 else \
        sorted({1, *(round(len(layers) * s / (stages - 1)) for s in range(1, stages))})
    return [(f"{k}/{len(layers)}: {layers[k - 1]}", layers[:k]) for k in cuts]


def cascading_randomisation(model: nn.Module, stages, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Yield (label, a COPY of the model with these layers re-initialised), each stage adding to the last.

    Adebayo et al. (2018): the caller's model is never touched; the re-initialisation uses
    each layer's own default initialiser under a fixed seed, and the global RNG is restored.
    """
    randomised, done = copy.deepcopy(model), 0
    for stage, (label, names) in enumerate(stages):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + stage)
            for name in names[done:]:
                randomised.get_submodule(name).reset_parameters()
        done = len(names)
        yield label, randomised


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (as in Spearman's correlation)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)]
    out = np.empty(len(values))
    out[order] = (first[group] + last[group] + 1) / 2.0
    return out


def mean_of_defined(values) -> float:
    """The mean of the values that are not nan (a constant map has no rank correlation); nan if none is."""
    defined = [float(v) for v in values if not math.isnan(float(v))]
    return sum(defined) / len(defined) if defined else float("nan")


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps (flattened); nan when one is constant."""
    ra, rb = (ranks(t.detach().double().cpu().flatten().numpy()) for t in (a, b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


# %% Ground truth for the pointing game ----------------------------------------------------------


def object_masks(demo: utils.Demo, objects: list[dict]) -> torch.Tensor:
    """(len(objects), H, W) boxes drawn on the original photos, then sent through the demo's own
    preprocessing (resize, crop), so they land where the pixels land."""
    transform = utils.IMAGENET_MODELS[demo.model_name][1].transforms()  # the weights' own preprocessing
    masks = []
    for obj in objects:
        with Image.open(utils.DATA_DIR / obj["image"]) as photo:
            size = photo.size
        drawing = Image.new("RGB", size)
        left, top, right, bottom = obj["box"]
        ImageDraw.Draw(drawing).rectangle([left, top, right - 1, bottom - 1], fill=(255, 255, 255))
        white = transform(drawing)[0]  # (H, W) normalised: 1 -> (1 - mean) / std
        masks.append(white > (0.5 - demo.mean[0]) / demo.std[0])
    masks = torch.stack(masks).float()[:, None]
    return F.interpolate(masks, size=demo.x.shape[-2:], mode="bilinear")[:, 0].to(demo.device) > 0.5


def load_objects() -> list[dict]:
    try:
        return json.loads(GROUND_TRUTH.read_text())["objects"]
    except (OSError, ValueError, KeyError) as error:
        raise utils.InputError(f"{GROUND_TRUTH}: unreadable ground truth ({error}); restore data/") from None


# %% Running every method once ---------------------------------------------------------------


@contextlib.contextmanager
def counting(model: nn.Module) -> Iterator[list[int]]:
    """Count the examples the model evaluates (a forward pre-hook, removed on exit)."""
    count = [0]
    def add(module, args):
        count[0] += len(args[0])

    handle = model.register_forward_pre_hook(add)
    try:
        yield count
    finally:
        handle.remove()


def methods(layer, settings: dict, batch_size: int) -> dict[str, Callable]:
    """name -> f(model, x, classes, seed, samples=None): every method with the run's settings."""
    def gen(seed):
        return torch.Generator().manual_seed(seed)

    return {
        "vanilla gradient": lambda m, x, c, seed, s=None: vanilla.vanilla_gradient(m, x, c),
        "gradient x input": lambda m, x, c, seed, s=None: gxi.gradient_x_input(m, x, c),
        "SmoothGrad": lambda m, x, c, seed, s=None: smooth.smoothgrad(
            m, x, c, n_samples=settings["smooth"], batch_size=batch_size, generator=gen(seed)),
        "integrated gradients": lambda m, x, c, seed, s=None: ig.integrated_gradients(
            m, x, target=c, baseline=None, steps=settings["ig"], batch_size=batch_size),
        "Grad-CAM": lambda m, x, c, seed, s=None: gradcam.grad_cam(m, x, c, layer),
        "guided backprop": lambda m, x, c, seed, s=None: guided.guided_backprop(m, x, c),
        "guided Grad-CAM": lambda m, x, c, seed, s=None: ggc.guided_grad_cam(m, x, c, layer),
        "LIME": lambda m, x, c, seed, s=None: lime(
            m, x, c, n_samples=s or settings["lime"], batch_size=batch_size, generator=gen(seed)),
        "SHAP": lambda m, x, c, seed, s=None: kernel_shap(
            m, x, c, n_samples=s or settings["shap"], batch_size=batch_size, generator=gen(seed)),
    }


def explain_all(demo, runs: dict[str, Callable], classes, seed: int, progress: bool):
    """Each method's map of every input, once: (maps, seconds per image, model evaluations per image)."""
    maps, seconds, evaluations = {}, {}, {}
    n = demo.x.shape[0]
    for name, run in utils.progress_bar(runs.items(), "methods", progress, total=len(runs), leave=True):
        with counting(demo.model) as count:
            start = time.perf_counter()
            maps[name] = run(demo.model, demo.x, classes, seed)
            seconds[name] = (time.perf_counter() - start) / n
        evaluations[name] = count[0] / n
    return maps, seconds, evaluations


# %% Figures ----------------------------------------------------------------------------------


def display_map(saliency: torch.Tensor) -> np.ndarray:
    """Every map the same way for the eye: |.| summed over channels, divided by its 99th percentile."""
    return utils.scale_for_display(pixel_map(saliency).cpu().numpy())


def plot_side_by_side(demo, rows, maps, seconds, titles):
    import matplotlib.pyplot as plt

    names = list(maps)
    fig, axes = utils.figure_grid(len(rows), len(names) + 1, panel=1.7,
                                  title=f"Nine methods on {demo.network}: |map| summed over channels, "
                                        "each divided by its 99th percentile (bright = salient)")
    images = demo.display()
    shown = {name: display_map(maps[name][rows]) for name in names}
    for r, row in enumerate(rows):
        utils.show_image(axes[r, 0], images[row], titles[row].replace(": ", "\n", 1))  # name, then class
        for col, name in enumerate(names, start=1):
            axes[r, col].imshow(shown[name][r], cmap="inferno", vmin=0, vmax=1)
            if r == 0:
                axes[r, col].set_title(f"{SHORT[name]}\n{seconds[name]:.3g} s/image", fontsize=8)
    bar = fig.colorbar(plt.cm.ScalarMappable(plt.Normalize(0, 1), "inferno"), ax=axes[:, -1], fraction=0.08)
    bar.set_label("|map| / 99th percentile", fontsize=7)
    return fig


def plot_curves(demo, titles, curves, aucs, chance, first: int):
    """Top: one input's deletion and insertion curves. Bottom: mean AUC per method, own and reversed order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9), layout="constrained")
    names = list(aucs["deletion"])
    colours = plt.get_cmap("tab10")(np.arange(len(names)))
    for col, kind in enumerate(("deletion", "insertion")):
        ax = axes[0, col]
        steps = curves[kind][names[0]].shape[1] - 1
        fraction = np.linspace(0, 1, steps + 1)
        for name, colour in zip(names, colours):
            ax.plot(fraction, curves[kind][name][first].cpu(), color=colour, label=SHORT[name])
        ax.plot(fraction, chance[kind]["smooth"][first].cpu(), "k--", lw=2, label="smooth random map")
        if kind == "deletion":
            ax.plot(fraction, chance[kind]["pixel"][first].cpu(), ":", color="k", lw=1.5,
                    label="per-pixel random order\n(no chance line: see the text)")
        good = "lower AUC is better" if kind == "deletion" else "higher AUC is better"
        ax.set_title(f"{kind} on '{titles[first]}' ({good})", fontsize=10)
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "put back"))
        ax.set_ylabel("probability of the explained class")
        ax.legend(fontsize=7, ncol=2, loc="upper right" if kind == "deletion" else "lower right")
        ax = axes[1, col]
        own = [float(aucs[kind][n].mean()) for n in names]
        flipped = [float(aucs[f"{kind} reversed"][n].mean()) for n in names]
        at = np.arange(len(names))
        ax.bar(at - 0.2, own, 0.4, color=colours, label="the method's order")
        ax.bar(at + 0.2, flipped, 0.4, color="lightgrey", edgecolor="grey", label="its order reversed")
        ax.axhline(float(chance[f"{kind} auc"]["smooth"].mean()), color="k", ls="--",
                   label="smooth random map")
        ax.set_xticks(at, [SHORT[n] for n in names], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(f"mean {kind} AUC over {len(titles)} inputs")
        better = "LOW is good: the prediction falls fast" if kind == "deletion" else \
            "HIGH is good: the prediction returns fast"
        ax.set_title(f"{kind} AUC: {better}", fontsize=10)
        top = max(own + flipped + [float(chance[f"{kind} auc"]["smooth"].mean())])
        ax.set_ylim(0, top * 1.3)  # room for the legend above the bars
        ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.suptitle(f"Deletion and insertion (RISE), {demo.network}", fontsize=12)
    return fig


def plot_pointing(demo, titles, row, mask, maps, hits, centre, random_rate, tolerance):
    import matplotlib.pyplot as plt

    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained",
                                         gridspec_kw={"width_ratios": [1, 1.4]})
    ax_img.imshow(demo.display()[row], cmap="gray" if demo.x.shape[1] == 1 else None)
    ax_img.contour(mask.cpu().float().numpy(), levels=[0.5], colors="lime", linewidths=2)
    w = demo.x.shape[-1]
    for (name, m), marker, colour in zip(maps.items(), MARKERS, plt.get_cmap("tab10")(np.arange(len(maps)))):
        peak = int(pixel_map(m[row: row + 1]).flatten(1).argmax(1))
        ax_img.plot(peak % w, peak // w, marker, color=colour, ms=9, mec="white", label=SHORT[name])
    ax_img.set_title(f"'{titles[row]}'\nground truth (green) and each map's maximum\n"
                     "(markers may hide each other)", fontsize=9)
    ax_img.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    names = list(hits)
    at = np.arange(len(names))
    ax_bar.bar(at, [hits[n] * 100 for n in names], color=plt.get_cmap("tab10")(at))
    ax_bar.axhline(centre * 100, color="k", ls="--", label=f"centre point {centre:.0%}")
    ax_bar.axhline(random_rate * 100, color="grey", ls=":", label=f"random map {random_rate:.0%}")
    ax_bar.set_xticks(at, [SHORT[n] for n in names], rotation=35, ha="right", fontsize=8)
    ax_bar.set_ylim(0, 105)
    ax_bar.set_ylabel("hit rate, % (higher is better)")
    ax_bar.set_title(f"pointing game: {len(titles)} inputs, tolerance {tolerance:.3g} px\n"
                     "(for scale, TorchRay with VGG16 on VOC07: centre 69.6%, Grad-CAM 86.6%)", fontsize=9)
    ax_bar.legend(fontsize=8)
    return fig


def plot_sensitivity(demo, sizes, scores, noise: float):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    for (name, values), colour, marker in zip(scores.items(), plt.get_cmap("tab10")(np.arange(len(scores))),
                                              MARKERS):
        ax.plot(sizes, values, marker + "-", color=colour, label=SHORT[name])
    ax.axhspan(-noise, noise, color="grey", alpha=0.2, label="where a true 0 lands\n(one standard error)")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(size) for size in sizes])
    ax.minorticks_off()
    ax.set_xlabel("n, pixels removed together (log scale)")
    ax.set_ylabel("mean Pearson correlation (higher is better)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title(f"Sensitivity-n on {demo.network}: do the attributions of n pixels add up "
                 "to the output drop?", fontsize=10)
    ax.legend(fontsize=8, ncol=3)
    return fig


def plot_sanity(demo, labels, correlations, sanity_maps, image):
    import matplotlib.pyplot as plt

    names = list(correlations)
    cols = len(labels) + 1
    fig = plt.figure(figsize=(max(12, 1.7 * cols + 6), 2 + 1.6 * len(names)), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1.3])
    ax = left.subplots()
    at = np.arange(cols)
    colours = plt.get_cmap("tab10")(np.arange(len(names)))
    for (name, values), colour, marker in zip(correlations.items(), colours, MARKERS):
        ax.plot(at, [1.0, *values], marker + "-", color=colour, label=SHORT[name], alpha=0.85)
    ax.set_xticks(at, ["original", *labels], rotation=60, ha="right", fontsize=7)
    lowest = np.nanmin([v for values in correlations.values() for v in values] + [0.0])
    ax.set_ylim(min(-0.3, lowest - 0.05), 1.05)
    ax.set_xlabel("layers re-initialised, from the output backwards (cumulative)")
    ax.set_ylabel("Spearman rank correlation with the original map")
    ax.set_title("Model randomisation (Adebayo et al. 2018): a map that stays\n"
                 "near 1 explains the image, not the model", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    axes = right.subplots(len(names), cols, squeeze=False)
    for r, name in enumerate(names):
        for c, m in enumerate(sanity_maps[name]):
            axes[r, c].imshow(display_map(m)[0], cmap="inferno", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                stage = "original" if c == 0 else labels[c - 1].split(":")[0] + " layers"
                axes[r, c].set_title(stage, fontsize=7)
        axes[r, 0].set_ylabel(SHORT[name], fontsize=7)
    right.suptitle(f"the maps of '{image}' as the weights go (|map| / 99th pct, inferno)", fontsize=9)
    return fig


def plot_right_and_wrong(cases, maps_by_case, names):
    fig, axes = utils.figure_grid(len(cases), 1 + 2 * len(names), panel=1.8,
                                  title="Digits the CNN misreads (or nearly): each map for the class it "
                                        "reads and for the other class (|map| / 99th percentile)")
    for r, (image, label, read, other, margin) in enumerate(cases):
        utils.show_image(axes[r, 0], image, f"a {label}, read as {read}\nmargin {margin:+.2f}")
        for c, (which, name) in enumerate([(w, n) for w in ("read", "other") for n in names], start=1):
            axes[r, c].imshow(display_map(maps_by_case[r][which][name])[0], cmap="inferno", vmin=0, vmax=1)
            digit = read if which == "read" else other
            role = "read" if which == "read" else ("true" if other == label else "runner-up")
            axes[r, c].set_title(f"{SHORT[name]}\nfor {digit} ({role})", fontsize=8)
    return fig


# %% The method guide -------------------------------------------------------------------------


def guide_rows(names, seconds, evaluations, aucs, hits, stability, sanity):
    rows = []
    for name in names:
        best, limit = GUIDE[name]
        rows.append({
            "method": name, "best use": best, "limitation": limit,
            "s / image": f"{seconds[name]:.3g}", "evaluations / image": f"{evaluations[name]:.0f}",
            "deletion AUC (low)": f"{aucs['deletion'][name].mean():.3f}",
            "insertion AUC (high)": f"{aucs['insertion'][name].mean():.3f}",
            "pointing hits": f"{hits[name]:.0%}" if name in hits else "n/a",
            "stability (2 seeds)": stability.get(name, "deterministic"),
            "sanity: rank corr. as layers go (output first)": " / ".join(f"{v:.2f}" for v in sanity[name]),
        })
    return rows


def write_guide(rows, out_dir: Path, track: str) -> None:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    markdown = "\n".join(lines) + "\n"
    print("\nThe method guide, from this run's numbers:\n" + markdown)
    try:
        (out_dir / f"08_method_guide_{track}.md").write_text(markdown)
        with open(out_dir / f"08_method_guide_{track}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    except OSError as error:
        raise utils.InputError(f"cannot write the method guide to {out_dir}: "
                               f"{error.strerror or error}") from None
    print(f"saved {out_dir / f'08_method_guide_{track}.md'} and .csv")


# %% The measurements the demo runs, each on the maps computed once ---------------------------


def rows_of(demo, args, objects, target):
    """Per input: its title, the class it is explained for, its ground-truth mask (or None)."""
    with torch.no_grad():
        logits = utils.forward_in_chunks(demo.model, demo.x, 16)
    n = demo.x.shape[0]
    if demo.track == "mnist":
        labels = digit_labels(demo, args)
        truth = labels or logits.argmax(1).tolist()  # the true digit when it is known
        classes = torch.tensor([target if target is not None else int(truth[i]) for i in range(n)])
        masks = [m for m in demo.x[:, 0] > STROKE]  # the stroke
        return [f"{demo.names[i]}" for i in range(n)], classes.to(demo.device), masks, labels
    if args.image:  # the user's photos: ground truth only for boxes of a file with the same name
        picked = [[o for o in objects if Path(o["image"]).stem == stem][:1] for stem in demo.names]
    else:
        picked = [[o] for o in objects[:n]]
    titles, classes, masks = [], [], []
    boxes = object_masks(demo, [p[0] for p in picked if p]) if any(picked) else None
    b = 0
    for i, found in enumerate(picked):
        if target is not None:
            c = target
        elif found:
            listed = torch.tensor(found[0]["classes"], device=logits.device)
            c = int(listed[logits[i, listed].argmax()])
        else:
            c = int(logits[i].argmax())
        mask = None
        if found:
            mask = boxes[b] if c in found[0]["classes"] else None
            b += 1
        titles.append(f"{demo.names[i]}: {demo.class_name(c)}"[:34])
        classes.append(c)
        masks.append(mask)
    return titles, torch.tensor(classes, device=demo.device), masks, None


def digit_labels(demo, args) -> list[int] | None:
    """The shipped digits' true labels (None for the user's own images)."""
    if args.image:
        return None
    _, labels, _ = utils.load_digits(demo.x.shape[0])
    return labels


def show_shapley(demo, classes, shap_map, batch) -> None:
    """Efficiency on screen, and the Shapley formula against KernelSHAP on a 2 x 2 grid."""
    with torch.no_grad():
        v_all = demo.model(demo.x).gather(1, classes[:, None])[:, 0]
        v_none = demo.model(torch.zeros_like(demo.x)).gather(1, classes[:, None])[:, 0]
    gap = (cell_sum(shap_map) - (v_all - v_none)).abs().max()
    print(f"\nSHAP's efficiency: on '{demo.names[0]}' the {GRID * GRID} cell values add up to "
          f"{float(cell_sum(shap_map[:1])[0]):+.4f} and v(all) - v(none) = "
          f"{float(v_all[0] - v_none[0]):+.4f}; "
          f"largest gap over the inputs {float(gap):.1e}")
    # Four features, 16 coalitions: evaluate them all once, then compare the formula with
    # KernelSHAP's regression on coalitions drawn from the Shapley kernel (no new forward passes).
    x0, c0 = demo.x[:1], classes[:1]
    quarters = grid_mask(*demo.x.shape[-2:], cells=2).to(demo.device)
    bits = (torch.arange(16)[:, None] >> torch.arange(4) & 1).bool()  # (16, 4): bit j = feature j
    v = coalition_values(demo.model, x0, c0, quarters, torch.zeros_like(x0), bits.to(demo.device), batch)
    print("  On a 2x2 grid (M = 4): the Shapley formula, then KernelSHAP with n coalitions drawn from "
          "the kernel")
    print(f"    {'formula':>12}: " + "  ".join(f"{float(p):+.4f}" for p in shapley_formula(v, 4)[0]))
    generator = torch.Generator().manual_seed(0)
    for n in (16, 256, 4096):
        Z = kernel_coalitions(4, n, generator)  # (n, 4)
        index = (Z.long() << torch.arange(4)).sum(1)  # each coalition's number, to look up v
        phi = efficient_regression(Z, v[:, index.to(v.device)], v[:, 15], v[:, 0])
        print(f"    {f'n = {n}':>12}: " + "  ".join(f"{float(p):+.4f}" for p in phi[0]))


def cell_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum of a spread SHAP map's feature values (each cell counted once, on channel 0)."""
    mask = grid_mask(*values.shape[-2:]).to(values.device).flatten()
    flat = values[:, 0].flatten(1)  # (N, HW)
    per_cell = torch.zeros(values.shape[0], GRID * GRID, dtype=values.dtype, device=values.device)
    per_cell.scatter_(1, mask.expand(values.shape[0], -1), flat)  # every pixel of a cell holds the same value
    return per_cell.sum(1)


def measure_curves(demo, maps, classes, steps, batch, seed, progress):
    """Deletion (baseline 0: the mean colour, or black digits) and insertion (blur) for every map,
    its reverse, a smooth random map and a per-pixel random map."""
    n, (h, w) = demo.x.shape[0], demo.x.shape[-2:]
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, GRID, GRID, generator=generator).to(demo.device)
    chance_maps = {"smooth": F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[:, 0],
                   "pixel": torch.rand(n, h, w, generator=generator).to(demo.device)}
    curve_fns = {"deletion": deletion_curve, "insertion": insertion_curve}
    curves = {k: {} for k in ("deletion", "insertion", "deletion reversed", "insertion reversed")}
    todo = [(kind, name, rev) for kind in curve_fns for name in maps for rev in (False, True)]
    for kind, name, rev in utils.progress_bar(todo, "deletion and insertion", enabled=progress, leave=True):
        heat = pixel_map(maps[name])
        curves[kind + (" reversed" if rev else "")][name] = curve_fns[kind](
            demo.model, demo.x, -heat if rev else heat, classes, steps, batch_size=batch)
    chance = {"deletion": {}, "insertion": {}, "deletion auc": {}, "insertion auc": {}}
    for kind, fn in curve_fns.items():
        for name in ("smooth", "pixel") if kind == "deletion" else ("smooth",):
            chance[kind][name] = fn(demo.model, demo.x, chance_maps[name], classes, steps, batch_size=batch)
            chance[f"{kind} auc"][name] = area_under_curve(chance[kind][name]).cpu()
    aucs = {kind: {name: area_under_curve(c).cpu() for name, c in per.items()}
            for kind, per in curves.items()}
    print(f"\nDeletion and insertion AUC, mean over {n} inputs ({steps} steps; deletion: low is good, "
          "insertion: high is good; in brackets the method's own order reversed)")
    for name in maps:
        print(f"  {name:>20}: deletion {aucs['deletion'][name].mean():.3f} "
              f"({aucs['deletion reversed'][name].mean():.3f})   "
              f"insertion {aucs['insertion'][name].mean():.3f} "
              f"({aucs['insertion reversed'][name].mean():.3f})")
    print(f"  {'smooth random map':>20}: deletion {chance['deletion auc']['smooth'].mean():.3f}   "
          f"insertion {chance['insertion auc']['smooth'].mean():.3f}")
    pixel, smooth_auc = (float(chance["deletion auc"][k].mean()) for k in ("pixel", "smooth"))
    cam, cam_reversed = (float(aucs[k]["Grad-CAM"].mean()) for k in ("deletion", "deletion reversed"))
    print(f"A per-pixel random deletion order: AUC {pixel:.3f}; Grad-CAM's order {cam:.3f}, its reverse "
          f"{cam_reversed:.3f}; a smooth random map {smooth_auc:.3f} (means over the inputs).")
    if pixel < smooth_auc:
        beaten = sorted(SHORT[k] for k, a in aucs["deletion"].items() if pixel < float(a.mean()))
        print("  The per-pixel random order falls faster than the smooth random map"
              + (f", and faster than the order of {', '.join(beaten)}" if beaten else "") + ":\n"
              "  scattered holes take an image off the data the network knows (Hooker et al. 2019; "
              "Rong et al. 2022),\n  so it measures the holes, not the map: no chance line.")
    else:
        print("  Here the per-pixel random order falls no faster than the smooth random map; on photos it "
              "usually does:\n  scattered holes take an image off the data the network knows (Hooker et al. "
              "2019; Rong et al. 2022).")
    return curves, aucs, chance


def measure_pointing(demo, titles, maps, masks, out_dir, track):
    """Hit rates per method, a centre point and a random map (whose maximum is a uniform pixel)."""
    have = [i for i, m in enumerate(masks) if m is not None]
    if not have:
        print("\nPointing game skipped: no ground truth for these inputs (data/ground_truth.json names "
              "the course's photos)")
        return {}
    h, w = demo.x.shape[-2:]
    tolerance = TOLERANCE * h / 224  # TorchRay's 15 px at 224 px, scaled to this input size
    mask = torch.stack([masks[i] for i in have])  # (n, H, W)
    hits = {name: float(pointing_game(m[have], mask, tolerance).float().mean()) for name, m in maps.items()}
    rr, cc = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centre_map = -((rr - (h - 1) / 2) ** 2 + (cc - (w - 1) / 2) ** 2).float()  # peaks at the centre
    centre_hits = pointing_game(centre_map.expand(len(have), h, w).to(mask.device), mask, tolerance)
    centre = float(centre_hits.float().mean())
    random_rate = float(near(mask, tolerance).float().mean())
    print(f"\nPointing game on {len(have)} inputs (tolerance {tolerance:.3g} px): hit rates")
    for name, rate in hits.items():
        print(f"  {name:>20}: {rate:.0%}")
    print(f"  {'centre point':>20}: {centre:.0%}\n  {'random map':>20}: {random_rate:.0%} (expected)")
    print("  For scale, TorchRay's VOC07 numbers with VGG16: centre 69.6%, gradient 76.3%, "
          "guided backprop 75.9%, Grad-CAM 86.6%.")
    row = have[0]
    figure = plot_pointing(demo, titles, row, masks[row], maps, hits, centre, random_rate, tolerance)
    utils.save_figure(figure, out_dir, f"08_pointing_game_{track}.png")
    return hits


def sanity_check(demo, runs, classes, titles, args, settings):
    """Cascading randomisation of a copy, Spearman of each map with the original's."""
    count = min(settings["sanity_rows"], demo.x.shape[0])
    x, c = demo.x[:count], classes[:count]
    stages = randomisation_stages(demo.model, settings["stages"])
    samples = settings["sanity"]
    # LIME and SHAP use the same coalitions (same seed and count) before and after, so only
    # the weights differ between the two maps.
    original = {name: run(demo.model, x, c, args.seed, samples) for name, run in runs.items()}
    correlations = {name: [] for name in runs}
    shown = {name: [original[name][:1]] for name in runs}
    copies = cascading_randomisation(demo.model, stages, args.seed)  # the caller's model is never touched
    for label, model in utils.progress_bar(copies, "randomisation", not args.quick, total=len(stages)):
        for name, run in runs.items():
            m = run(model, x, c, args.seed, samples)
            rho = [spearman(pixel_map(original[name][i: i + 1]), pixel_map(m[i: i + 1]))
                   for i in range(count)]
            correlations[name].append(mean_of_defined(rho))
            shown[name].append(m[:1])
    labels = [label for label, _ in stages]
    print(f"\nSanity check on {count} input(s): Spearman rank correlation with the original map as the "
          "layers are re-initialised from the output backwards (" + " | ".join(labels) + ")")
    for name in runs:
        print(f"  {name:>20}: " + "  ".join(f"{v:+.2f}" for v in correlations[name]))
    print("A map that stays close to 1 while the layers that make the decision are random explains the\n"
          "image, not the model. Adebayo et al. found this for guided backpropagation (lecture 6) and for\n"
          "guided Grad-CAM, which inherits it (lecture 7). Maps that multiply by the input (gradient x\n"
          "input, IG from a zero baseline) keep the input's zeros whatever the weights, so on digits\n"
          "their rank correlation sees the digit, not the model.")
    utils.save_figure(plot_sanity(demo, labels, correlations, shown, titles[0]), args.out_dir,
                      f"08_sanity_check_{demo.track}.png")
    return correlations


def right_and_wrong(demo, labels, runs, args, count: int = 3) -> None:
    """The digits the CNN gets wrong, else those it gets right by the smallest margin, explained for
    the class it reads and for the other one (the true class if it is wrong, else the runner-up)."""
    with torch.no_grad():
        logits = demo.model(demo.x)
    truth = torch.tensor(labels, device=logits.device)
    others = logits.scatter(1, truth[:, None], float("-inf"))
    margin = logits.gather(1, truth[:, None])[:, 0] - others.amax(1)  # true logit - best other; < 0: wrong
    wrong = (margin < 0).nonzero()[:, 0].tolist()
    if wrong:
        print(f"\nRight and wrong: the CNN misreads {len(wrong)} of the {len(labels)} shipped digits")
        picked = sorted(wrong, key=lambda i: float(margin[i]))[:count]
    else:
        print(f"\nRight and wrong: the CNN reads all {len(labels)} shipped digits correctly, so these are "
              "the ones it reads by the smallest margin (true logit minus the best other)")
        picked = margin.argsort()[:count].tolist()
    names = ["Grad-CAM", "integrated gradients", "SHAP"]
    cases, maps_by_case = [], []
    for i in picked:
        read = int(logits[i].argmax())
        other = labels[i] if read != labels[i] else int(others[i].argmax())
        x = demo.x[i: i + 1]
        maps_by_case.append({which: {name: runs[name](demo.model, x, torch.tensor([cls], device=demo.device),
                                                      args.seed) for name in names}
                             for which, cls in (("read", read), ("other", other))})
        cases.append((demo.display()[i], labels[i], read, other, float(margin[i])))
        print(f"  a {labels[i]} read as {read}, margin {float(margin[i]):+.2f}; "
              f"explained for {read} and {other}")
    utils.save_figure(plot_right_and_wrong(cases, maps_by_case, names), args.out_dir,
                      "08_right_and_wrong_mnist.png")


# %% The demo: every measurement, in order ---------------------------------------------------


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    parser = utils.make_parser(__doc__)
    parser.add_argument("--steps", type=utils.int_in_range(1, 10_000), default=None,
                        help=f"points on each deletion and insertion curve (default {DIGIT_RUN['steps']} on "
                             f"digits, {PHOTO_RUN['steps']} on photos, {QUICK_RUN['steps']} with --quick)")
    parser.add_argument("--lime-samples", type=utils.int_in_range(1, 1_000_000), default=None,
                        help=f"LIME's coalitions per image (default {DIGIT_RUN['lime']} on digits, "
                             f"{PHOTO_RUN['lime']} on photos)")
    parser.add_argument("--shap-samples", type=utils.int_in_range(1, 1_000_000), default=None,
                        help=f"KernelSHAP's coalitions per image (default {DIGIT_RUN['shap']} on digits, "
                             f"{PHOTO_RUN['shap']} on photos)")
    parser.add_argument("--batch-size", type=utils.int_in_range(1, 100_000), default=None,
                        help=f"perturbed inputs per forward pass (memory, not results; default "
                             f"{DIGIT_RUN['batch']} on digits, {PHOTO_RUN['batch']} on photos)")
    utils.add_layer_flag(parser)
    args = parser.parse_args(argv)
    utils.check_cam_layer(args)  # a bad --layer or a ViT: one line, before any work
    objects = load_objects()
    quick = args.quick
    demo = utils.setup_demo(args, n_images=QUICK_RUN["rows"] if quick else None,
                            n_digits=QUICK_RUN["rows"] * 2 if quick else DIGIT_RUN["rows"],
                            images=[o["image"] for o in objects], quick_size=QUICK_RUN["size"])
    target = utils.demo_target(args, demo)
    layer = utils.demo_layer(args, demo)
    if layer is not None and layer not in dict(demo.model.named_modules()):
        layer = None  # the demo layer of an older network: fall back to the last conv
    settings = dict(QUICK_RUN if quick else DIGIT_RUN if demo.track == "mnist" else PHOTO_RUN)
    for key, flag in (("steps", args.steps), ("lime", args.lime_samples), ("shap", args.shap_samples),
                      ("batch", args.batch_size)):
        settings[key] = flag or settings[key]
    progress, batch, track = not quick, settings["batch"], demo.track
    titles, classes, masks, labels = rows_of(demo, args, objects, target)
    n, (h, w) = demo.x.shape[0], demo.x.shape[-2:]
    print(f"\n{n} inputs of {h}x{w} on {demo.network}; LIME and SHAP explain a {GRID}x{GRID} grid of cells")

    # 1. Every method, once; the maps are reused by every measurement below.
    runs = methods(layer, settings, batch)
    maps, seconds, evaluations = explain_all(demo, runs, classes, args.seed, progress)
    print("\nCost per image (model evaluations count forward passes; gradients add a backward each):")
    for name in runs:
        print(f"  {name:>20}: {seconds[name]:8.3f} s  {evaluations[name]:7.0f} evaluations")
    show_shapley(demo, classes, maps["SHAP"], batch)

    rows = list(range(min(n, SIDE_BY_SIDE_ROWS)))
    utils.save_figure(plot_side_by_side(demo, rows, maps, seconds, titles), args.out_dir,
                      f"08_side_by_side_{track}.png")

    # 2. Deletion and insertion, with chance lines that mean something.
    curves, aucs, chance = measure_curves(demo, maps, classes, settings["steps"], batch, args.seed, progress)
    utils.save_figure(plot_curves(demo, titles, curves, aucs, chance, 0), args.out_dir,
                      f"08_deletion_insertion_{track}.png")

    # 3. The pointing game against a centre point and a random map.
    hits = measure_pointing(demo, titles, maps, masks, args.out_dir, track)

    # 4. Sensitivity-n: one set of subsets and output drops, shared by every method.
    sizes, scores = [], {name: [] for name in maps}
    generator = torch.Generator().manual_seed(args.seed)
    fractions = SENSITIVITY_N[1::2] if quick else SENSITIVITY_N
    for fraction in utils.progress_bar(fractions, "sensitivity-n", enabled=progress, leave=True):
        subsets = random_subsets(n, h * w, fraction, settings["subsets"], generator)
        drops = output_drops(demo.model, demo.x, classes, subsets, 0.0, batch)  # (N, S)
        sizes.append(int(subsets[0, 0].sum()))
        for name, m in maps.items():
            scores[name].append(mean_of_defined(pearson(subset_sums(m, subsets), drops.cpu()).tolist()))
    print("\nSensitivity-n (mean Pearson correlation over inputs), n = " + ", ".join(map(str, sizes))
          + f"\n  ({settings['subsets']} subsets per n: a true correlation of 0 shows up as about "
          f"+-{1 / math.sqrt(settings['subsets']):.2f} per input)")
    for name in maps:
        print(f"  {name:>20}: " + "  ".join(f"{s:+.2f}" for s in scores[name]))
    noise = 1 / math.sqrt(settings["subsets"] * n)  # the standard error of a mean of n correlations of 0
    utils.save_figure(plot_sensitivity(demo, sizes, scores, noise), args.out_dir,
                      f"08_sensitivity_n_{track}.png")

    # 5. Stability: the sampled methods again, with another seed.
    stability = {}
    some = min(n, settings["stability_rows"])
    for name in ("SmoothGrad", "LIME", "SHAP"):
        again = runs[name](demo.model, demo.x[:some], classes[:some], args.seed + 1)
        values = [spearman(pixel_map(maps[name][i: i + 1]), pixel_map(again[i: i + 1])) for i in range(some)]
        stability[name] = f"{mean_of_defined(values):.2f}"
    print(f"\nStability: Spearman correlation of two runs with different seeds, mean over {some} inputs: "
          + ", ".join(f"{k} {v}" for k, v in stability.items()))

    # 6. The sanity check, on a copy of the model.
    sanity = sanity_check(demo, runs, classes, titles, args, settings)

    # 7. Right and wrong digits.
    if track == "mnist" and labels:
        right_and_wrong(demo, labels, runs, args)

    # 8. The method guide from the numbers.
    write_guide(guide_rows(list(maps), seconds, evaluations, aucs, hits, stability, sanity),
                utils.check_out_dir(args.out_dir), track)


if __name__ == "__main__":
    main()
