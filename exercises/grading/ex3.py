"""Exercise 3 checks: a deletion protocol into a blurred copy, and a ranking of methods."""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from grading.checking import (binder, Check, close, Failed, near, need, show, side_effect_check,
                              UNIT_ROUNDOFF, worst)
from grading.models import ConstantModel, GradingCNN, LinearTwoClass
from grading.student import Student
from grading.variations import memoised, remembered, Variation

import tasks  # noqa: E402
import utils  # noqa: E402
from plumbing.paths import MNIST_WEIGHTS  # noqa: E402


def reference_blur(x: torch.Tensor) -> torch.Tensor:
    """The exercise's substrate: per channel, an 11x11 Gaussian of sigma 5, zero-padded."""
    t = torch.arange(11, dtype=x.dtype) - 5
    g = torch.exp(-t ** 2 / 50)
    kernel = g[:, None] * g[None, :] / g.sum() ** 2
    return F.conv2d(x, kernel.expand(x.shape[1], 1, 11, 11), padding=5, groups=x.shape[1])


def reference_curve(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target, steps: int,
                    rechoose: bool = False) -> torch.Tensor:
    """The deletion curve into the blurred copy; `rechoose` makes the classic mistake (the class re-chosen at each point)."""
    heat = saliency.abs().sum(1) if saliency.dim() == 4 else saliency  # (N, H, W)
    n, h, w = heat.shape
    substrate = reference_blur(x)
    with torch.no_grad():
        classes = utils.resolve_target(model(x), target)
        rows = []
        for k in range(steps + 1):
            current = x.clone()
            for i in range(n):
                top = torch.argsort(heat[i].flatten(), descending=True, stable=True)[:round(k * h * w / steps)]
                r, c = top // w, top % w  # the removed pixels' rows and columns
                current[i][:, r, c] = substrate[i][:, r, c]
            probabilities = model(current).softmax(1)
            rows.append(probabilities.max(1).values if rechoose else probabilities.gather(1, classes[:, None])[:, 0])
    return torch.stack(rows, 1)


METHOD_ORDER = ("vanilla_gradient", "smoothgrad", "grad_cam", "chance")  # the order TODO 4 lists them in
STEP_CHOICES = (8, 10, 12, 16)
SG_SAMPLES = 16  # SmoothGrad's noisy copies in the ranking
SHIPPED = (MNIST_WEIGHTS, tasks.DIGITS_FILE)  # what the grader's ranking is computed from

# Tolerances, from float32 rounding (UNIT_ROUNDOFF u = 2**-24, about 6e-8) of the quantities compared.
# A curve point is a probability p <= 1 out of a float32 forward pass and softmax; another route (the
# copies batched or one by one, another summation order, float64) moves the logits by a few ulps, and
# softmax passes that on with a factor <= 1: 64 u (3.8e-6) absolute per point, or 1e-4 of the point.
POINT_ATOL = 64 * UNIT_ROUNDOFF


def area_atol(points: int) -> float:
    """An area is a weighted mean of `points` values, each within POINT_ATOL, summed in float32 (one
    rounding of at most u per addition, on partial sums <= 1): POINT_ATOL + points * u, absolute, as the
    area is near 0.5 however small the difference it enters."""
    return POINT_ATOL + points * UNIT_ROUNDOFF


def gap_atol(steps: int) -> float:
    """A gap is the difference of two areas of steps + 1 points: twice area_atol, absolute (a gap of
    0.001 is the difference of two areas near 0.5, each rounded at their own size)."""
    return 2 * area_atol(steps + 1)


def reference_gap(model, x, saliency, target, steps) -> torch.Tensor:
    heat = saliency.abs().sum(1) if saliency.dim() == 4 else saliency
    auc = lambda c: (c[:, 1:] + c[:, :-1]).sum(1) / (2 * (c.shape[1] - 1))  # noqa: E731
    return auc(reference_curve(model, x, -heat, target, steps)) - auc(reference_curve(model, x, heat, target, steps))


def ranking_settings(variation: Variation) -> tuple[int, int]:
    """(steps, seed) of the ranking on ten digits: 10 and 0 in the shipped variation."""
    return variation.choice("ranking steps", STEP_CHOICES, 10), variation.integer("ranking seed", 0, 999, 0)


def call_curve(student: Student, *args, **kwargs) -> object:
    """The student's deletion_curve_blurred, called in the child (a failed check when the file has none)."""
    return need(student, "deletion_curve_blurred")(*args, **kwargs)


def compare_curve(got, want, what: str, hint: str) -> None:
    """A failed check unless `got` equals the grader's curve `want` (small ones shown as values)."""
    if not near(got, want, POINT_ATOL, 1e-4):  # probabilities: see POINT_ATOL
        raise Failed(f"{what}: {show(want)}", show(got) if isinstance(got, torch.Tensor) and got.numel() <= 30
                     else worst(got, want), hint)


# %% The checks of the curve, one function each (bound to the student and the variation in checks()) ---


def check_auc(student: Student, variation: Variation) -> None:
    """area_under_curve on hand-derived curves: trapezoids over an x axis from 0 to 1."""
    curves = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.3, 0.3, 0.3]]), torch.tensor([[0.0, 1.0, 0.0]]),
              torch.tensor([[1.0, 1.0, 0.0, 0.0]])]
    for curve, want in zip(curves, (0.5, 0.3, 0.5, 0.5)):
        got = need(student, "area_under_curve")(curve)
        if not isinstance(got, torch.Tensor) or got.shape != (1,) or \
                abs(float(got[0]) - want) > area_atol(curve.shape[1]):  # absolute: see area_atol
            raise Failed(f"area_under_curve({curve.tolist()}) = tensor([{want}])", show(got),
                         "trapezoids over an x axis from 0 to 1: spacing 1 / (points - 1)")


def check_probabilities(student: Student, variation: Variation) -> None:
    """On a model that ignores its input, every point is p_0 = softmax(2, 0, -1)[0]: probabilities, not
    logits, and steps + 1 points per example.
    """
    x = torch.rand(2, 1, 4, 4)
    got = call_curve(student, ConstantModel(), x, torch.rand(2, 1, 4, 4), None, steps=4)
    p = float(torch.tensor([2.0, 0.0, -1.0]).softmax(0)[0])
    compare_curve(got, torch.full((2, 5), p), "a model that ignores its input: p_0 at every point",
                  "softmax probabilities of the class (not logits), steps + 1 points per example")


def check_ends(student: Student, variation: Variation) -> None:
    """Point 0 is p(x) and the last point p(blurred(x)): deleted pixels take the blurred copy's values.

    A failure says whether the class was re-chosen at each point (the classic mistake).
    """
    model = GradingCNN(channels=3, seed=4)
    x = torch.rand(2, 3, 9, 9, generator=variation.seeded("inputs 8", 8))
    saliency = torch.rand(2, 3, 9, 9, generator=variation.seeded("inputs 18", 18))
    got = call_curve(student, model, x, saliency, [1, 3], steps=5)
    with torch.no_grad():
        start = model(x).softmax(1)[[0, 1], [1, 3]]
        end = model(reference_blur(x)).softmax(1)[[0, 1], [1, 3]]
    if not isinstance(got, torch.Tensor) or got.shape != (2, 6):
        raise Failed("shape (2, 6)", show(got), "steps + 1 points per example")
    rechosen = reference_curve(model, x, saliency, [1, 3], 5, rechoose=True)
    hint = ("the class is fixed once, at x (the target): you re-chose it at every point"
            if near(got, rechosen, POINT_ATOL, 1e-4) else "deleted pixels take the values of blurred(x), not zeros")
    compare_curve(got[:, [0, -1]], torch.stack([start, end], 1), "point 0 = p(x), last point = p(blurred(x))",
                  hint)


def check_linear(student: Student, variation: Variation) -> None:
    """On f = w . x (2x2, steps 4), each point by hand: a (N, H, W) map is ranked as it is, signed."""
    w = torch.tensor([[[[1.0, -2.0], [0.5, 3.0]]]])
    x = torch.tensor([[[[0.9, 0.2], [0.4, 0.7]]]])
    b = reference_blur(x)
    order = [(0, 1), (1, 1), (0, 0), (1, 0)]  # the ranking of the map below
    want, current = [], x.clone()
    for k in range(5):
        if k:
            r, c = order[k - 1]
            current[0, 0, r, c] = b[0, 0, r, c]
        want.append(torch.sigmoid((w * current).sum()))
    got = call_curve(student, LinearTwoClass(w), x, torch.tensor([[[0.5, 4.0], [-0.1, 2.0]]]), 0, steps=4)
    compare_curve(got, torch.stack(want)[None], "on f = w . x (2x2, steps 4), each point by hand",
                  "a (N, H, W) map is ranked as it is (signed), largest first")


def check_ties_and_channels(student: Student, variation: Variation) -> None:
    """Ties are ranked in flattened order (a stable sort), and channels are summed in absolute value.

    The map below sums to 0 over channels when signed: only |.| ranks that pixel first.
    """
    w = torch.arange(1.0, 7.0).view(1, 1, 2, 3) / 4
    x = torch.rand(1, 2, 2, 3, generator=torch.Generator().manual_seed(2))
    saliency = torch.zeros(1, 2, 2, 3)
    saliency[0, 0, 1, 2], saliency[0, 1, 1, 2] = 5.0, -5.0  # sums to 0 signed: only |.| ranks it first
    model = LinearTwoClass(w.expand(1, 2, 2, 3))
    want = reference_curve(model, x, saliency, 0, 6)
    compare_curve(call_curve(student, model, x, saliency, 0, steps=6), want,
                  "ties ranked in flattened order (stable sort), channels summed in |.|",
                  "torch.argsort(..., descending=True, stable=True) on the (N, H, W) map of summed |values|")


def check_reference(student: Student, variation: Variation) -> None:
    """The whole curve equals the grader's on a random CNN: point k removes round(k H W / steps) pixels."""
    model = GradingCNN(channels=3, seed=5)
    x = torch.rand(3, 3, 6, 5, generator=variation.seeded("inputs 9", 9))
    saliency = torch.randn(3, 3, 6, 5, generator=variation.seeded("inputs 10", 10))
    got = call_curve(student, model, x, saliency, None, steps=7)
    hint = ("the class is fixed once, at x: you re-chose it at every point"
            if near(got, reference_curve(model, x, saliency, None, 7, rechoose=True), POINT_ATOL, 1e-4)
            else "point k removes round(k * H * W / steps) pixels; the class is fixed at x")
    compare_curve(got, reference_curve(model, x, saliency, None, 7), "the grader's curve (6x5 image, steps 7)", hint)


def check_gap(student: Student, variation: Variation) -> None:
    """morf_lerf_gap: the grader's values, antisymmetric under negating a (N, H, W) map, and a (N, C, H, W)
    map reduced (|.| summed over channels) before it is negated.
    """
    model = GradingCNN(channels=1, seed=6)
    x = torch.rand(2, 1, 8, 8, generator=variation.seeded("inputs 11", 11))
    heat = torch.randn(2, 8, 8, generator=variation.seeded("inputs 12", 12))
    want = reference_gap(model, x, heat, None, 8)
    got = need(student, "morf_lerf_gap")(model, x, heat, None, steps=8)
    if not near(got, want, gap_atol(8)):  # absolute: see gap_atol
        raise Failed(f"gap {show(want)}", show(got), "AUC(curve of -map) - AUC(curve of map), per example")
    flipped = need(student, "morf_lerf_gap")(model, x, -heat, None, steps=8)
    if not near(flipped, -want, gap_atol(8)):
        raise Failed(f"negating a map negates its gap: {show(-want)}", show(flipped),
                     "reduce the map first, then negate the reduced map for LeRF")
    x4 = torch.rand(1, 3, 6, 6, generator=variation.seeded("inputs 13", 13))
    s4 = torch.randn(1, 3, 6, 6, generator=variation.seeded("inputs 14", 14))
    model3 = GradingCNN(channels=3, seed=7)
    if not near(need(student, "morf_lerf_gap")(model3, x4, s4, None, steps=6),
                reference_gap(model3, x4, s4, None, 6), gap_atol(6)):
        raise Failed("on a (1, 3, 6, 6) map: the gap of its |.|-sum over channels", "a different gap",
                     "negating a (N, C, H, W) map does not reverse the order of |values|: reduce first")


def check_side_effects(student: Student, variation: Variation) -> None:
    """deletion_curve_blurred leaves the caller's inputs, model and gradients as they were."""
    side_effect_check(student, "deletion_curve_blurred", GradingCNN(),
                      torch.rand(2, 3, 7, 7, generator=torch.Generator().manual_seed(6)), torch.rand(2, 3, 7, 7),
                      [0, 2], steps=4)


# %% The ranking: the grader's once per process, the student's once per grading run ---------------------


def ranking_on(variation: Variation, model: nn.Module, x: torch.Tensor) -> list[tuple[str, float]]:
    """The four methods' mean gaps on `x`, best first, as rank_methods must give them."""
    vanilla = utils.load_lecture("01_vanilla_gradient_saliency")
    smooth = utils.load_lecture("03_smoothgrad")
    gradcam = utils.load_lecture("05_gradcam")
    rank_steps, rank_seed = ranking_settings(variation)
    maps = {"vanilla_gradient": vanilla.vanilla_gradient(model, x),
            "smoothgrad": smooth.smoothgrad(model, x, n_samples=SG_SAMPLES,
                                            generator=torch.Generator().manual_seed(rank_seed)),
            "grad_cam": gradcam.grad_cam(model, x),
            "chance": F.interpolate(torch.rand(len(x), 1, 7, 7, generator=torch.Generator().manual_seed(rank_seed)),
                                    size=(28, 28), mode="bilinear", align_corners=False)}
    gaps = {m: float(reference_gap(model, x, s, None, rank_steps).mean()) for m, s in maps.items()}
    return sorted(gaps.items(), key=lambda item: -item[1])


@memoised(*SHIPPED)
def digits_and_ranking(variation: Variation) -> tuple:
    """Ten digits, one of each class, on which the ranking is not the order TODO 4 lists the methods in.

    On the digits as they are (white on black), the listed order happens to be the sorted
    one, so sorting would go unchecked; drawn dark on light (1 - x) the order changes. Both
    are tried, dark on light first; the variation draws which digit of each class.
    """
    model = utils.load_mnist_cnn()
    images, _ = tasks.heldout_digits()
    x = images[variation.integer("ranking digits", 0, 29, 0)::30]
    for candidate in (1 - x, x):
        ranking = ranking_on(variation, model, candidate)
        if tuple(m for m, _ in ranking) != METHOD_ORDER:
            break
    return model, candidate, ranking


def digits(variation: Variation) -> tuple:
    """(the digit CNN, the ten digits) the ranking is asked on; clone the digits before handing them over."""
    return digits_and_ranking(variation)[:2]


def reference_ranking(variation: Variation) -> list[tuple[str, float]]:
    return digits_and_ranking(variation)[2]


def student_ranking(student: Student, variation: Variation) -> tuple:
    """(the student's ranking as (method, gap) pairs, their rank_methods), asked once per grading run."""

    def ask() -> tuple:
        rank_steps, rank_seed = ranking_settings(variation)
        model, x = digits(variation)
        rank = need(student, "rank_methods")
        first = rank(model, x.clone(), None, seed=rank_seed, steps=rank_steps)
        if not isinstance(first, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2
                                                            and isinstance(p[1], (int, float)) for p in first):
            raise Failed("a list of (method, mean gap) pairs", show(first), "see rank_methods' docstring")
        pairs = [(str(m), float(v)) for m, v in first]
        return pairs, rank

    return remembered(student, "rank_methods", ask)


def check_ranking(student: Student, variation: Variation) -> None:
    """rank_methods on ten digits: the four methods, sorted by their mean gap (best first), each gap
    equal to the grader's (the variation draws the digits, the seed and the steps).
    """
    rank_steps, rank_seed = ranking_settings(variation)
    got, _ = student_ranking(student, variation)
    want = reference_ranking(variation)
    names, wanted_names = [m for m, _ in got], [m for m, _ in want]
    if sorted(names) != sorted(wanted_names):
        raise Failed(f"the four methods {', '.join(METHOD_ORDER)}", ", ".join(names), "one pair per method")
    if names != wanted_names:
        raise Failed(f"the methods sorted by their gap, best first (seed {rank_seed}, {rank_steps} steps)",
                     ", ".join(names), "sorted(..., key=lambda pair: -pair[1])" if tuple(names) == METHOD_ORDER
                     and [v for _, v in got] != sorted((v for _, v in got), reverse=True)
                     else "the maps as TODO 4 says (SmoothGrad's generator seeded with `seed`), best gap first")
    ours, theirs = dict(got), dict(want)
    # a mean gap over ten digits: gap_atol(steps) each, far below 1e-4, which also allows SmoothGrad's
    # noise drawn on another route (the same generator, its numbers added in float32 in another order)
    off = {m: ours[m] - theirs[m] for m in theirs if abs(ours[m] - theirs[m]) > max(1e-4, gap_atol(rank_steps))}
    if off:
        raise Failed(f"each method's mean gap (seed {rank_seed}, {rank_steps} steps)",
                     ", ".join(f"{m} off by {v:+.3f}" for m, v in off.items()),
                     "the maps as TODO 4 says (SmoothGrad's generator seeded with `seed`); the gap of each map")


def check_reproducible(student: Student, variation: Variation) -> None:
    """rank_methods gives the same ranking and scores for the same seed, and another chance map for
    another seed (every random number from generators seeded with `seed`).
    """
    rank_steps, rank_seed = ranking_settings(variation)
    model, x = digits(variation)
    first, rank = student_ranking(student, variation)
    again = [(str(m), float(v)) for m, v in rank(model, x.clone(), None, seed=rank_seed, steps=rank_steps)]
    if again != first:
        raise Failed("the same ranking and scores for the same seed", "another ranking or other scores",
                     "draw every random number from generators seeded with `seed`, not the global one")
    other = dict((str(m), float(v)) for m, v in rank(model, x.clone(), None, seed=rank_seed + 1,
                                                     steps=rank_steps))
    if other.get("chance") == dict(first).get("chance"):
        raise Failed("another seed gives another chance map", "the same chance score for two seeds",
                     "chance_map(inputs, seed): use the seed you are given")


def checks(student: Student | None, variation: Variation) -> list[Check]:
    """The checks, in the order they are printed; `student` is None to list their names only."""
    bind = binder(student, variation)
    rank_steps, rank_seed = ranking_settings(variation)
    return [
        ("area_under_curve: hand-derived areas", bind(check_auc)),
        ("deletion curve: softmax probabilities, steps + 1 points (a model that ignores its input)",
         bind(check_probabilities)),
        ("deletion curve: starts at p(x), ends at p(blurred(x))", bind(check_ends)),
        ("deletion curve: hand-derived on f = w . x", bind(check_linear)),
        ("deletion curve: stable ranking of ties, channels summed in absolute value", bind(check_ties_and_channels)),
        ("deletion curve: equals the grader's on a random CNN (round(k H W / steps) pixels)", bind(check_reference)),
        ("morf_lerf_gap: known values, antisymmetric under negation, reduced before negating", bind(check_gap)),
        ("deletion curve: no side effects", bind(check_side_effects)),
        (f"rank_methods: the ranking and gaps on ten digits (seed {rank_seed}, {rank_steps} steps)",
         bind(check_ranking)),
        ("rank_methods: reproducible with the seed, and the seed is used", bind(check_reproducible)),
    ]
