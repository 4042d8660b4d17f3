"""Part 8 of 9: comparing saliency methods.   Previous: 07_guided_gradcam.py   Next: 09_advanced_techniques.py

Intuition: nine maps of one image disagree, so measure them and let a test on the numbers decide, not
the literature: faithful (removing what a map points at destroys the prediction), plausible (it lands
on the object), stable (a tiny nudge barely moves it), trustworthy (it changes with the model).
    Shapley phi_j = sum_S |S|!(M-|S|-1)!/M! [v(S+j) - v(S)];  LIME: weighted linear fit of v(z) on z
    deletion / insertion: p_c as the top pixels go / come back; AUC over [0, 1]   (RISE)
    pointing game, relevance mass and rank, CC: the map against an object mask or a human map
    sensitivity-n: corr(sum_S R, f_c(x) - f_c(x_S=0));  max-sensitivity; infidelity (Yeh et al.)
    sanity check: rank correlation of the map before and after randomising the weights
A verdict: d_i = method_i - chance_i per input; W+ = the mid-ranks of |d_i| summed where d_i > 0; p exact
over all 2^m sign flips; Holm over every test of the run; `better` only at p_holm < 0.05 against EVERY
chance line of the measure, maps that know nothing of the model (the image itself, its edges, a centred
blob, a smooth random map); a chance line at the measure's best value makes it `uninformative`.
Papers: Lundberg & Lee 2017, arxiv.org/abs/1705.07874; Ribeiro et al. 2016, arxiv.org/abs/1602.04938;
RISE, arxiv.org/abs/1806.07421; pointing game, arxiv.org/abs/1608.00507; Ancona et al. 2018,
arxiv.org/abs/1711.06104; Adebayo et al. 2018, arxiv.org/abs/1810.03292; Yeh et al. 2019,
arxiv.org/abs/1901.09392; Arras et al. 2022, arxiv.org/abs/2003.07258; Bylinskii et al. 2019,
arxiv.org/abs/1604.03605; Holm 1979 (jstor.org/stable/4615733); ROAD, arxiv.org/abs/2202.00449
Run: python 08_comparative_analysis.py --model mnist  (photos: --model efficientnet_lite0)
In about a minute: add --quick. Figures, measurements and the method guide (CSV, Markdown) go to outputs/.
"""
from __future__ import annotations

import copy
import math
import sys
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

import utils
from demos import evaluation  # the machinery: nine methods, many inputs, tests, files, figures

GRID = 7  # LIME's and SHAP's features: a 7 x 7 grid of cells (M = 49)
EXACT_FEATURES = 16  # up to 2^16 coalitions, the Shapley values are computed exactly
BLUR_SIZE, BLUR_SIGMA = 11, 5.0  # RISE's insertion substrate


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


def coalition_values(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, mask: torch.Tensor,
                     x_baseline: torch.Tensor, Z: torch.Tensor, batch_size: int | None,
                     progress: bool = False, desc: str = "coalitions") -> torch.Tensor:
    """v(z) for every example and coalition: (N, P) target logits, float64. Z is (P, M) booleans;
    x(z) keeps the features in z and takes the baseline elsewhere."""
    n = x.shape[0]
    values = torch.empty(n, Z.shape[0], dtype=torch.float64, device=x.device)  # (N, P)
    mask_n = mask.expand(n, *mask.shape[1:])  # (N, 1 or C, H, W), a view
    for k, i in utils.point_chunks(n, Z.shape[0], batch_size, x.device, progress, desc):
        keep = Z[k].gather(1, mask_n[i].flatten(1)).view(len(i), *mask.shape[1:])  # (B, 1 or C, H, W)
        with torch.no_grad():
            logits = model(torch.where(keep, x[i], x_baseline[i]))  # (B, K)
            values[i, k] = logits.gather(1, classes[i, None])[:, 0].double()
    # A NaN logit would reach the least-squares solver, which fails with an internal assertion.
    return utils.check_finite(values, "the model's logits on the coalitions")


def spread(phi: torch.Tensor, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Every element of a feature gets that feature's value: (N, M) -> the shape of `x`."""
    mask_n = mask.expand(x.shape[0], *mask.shape[1:]).flatten(1)  # (N, 1 or C * H * W)
    values = phi.to(x.device, x.dtype).gather(1, mask_n).view(x.shape[0], *mask.shape[1:])
    return values.expand_as(x).contiguous()


def checked(inputs: torch.Tensor, baseline) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs and the baseline like them, both finite (they feed a least-squares solver)."""
    x = utils.check_finite(inputs.detach(), "inputs")
    return x, utils.check_finite(utils.as_baseline(baseline, x), "baseline")


# %% SHAP: the Shapley formula, and KernelSHAP's regression ------------------------------------
#   phi_j = sum over S without j of |S|! (M-|S|-1)! / M! [v(S + j) - v(S)]
#   KernelSHAP: min_phi sum_z pi(z) (v(z) - v(0) - z . phi)^2 with sum_j phi_j = v(1) - v(0),
#   pi(z) = (M-1) / (C(M,|z|) |z| (M-|z|)): over all 2^M coalitions it gives the Shapley values
#   (Lundberg & Lee, Theorem 2); drawing z in proportion to pi(z) estimates that regression.


def shapley_formula(v: torch.Tensor, M: int) -> torch.Tensor:
    """phi (N, M) from v (N, 2^M): column p is the coalition whose bit j says whether feature j is in it."""
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
    """n coalitions (n, M): size s in 1..M-1 with probability ~ (M-1) / (s (M-s)), uniform within a
    size; so each comes with probability ~ pi(z), and the regression weights them equally."""
    s = torch.arange(1, M, dtype=torch.float64)
    sizes = torch.multinomial((M - 1) / (s * (M - s)), n, replacement=True, generator=generator) + 1  # (n,)
    order = torch.rand(n, M, generator=generator).argsort(1)  # (n, M) a random order of the features
    return torch.zeros(n, M, dtype=torch.bool).scatter_(1, order, torch.arange(M) < sizes[:, None])


def efficient_regression(Z: torch.Tensor, v: torch.Tensor, v_all: torch.Tensor, v_none: torch.Tensor):
    """min sum (v(z) - v(0) - z . phi)^2 subject to sum phi = v(1) - v(0), every example at once.
    The constraint removes one unknown: phi_M = delta - sum of the others."""
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
    x, x_baseline = checked(inputs, baseline)
    mask, M = features_of(feature_mask, x)
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)  # fixed at x
    if n_samples is None and M <= EXACT_FEATURES:
        bits = torch.arange(2 ** M)[:, None] >> torch.arange(M) & 1  # (2^M, M) every coalition
        v = coalition_values(model, x, classes, mask, x_baseline, bits.bool().to(x.device), batch_size,
                             progress, "SHAP")  # (N, 2^M)
        return spread(shapley_formula(v, M), mask, x)
    n = 2 * M + 2048 if n_samples is None else utils.check_count(n_samples, "n_samples")
    # With one feature, efficiency alone gives its value: no coalition to draw.
    Z = torch.zeros(0, 1, dtype=torch.bool) if M == 1 else kernel_coalitions(M, n, generator)  # (n, M)
    ends = torch.stack([torch.ones(M, dtype=torch.bool), torch.zeros(M, dtype=torch.bool)])  # v(1), v(0)
    v = coalition_values(model, x, classes, mask, x_baseline, torch.cat([ends, Z]).to(x.device), batch_size,
                         progress, "SHAP")  # (N, 2 + n)
    return spread(efficient_regression(Z, v[:, 2:], v[:, 0], v[:, 1]), mask, x)


# %% LIME: a weighted linear surrogate ----------------------------------------------------------
#   min_g sum_z exp(-d(z)^2 / width^2) (v(z) - g0 - z . g)^2,  d(z) = 1 - cos(z, 1)


def lime(model: nn.Module, inputs: torch.Tensor, target=None, feature_mask=None, baseline=0.0,
         n_samples: int = 1000, kernel_width: float = 0.25, batch_size: int | None = None,
         generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """LIME (Ribeiro et al., 2016) on grid cells: the coefficients of a weighted linear fit of v(z) on z."""
    if not kernel_width > 0:
        raise utils.InputError(f"kernel_width must be > 0, got {kernel_width}")
    x, x_baseline = checked(inputs, baseline)
    mask, M = features_of(feature_mask, x)
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)
    Z = torch.rand(utils.check_count(n_samples, "n_samples"), M, generator=generator) < 0.5  # (n, M) w.p. 1/2
    v = coalition_values(model, x, classes, mask, x_baseline, Z.to(x.device), batch_size, progress, "LIME")
    kept = Z.sum(1).double()  # (n,) |z|
    distance = 1 - kept.sqrt() / math.sqrt(M)  # cosine distance to all-ones: 1 - |z| / (sqrt|z| sqrt M)
    root_w = torch.exp(-distance ** 2 / kernel_width ** 2).sqrt()  # (n,) sqrt of the sample weights
    design = torch.cat([torch.ones(len(Z), 1, dtype=torch.float64), Z.double()], 1)  # (n, 1 + M): intercept
    fit = torch.linalg.lstsq(design * root_w[:, None], (v.cpu() * root_w).T,
                             driver="gelsd").solution  # (1 + M, N)
    return spread(fit[1:].T.to(x.device), mask, x)  # the intercept is not an attribution


# %% Deletion and insertion (RISE) --------------------------------------------------------------
#   deletion(k) = p_c(x with its top round(k H W / steps) pixels set to a baseline), k = 0 .. steps
#   insertion(k) = p_c(a blurred x with its top pixels put back);  AUC = trapezoid area over [0, 1]


def reduced_map(saliency: torch.Tensor) -> torch.Tensor:
    """(N, H, W), "reduced over channels": a (N, C, H, W) map summed in absolute value; (N, H, W) as given."""
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
    return F.conv2d(x, kernel.expand(x.shape[1], 1, size, size), padding=size // 2, groups=x.shape[1])


def reveal_curve(model: nn.Module, start: torch.Tensor, end: torch.Tensor, saliency: torch.Tensor,
                 classes: torch.Tensor, steps: int, batch_size: int | None, progress: bool) -> torch.Tensor:
    """(N, steps + 1) probabilities of the class: point k shows `end` at the top round(k H W / steps)
    pixels of the map, all channels of a pixel together, and `start` elsewhere."""
    heat = reduced_map(saliency).to(start.device)  # (N, H, W)
    n, h, w = heat.shape
    if tuple(start.shape[-2:]) != (h, w) or n != start.shape[0]:
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
    steps = utils.check_count(steps, "steps")
    x_baseline = utils.as_baseline(baseline, x)
    return reveal_curve(model, x, x_baseline, saliency, classes, steps, batch_size, progress)


def insertion_curve(model: nn.Module, inputs: torch.Tensor, saliency: torch.Tensor, target=None,
                    steps: int = 50, baseline="blur", batch_size: int | None = None,
                    progress: bool = False) -> torch.Tensor:
    """RISE's insertion: from a blurred copy (or `baseline`), p_c as the input's pixels come back."""
    x = inputs.detach()
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)
    blur = isinstance(baseline, str) and baseline == "blur"
    substrate = blurred(x) if blur else utils.as_baseline(baseline, x)
    return reveal_curve(model, substrate, x, saliency, classes, utils.check_count(steps, "steps"), batch_size,
                        progress)


def area_under_curve(curve: torch.Tensor) -> torch.Tensor:
    """(N,) trapezoidal area of each row over x from 0 to 1 (RISE's auc)."""
    c = curve.detach()
    return (c[:, 1:] + c[:, :-1]).sum(1) / (2 * (c.shape[1] - 1))


# %% Agreement with a mask: pointing game, relevance mass, relevance rank ------------------------
#   pointing game: hit when the map's first maximum lies strictly within `tolerance` px of the mask
#   relevance mass = sum_{p in mask} R_p / sum_p R_p;  relevance rank = |top-K pixels of R in mask| / K,
#   K = |mask| (Arras et al. 2022), R the map reduced over channels


def mask_like(mask: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """The boolean mask (N, H, W) of the same shape as the reduced map; every example has a pixel."""
    if tuple(mask.shape) != tuple(heat.shape):
        raise utils.InputError(f"the mask is (N, H, W) = {tuple(heat.shape)}, got {tuple(mask.shape)}")
    mask = mask.bool().to(heat.device)
    if not mask.flatten(1).any(1).all():
        raise utils.InputError("a mask with no pixel: every example needs at least one pixel in its mask")
    return mask


def near(mask: torch.Tensor, tolerance: float) -> torch.Tensor:
    """(N, H, W): the pixels strictly within `tolerance` (Euclidean) of some pixel of `mask`."""
    r = max(math.ceil(tolerance) - 1, 0)
    offsets = torch.arange(-r, r + 1, dtype=torch.float32)
    disc = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) < tolerance ** 2).float()  # (2r+1, 2r+1)
    hits = F.conv2d(mask.float()[:, None], disc[None, None].to(mask.device), padding=r)  # (N, 1, H, W)
    return hits[:, 0] > 0.5


def pointing_game(saliency: torch.Tensor, mask: torch.Tensor, tolerance: float = 15) -> torch.Tensor:
    """(N,) bools: the map's first maximum (in flattened order) lies within `tolerance` px of the mask."""
    heat = reduced_map(saliency)  # (N, H, W)
    mask = mask_like(mask, heat)
    peak = heat.flatten(1).argmax(1)  # (N,) torch.argmax returns the first maximum
    return near(mask, tolerance).flatten(1).gather(1, peak[:, None]).squeeze(1)


def relevance_mass(saliency: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) the share of the reduced map's sum that lies inside the mask (0 for an all-zero map)."""
    R = reduced_map(saliency).double()  # (N, H, W)
    inside = (R * mask_like(mask, R)).flatten(1).sum(1)  # (N,)
    total = R.flatten(1).sum(1)
    return torch.where(total == 0, 0.0, inside / torch.where(total == 0, 1.0, total)).to(saliency.dtype)


def relevance_rank(saliency: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) the fraction of the map's K highest pixels that lie inside the mask, K = |mask|."""
    R = reduced_map(saliency).flatten(1)  # (N, HW)
    inside = mask_like(mask, reduced_map(saliency)).flatten(1)  # (N, HW)
    K = inside.sum(1)  # (N,) a different K for every example
    order = torch.argsort(R, dim=1, descending=True, stable=True)  # (N, HW)
    positions = torch.arange(R.shape[1], device=R.device).expand_as(order)
    place = torch.empty_like(order).scatter_(1, order, positions)  # (N, HW) each pixel's rank, from 0
    return ((place < K[:, None]) & inside).sum(1).to(saliency.dtype) / K


# %% Agreement with people: the correlation coefficient CC ---------------------------------------
#   CC(R, H) = cov(R, H) / (std(R) std(H)) over the pixels, H a human attention map (Bylinskii et al.)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last dimension (float64; NaN where one side is constant)."""
    a, b = a.double() - a.double().mean(-1, keepdim=True), b.double() - b.double().mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.square().sum(-1) * b.square().sum(-1)).sqrt()


def human_agreement(saliency: torch.Tensor, attention: torch.Tensor, undefined: float = 0.0) -> torch.Tensor:
    """(N,) CC between the reduced map and a human attention map (N, H, W); `undefined` (0, the
    contract's value; the comparison passes NaN) where either map is constant and CC has no value."""
    heat = reduced_map(saliency)
    if tuple(attention.shape) != tuple(heat.shape):
        raise utils.InputError(f"the attention map is (N, H, W) = {tuple(heat.shape)}, "
                               f"got {tuple(attention.shape)}")
    cc = pearson(heat.flatten(1), attention.to(heat.device).flatten(1))
    return torch.nan_to_num(cc, nan=undefined).to(saliency.dtype)


# %% Sensitivity-n (Ancona et al. 2018) ---------------------------------------------------------
#   corr over random pixel sets S, |S| = n:  sum_{p in S} R_p  against  f_c(x) - f_c(x with S set to 0)


def random_subsets(n_examples: int, pixels: int, n, n_subsets: int, generator) -> torch.Tensor:
    """(N, n_subsets, pixels) booleans: sets of n pixels, uniform without replacement."""
    size = round(n * pixels) if isinstance(n, float) else int(n)
    if isinstance(n, bool) or not 1 <= size <= pixels:
        raise utils.InputError(f"n is a pixel count in [1, {pixels}] or a fraction of them, got {n}")
    subsets = torch.zeros(n_examples, utils.check_count(n_subsets, "n_subsets"), pixels, dtype=torch.bool)
    for i in range(n_examples):
        for j in range(n_subsets):
            subsets[i, j, torch.randperm(pixels, generator=generator)[:size]] = True
    return subsets


def output_drops(model, x, classes, subsets, baseline, batch_size, progress=False) -> torch.Tensor:
    """(N, S): f_c(x) - f_c(x with the subset's pixels, all channels, set to the baseline)."""
    n, h, w = x.shape[0], *x.shape[-2:]
    x_baseline, subsets = utils.as_baseline(baseline, x), subsets.to(x.device)
    with torch.no_grad():
        f_x = model(x).gather(1, classes[:, None])  # (N, 1)
    drops = torch.empty(n, subsets.shape[1], dtype=x.dtype, device=x.device)
    for k, i in utils.point_chunks(n, subsets.shape[1], batch_size, x.device, progress, "sensitivity-n"):
        off = subsets[i, k].view(-1, 1, h, w)  # (B, 1, H, W)
        with torch.no_grad():
            f_off = model(torch.where(off, x_baseline[i], x[i])).gather(1, classes[i, None])  # (B, 1)
            drops[i, k] = f_x[i, 0] - f_off[:, 0]
    return drops


def sensitivity_n(model: nn.Module, inputs: torch.Tensor, attributions, target=None, n=0.1,
                  n_subsets: int = 100, baseline=0.0, batch_size: int | None = None,
                  generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """(N,) Pearson correlation of sum_S R (over channels, signed) with f_c(x) - f_c(x_S=baseline).

    `attributions` may also be a list of maps of the inputs: they then share one draw of subsets
    and one set of output drops, and the result is (len(list), N).
    """
    x = inputs.detach()
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)
    subsets = random_subsets(x.shape[0], x.shape[-2] * x.shape[-1], n, n_subsets, generator)  # (N, S, HW)
    drops = output_drops(model, x, classes, subsets, baseline, batch_size, progress).cpu()  # (N, S)
    many = [attributions] if isinstance(attributions, torch.Tensor) else list(attributions)
    R = [a.detach().double().sum(1).flatten(1).cpu() for a in many]  # (N, HW) each: signed, over channels
    scores = torch.stack([pearson(torch.einsum("nsp,np->ns", subsets.double(), r), drops) for r in R])
    return (scores[0] if isinstance(attributions, torch.Tensor) else scores).to(x.dtype)


# %% Stability: max-sensitivity and infidelity (Yeh et al. 2019) --------------------------------
#   max-sensitivity(x) = max over draws d ~ U[-r, r] of ||m(x + d) - m(x)|| / ||m(x)||
#   infidelity(x) = E_I [(sum_i I_i R_i - (f_c(x) - f_c(x - I)))^2],  I ~ N(0, sigma^2) per element


def draws(inputs: torch.Tensor, n_samples: int, generator, kind: str, scale: float) -> torch.Tensor:
    """All the batch's draws at once, (N * n_samples, ...): row i * n_samples + s is draw s of example i."""
    shape = (inputs.shape[0] * utils.check_count(n_samples, "n_samples"), *inputs.shape[1:])
    device = generator.device if generator is not None else torch.device("cpu")
    if kind == "uniform":
        d = torch.empty(shape, dtype=inputs.dtype, device=device).uniform_(-scale, scale, generator=generator)
    else:
        d = torch.randn(shape, dtype=inputs.dtype, device=device, generator=generator) * scale
    return d.to(inputs.device)


def max_sensitivity(method: Callable, model: nn.Module, inputs: torch.Tensor, target=None,
                    radius: float = 0.02, n_samples: int = 10, batch_size: int | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """(N,) how far the map moves, relative to its norm, under the worst of `n_samples` small draws."""
    x = inputs.detach()
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)  # fixed at x
    d = draws(x, n_samples, generator, "uniform", radius)  # (N * n, ...)
    m_x = method(model, x, classes).flatten(1)  # (N, D)
    norm = m_x.norm(dim=1)
    norm = torch.where(norm == 0, torch.ones_like(norm), norm)  # a zero map: the change itself
    worst = torch.full((x.shape[0],), -math.inf, dtype=m_x.dtype, device=x.device)
    rows = torch.arange(d.shape[0], device=x.device)
    for chunk in rows.split(utils.check_batch_size(batch_size) or max(len(rows), 1)):
        i = chunk // n_samples  # the example of each draw
        moved = (method(model, x[i] + d[chunk], classes[i]).flatten(1) - m_x[i]).norm(dim=1) / norm[i]
        worst = worst.scatter_reduce(0, i, moved, "amax")
    return worst


def infidelity(model: nn.Module, inputs: torch.Tensor, attributions: torch.Tensor, target=None,
               n_samples: int = 10, noise_std: float = 0.1, batch_size: int | None = None,
               generator: torch.Generator | None = None, normalize: bool = False) -> torch.Tensor:
    """(N,) the mean squared gap between what the map predicts for a random nudge I and what f does.

    normalize: first scale the map by Yeh et al.'s optimal beta (per example), so that a map's units
    do not count, only its shape: beta = sum_s (I.R)_s df_s / sum_s (I.R)_s^2 (0 for a zero map), as
    Captum's `infidelity(..., normalize=True)`.
    """
    x, R = inputs.detach(), attributions.detach()
    classes = utils.resolve_target(utils.forward_in_chunks(model, x, batch_size), target)
    I = draws(x, n_samples, generator, "normal", noise_std)  # (N * n, ...)
    with torch.no_grad():
        f_x = model(x).gather(1, classes[:, None])[:, 0]  # (N,)
    predicted = torch.empty(I.shape[0], dtype=x.dtype, device=x.device)  # sum_i I_i R_i, per draw
    change = torch.empty_like(predicted)  # f_c(x) - f_c(x - I), per draw
    rows = torch.arange(I.shape[0], device=x.device)
    for chunk in rows.split(utils.check_batch_size(batch_size) or max(len(rows), 1)):
        i = chunk // n_samples
        with torch.no_grad():
            change[chunk] = f_x[i] - model(x[i] - I[chunk]).gather(1, classes[i, None])[:, 0]
        predicted[chunk] = (I[chunk] * R[i]).flatten(1).sum(1)
    predicted, change = predicted.view(-1, n_samples), change.view(-1, n_samples)  # (N, n)
    if normalize:
        fit, norm = (predicted * change).sum(1), predicted.square().sum(1)
        beta = fit / torch.where(norm == 0, torch.ones_like(norm), norm)  # (N,) least squares of change on predicted
        predicted = beta[:, None] * predicted
    return (predicted - change).square().mean(1)


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


# %% Chance lines: maps that know nothing of the model ----------------------------------------
#   input map      X_p = sum_c |x_cp|                       the image itself: where the ink is
#   edge map       E_p = sqrt((Sx * g)_p^2 + (Sy * g)_p^2)   g the grey image, Sx, Sy Sobel's kernels
#   centre prior   C_p = exp(-|p - centre|^2 / (2 sigma^2)), sigma = min(H, W) / 4
#   smooth random  a GRID x GRID grid of uniform numbers, bilinearly enlarged: a real map's blobs, no reason
# A method that cannot beat them has shown nothing about the model: on digits the stroke IS the
# truth, so the image itself points at it; objects have edges (Adebayo et al. 2018 found edge
# detectors look like saliency maps); photographers centre their objects (the saliency benchmarks'
# centre baseline). Deletion's chance line is smooth because scattered holes are a trap of their own.


def input_map(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W) |x| summed over channels: the map that only knows where the ink is."""
    return x.detach().abs().sum(1)


def edge_map(grey: torch.Tensor) -> torch.Tensor:
    """(N, H, W) the Sobel gradient magnitude of grey images (N, H, W); the border is repeated, so
    the frame of the image is no edge."""
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=grey.dtype,
                         device=grey.device)  # d/dx, smoothed along y
    kernels = torch.stack([sobel, sobel.T])[:, None]  # (2, 1, 3, 3): d/dx and d/dy
    g = F.conv2d(F.pad(grey[:, None], (1, 1, 1, 1), mode="replicate"), kernels)  # (N, 2, H, W)
    return g.square().sum(1).sqrt()


def centre_prior(n: int, height: int, width: int) -> torch.Tensor:
    """(n, H, W) a centred isotropic Gaussian, sigma a quarter of the shorter side."""
    sigma = min(height, width) / 4
    rows = torch.arange(height, dtype=torch.float64) - (height - 1) / 2  # (H,) distance from the centre
    cols = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    blob = torch.exp(-(rows[:, None] ** 2 + cols[None, :] ** 2) / (2 * sigma ** 2))  # (H, W)
    return blob.float().expand(n, height, width).contiguous()


def smooth_random_map(n: int, height: int, width: int, generator: torch.Generator,
                      cells: int = GRID) -> torch.Tensor:
    """(n, H, W) a cells x cells grid of uniform numbers, bilinearly enlarged."""
    low = torch.rand(n, 1, cells, cells, generator=generator)  # (n, 1, cells, cells)
    return F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)[:, 0]


# %% The verdict: an exact signed-rank test, Holm's correction, and the rule ---------------------
#   d_i = method_i - chance_i on the inputs that have both; the m non-zero ones are tested
#   r_i = the mid-rank of |d_i| (tied values share their mean rank);  W+ = sum of r_i over d_i > 0
#   H0, no difference: every sign is + or - with probability 1/2, so W+ = sum_i s_i r_i, s in {0, 1}^m;
#   p = min(1, 2 min(P(W+ <= w), P(W+ >= w))), counting all 2^m sign assignments (m <= 25; above,
#   the normal approximation). 2 r_i is an integer, so the counts are a small dynamic programme.
#   effect = (R+ - R-) / (R+ + R-), R+- the rank sums of each sign: -1 .. +1 (rank-biserial)
#   Holm, T tests: sort p_(1) <= ... <= p_(T);  p_holm_(k) = max_{j <= k} min(1, (T - j + 1) p_(j))
#   verdict: `uninformative` if the chance line lies within 5% of the range from the measure's best
#   value; `too few inputs` below 6 non-zero d_i (the smallest exact p of 5 is 2 / 2^5 = 0.0625);
#   `better` / `worse` at p_holm < 0.05 by the sign of the effect; else `no difference`.

EXACT_PAIRS = 25  # 2^25 sign assignments counted exactly; above, the normal approximation
MIN_NONZERO = 6
ALPHA = 0.05
NEAR_BOUND = 0.05  # a chance line this close to the best value (a share of the range) leaves no room
BOUNDS = {"pointing game": (0.0, 1.0), "relevance mass": (0.0, 1.0), "relevance rank": (0.0, 1.0),
          "human agreement (CC)": (-1.0, 1.0), "seed agreement": (-1.0, 1.0),
          "abs. rank corr. after randomisation": (0.0, 1.0)}
LEAST_FAVOURABLE_FIRST = ("worse", "no difference", "uninformative", "too few inputs", "better")


def signed_rank_counts(doubled_ranks) -> np.ndarray:
    """counts[w]: how many of the 2^m sign assignments give 2 W+ = w. Each rank is in (+) or out (-):
    adding rank r to every sum so far shifts the counts by r."""
    counts = np.zeros(int(sum(doubled_ranks)) + 1)
    counts[0] = 1.0  # no rank yet: one assignment, W+ = 0
    for r in doubled_ranks:
        counts[r:] = counts[r:] + counts[:len(counts) - r].copy()  # with r, or without it
    return counts


def signed_rank_test(differences) -> tuple[float, float, int]:
    """(p, effect, m) of paired differences: the exact two-sided p with ties (m <= 25, else scipy's
    normal approximation without continuity correction), the rank-biserial effect, the m non-zero
    differences used. p and effect are NaN when m = 0."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[d != 0]
    m = len(d)
    if m == 0:
        return math.nan, math.nan, 0
    ranks = utils.average_ranks(np.abs(d))  # (m,) mid-ranks from 1
    r_plus, r_minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    effect = float((r_plus - r_minus) / (r_plus + r_minus))
    if m > EXACT_PAIRS:
        return float(stats.wilcoxon(d, correction=False, method="approx").pvalue), effect, m
    doubled = np.rint(2 * ranks).astype(int)  # mid-ranks are whole or halves
    counts = signed_rank_counts(doubled)
    w = int(round(2 * r_plus))  # numpy 1 returns a float from round()
    at_most, at_least = counts[:w + 1].sum() / 2.0 ** m, counts[w:].sum() / 2.0 ** m
    return float(min(1.0, 2 * min(at_most, at_least))), effect, m


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of every p that is not NaN (the others stay NaN)."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    T, running = len(tested), 0.0
    for j, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):  # smallest p first
        running = max(running, min(1.0, (T - j) * p[i]))  # never below an earlier step
        adjusted[i] = running
    return adjusted


def is_uninformative(measure: str, direction: str, chance_median: float) -> bool:
    """The chance line lies within NEAR_BOUND of the range from the measure's best value."""
    if measure not in BOUNDS:
        return False
    low, high = BOUNDS[measure]
    best = high if direction == "higher" else low
    return abs(chance_median - best) <= NEAR_BOUND * (high - low)


def verdict(uninformative: bool, nonzero: int, p_holm: float, effect: float, direction: str) -> str:
    """The rule above, in its order."""
    if uninformative:
        return "uninformative"
    if nonzero < MIN_NONZERO:
        return "too few inputs"
    if not p_holm < ALPHA:
        return "no difference"
    return "better" if (effect > 0) == (direction == "higher") else "worse"


def overall(verdicts) -> str:
    """A method's verdict on a measure judged against several chance lines: the least favourable."""
    return min(verdicts, key=LEAST_FAVOURABLE_FIRST.index)


# %% The demo: one input's maps through every measure, then the whole comparison -------------


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    args = evaluation.parse_arguments(__doc__, argv)  # bad flags and a bad --annotations: exit 2 here
    run = evaluation.prepare(args, sys.modules[__name__])  # the inputs, their classes, masks and attention maps
    maps = evaluation.explain_all(run)  # every method on every input, once; timed
    x, c, first = run.x[:1], run.classes[:1], run.titles[0]
    print(f"\nThe measures on '{first}', one method at a time (the lecture's functions, called once each):")
    for name, m in maps.items():
        m0 = m[:1]
        deletion = area_under_curve(deletion_curve(run.model, x, m0, c, run.settings["steps"]))
        subsets = run.settings["subsets"]  # the same seed: the same subsets for both calls
        signed = sensitivity_n(run.model, x, m0, c, n=0.05, n_subsets=subsets,
                               generator=torch.Generator().manual_seed(args.seed))
        unsigned = sensitivity_n(run.model, x, reduced_map(m0)[:, None], c, n=0.05, n_subsets=subsets,
                                 generator=torch.Generator().manual_seed(args.seed))
        nudged = infidelity(run.model, x, m0, c, n_samples=run.settings["infidelity"],
                            generator=torch.Generator().manual_seed(args.seed), normalize=True)
        line = f"  {name:>20}: deletion AUC {float(deletion):.3f}  sensitivity-n {float(signed):+.2f}" \
               f" (|map| {float(unsigned):+.2f})  infidelity {float(nudged):.3g}"
        if run.masks[0] is not None:
            mask = run.masks[0][None]
            mass, rank = float(relevance_mass(m0, mask)), float(relevance_rank(m0, mask))
            line += f"  mass {mass:.2f}  rank {rank:.2f}"
        if run.attention[0] is not None:
            line += f"  CC {float(human_agreement(m0, run.attention[0][None], undefined=math.nan)):+.2f}"
        print(line)
    print("  sensitivity-n in brackets uses |map| summed over channels: an unsigned map cannot follow the\n"
          "  signed drops of the output, so compare the signed numbers (the same draws, the same subsets).\n"
          "  Infidelity here is scale-free: each map is first multiplied by the factor that fits it best.")
    evaluation.compare(run, maps)  # every measure on every input, the chance lines, the verdicts, files, figures


if __name__ == "__main__":
    main()
