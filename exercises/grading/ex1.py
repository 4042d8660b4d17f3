"""Exercise 1 checks: occlusion from scratch, against Captum's Occlusion and hand-derived cases."""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from grading.checking import binder, Check, close, expect_value_error, Failed, need, show, side_effect_check, worst
from grading.models import GradingCNN, SumModel, SumOrConstant, WeightedSum
from grading.student import Student
from grading.variations import Variation

import utils  # noqa: E402


def reference_occlusion(model: nn.Module, x: torch.Tensor, target, window: int, stride: int,
                        baseline: float) -> tuple[torch.Tensor, str]:
    """Captum's Occlusion when it is installed; otherwise the same placement, written out here."""
    n, c, h, w = x.shape
    try:
        from captum.attr import Occlusion
    except ImportError:
        pass
    else:  # Captum's target=None means "the model returns one score per example", not the prediction
        with torch.no_grad():
            classes = utils.resolve_target(model(x), target)
        result = Occlusion(model).attribute(x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                                            baselines=baseline, target=classes)
        return result.detach(), "Captum's Occlusion"
    with torch.no_grad():
        logits = model(x)
        classes = utils.resolve_target(logits, target)
        scores = logits.gather(1, classes[:, None])[:, 0]
        total, count = torch.zeros_like(x), torch.zeros(h, w, dtype=x.dtype)
        for i in range(math.ceil((h - window) / stride) + 1):
            for j in range(math.ceil((w - window) / stride) + 1):
                hidden = x.clone()
                hidden[:, :, i * stride:i * stride + window, j * stride:j * stride + window] = baseline
                drop = scores - model(hidden).gather(1, classes[:, None])[:, 0]
                total[:, :, i * stride:i * stride + window, j * stride:j * stride + window] += drop.view(n, 1, 1, 1)
                count[i * stride:i * stride + window, j * stride:j * stride + window] += 1
    return total / count, "the grader's reference (Captum is not installed)"


def own_prediction_occlusion(model: nn.Module, x: torch.Tensor, window: int, stride: int,
                             baseline: float) -> torch.Tensor:
    """The classic mistake: each occluded copy explained for its own predicted class, not the class fixed at x."""
    n, c, h, w = x.shape
    with torch.no_grad():
        total, count = torch.zeros_like(x), torch.zeros(h, w, dtype=x.dtype)
        for i in range(math.ceil((h - window) / stride) + 1):
            for j in range(math.ceil((w - window) / stride) + 1):
                rows, cols = slice(i * stride, i * stride + window), slice(j * stride, j * stride + window)
                hidden = x.clone()
                hidden[:, :, rows, cols] = baseline
                logits = model(hidden)
                own = logits.argmax(1, keepdim=True)
                drop = model(x).gather(1, own)[:, 0] - logits.gather(1, own)[:, 0]
                total[:, :, rows, cols] += drop.view(n, 1, 1, 1)
                count[rows, cols] += 1
    return total / count


def diagnose_occlusion(got: torch.Tensor, expected: torch.Tensor, covered: torch.Tensor,
                       own: torch.Tensor | None = None) -> str:
    """A hint that names the classic mistake when the answer has its signature."""
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return "return a tensor shaped like inputs"
    got = got.detach().double()
    if own is not None and close(got, own.double()):
        return ("you explained each occluded copy's own prediction: fix the class once, at x "
                "(utils.target_scores(model(x), target)), and use it for every copy")
    if close(got, -expected):
        return "the sign is flipped: the drop is S_c(x) - S_c(x with the patch hidden)"
    if close(got, expected * covered):
        return "you summed the drops: divide by the number of patches that covered each pixel"
    if close(got[..., :-1, :-1], expected[..., :-1, :-1]) or bool((got[..., -1, :] == 0).all()):
        return ("the last row or column is wrong: the last patch starts at k * stride and may hang over the "
                "edge, where it is cut off (patch_corners)")
    return "compare your loops with the formula in the file's header"


SHIPPED_CASES = ((2, 3, 8, 8, 3, 2, None, 0.0), (2, 3, 9, 7, 4, 3, [1, 4], 0.0), (1, 1, 10, 10, 4, 4, 2, 0.3),
                 (2, 3, 6, 6, 6, 1, "tensor", -1.0))


def reference_cases(variation: Variation) -> list[tuple]:
    """Four comparisons with Captum: shapes, windows, strides, targets and baselines drawn from the variation.

    The forms of `target` stay one each (None, a list, an int, a tensor), and at least one
    case has a stride that does not divide size - window (a last patch over the edge).
    """
    if variation.seed is None:
        cases = [list(case) for case in SHIPPED_CASES]
    else:
        g = variation.generator("occlusion cases")
        cases = []
        for form in (None, "list", "int", "tensor"):
            n, c = int(torch.randint(1, 3, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g))
            h, w = (int(v) for v in torch.randint(6, 12, (2,), generator=g))
            window = int(torch.randint(2, min(h, w) + 1, (1,), generator=g))
            stride = int(torch.randint(1, window + 1, (1,), generator=g))
            baseline = round(float(torch.rand(1, generator=g)) * 2 - 1, 2) if form != None else 0.0  # noqa: E711
            target = {None: None, "list": torch.randint(5, (n,), generator=g).tolist(),
                      "int": int(torch.randint(5, (1,), generator=g)), "tensor": "tensor"}[form]
            cases.append([n, c, h, w, window, stride, target, baseline])
        n, c, h, w, window, stride = cases[1][:6]
        if (h - window) % stride == 0 and stride > 1:
            cases[1][2] += 1  # one more row: the last patch hangs over the bottom edge
    for case in cases:
        if case[6] == "tensor":
            case[6] = torch.tensor([0, 3])[:case[0]] if variation.seed is None else \
                torch.randint(5, (case[0],), generator=variation.generator("occlusion tensor target"))
    return [tuple(case) for case in cases]


def call_occlusion(student: Student, *args, **kwargs) -> object:
    """The student's occlusion, called in the child (a failed check when the file has none)."""
    return need(student, "occlusion")(*args, **kwargs)


# %% The checks, one function each (bound to the student and the variation in checks()) ----------------


def check_corners(student: Student, variation: Variation) -> None:
    """patch_corners on hand-derived cases: ceil((size - window) / stride) + 1 corners, k * stride each,
    including a last patch that hangs over the edge (a stride that does not divide size - window).
    """
    cases = {(5, 2, 2): [0, 2, 4], (10, 4, 4): [0, 4, 8], (11, 4, 3): [0, 3, 6, 9], (10, 4, 3): [0, 3, 6],
             (6, 6, 1): [0], (4, 1, 1): [0, 1, 2, 3], (9, 5, 2): [0, 2, 4]}
    for (size, window, stride), want in cases.items():
        got = need(student, "patch_corners")(size, window, stride)
        if list(got) != want:
            fit = list(range(0, size - window + 1, stride))
            hint = ("patches must reach the last pixel: when stride does not divide size - window, one more "
                    "patch starts at k * stride and hangs over the edge") if list(got) == fit else \
                "there are ceil((size - window) / stride) + 1 corners, k * stride for k = 0, 1, ..."
            raise Failed(f"patch_corners({size}, {window}, {stride}) == {want}", list(got), hint)


def check_shape(student: Student, variation: Variation) -> None:
    """occlusion on a small random CNN: a detached float32 tensor shaped like the inputs, the same in every
    channel of a pixel (a patch hides all channels at once).
    """
    model, x = GradingCNN(), torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    out = call_occlusion(student, model, x, None, window=3, stride=2)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
        raise Failed("a float32 tensor of shape (2, 3, 8, 8)", show(out), "return one value per input element")
    if out.requires_grad:
        raise Failed("a detached result", "requires_grad=True", "return .detach() or compute under no_grad")
    if not torch.equal(out[:, 0], out[:, 1]) or not torch.equal(out[:, 0], out[:, 2]):
        raise Failed("the same value in every channel of a pixel", "channels differ",
                     "the patch hides all channels at once")


def hand_case(student: Student, h: int, w: int, window: int, stride: int, want: torch.Tensor,
              covered: torch.Tensor) -> None:
    """occlusion on h x w ones, f = the sum of the pixels, baseline 0: the map must be `want`."""
    x = torch.ones(1, 1, h, w, dtype=torch.float64)
    want = want.view(1, 1, h, w).double()  # shown as it is compared: (1, 1, h, w) float64, as x is
    got = call_occlusion(student, SumModel(), x, 0, window=window, stride=stride, baseline=0.0)
    # float64 sums of at most window**2 ones, divided by a count: exact to 1e-15; 1e-9 leaves room for a
    # float32 route (its rounding of values <= 16 is < 1e-6, hence rtol 1e-6)
    if not close(got, want, 1e-6, 1e-9):
        raise Failed(f"{show(want)} ({tuple(want.shape)} float64)", show(got) if not isinstance(got, torch.Tensor)
                     else f"{show(got)} ({tuple(got.shape)} {str(got.dtype).replace('torch.', '')})",
                     diagnose_occlusion(got, want, covered.view(1, 1, h, w).double()))


def check_mean(student: Student, variation: Variation) -> None:
    """Each pixel's value is the MEAN drop over the patches that cover it, not their sum."""
    # 3x3 ones, f = sum of pixels, 2x2 patches at stride 1: every patch hides 4 ones, so every
    # drop is 4, and the mean of 4s is 4 whether a pixel is covered once (corner) or 4 times (centre).
    covered = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    hand_case(student, 3, 3, 2, 1, torch.full((3, 3), 4.0), covered)


def check_edges(student: Student, variation: Variation) -> None:
    """Patches that hang over the right and bottom edges are cut off there, not dropped or wrapped."""
    # 5x5 ones, 2x2 patches at stride 2: corners 0, 2, 4; the patches at 4 hang over the edge and
    # hide 2 pixels (1 in the corner), so the last row and column get 2 and the corner 1.
    want = torch.full((5, 5), 4.0)
    want[4, :], want[:, 4] = 2.0, 2.0
    want[4, 4] = 1.0
    hand_case(student, 5, 5, 2, 2, want, torch.ones(5, 5))


def check_linear(student: Student, variation: Variation) -> None:
    """On a linear model, each pixel's mean drop by hand: the patch is hidden with `baseline`, not with 0."""
    # f = (sum of w * x, 0): drop(P) = sum over P of w (x - baseline), averaged per pixel by hand.
    g = torch.Generator().manual_seed(3)
    weights = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    x = torch.rand(1, 2, 4, 5, generator=g, dtype=torch.float64)
    baseline = 0.5

    contribution = (weights * (x[0] - baseline)).sum(0)  # (4, 5)
    total, count = torch.zeros(4, 5, dtype=torch.float64), torch.zeros(4, 5, dtype=torch.float64)
    for top in (0, 1, 2):  # window 3, stride 1: corners 0, 1 down; 0, 1, 2 across
        for left in (0, 1, 2):
            if top > 1:
                continue
            total[top:top + 3, left:left + 3] += contribution[top:top + 3, left:left + 3].sum()
            count[top:top + 3, left:left + 3] += 1
    want = (total / count).expand(1, 2, 4, 5)
    got = call_occlusion(student, WeightedSum(weights), x, 0, window=3, stride=1, baseline=baseline)
    if not close(got, want, 1e-6, 1e-9):
        with_zero = torch.zeros(4, 5, dtype=torch.float64)
        plain_contribution = (weights * x[0]).sum(0)
        for top in (0, 1):
            for left in (0, 1, 2):
                with_zero[top:top + 3, left:left + 3] += plain_contribution[top:top + 3, left:left + 3].sum()
        zeros = (with_zero / count).expand(1, 2, 4, 5)
        hint = ("you hid with 0: hide with `baseline`" if close(got, zeros, 1e-6, 1e-9)
                else diagnose_occlusion(got, want, count.expand(1, 2, 4, 5)))
        raise Failed("on f(x) = w . x with baseline 0.5, each pixel's mean drop by hand",
                     worst(got, want), hint)


def check_fixed_class(student: Student, variation: Variation) -> None:
    """The class is fixed once, at x: each occluded copy is scored for that class, not its own prediction."""
    # 4x4 ones, logits (sum, 12), window 3, stride 1: x is class 0 (16 > 12); every patch hides 9
    # ones, so each copy says class 1 (7 < 12). For class 0 every drop is 16 - 7 = 9, so the mean is 9;
    # a copy explained for its own prediction (class 1, constant) drops by 0 instead.
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    got = call_occlusion(student, SumOrConstant(12.0), x, None, window=3, stride=1, baseline=0.0)
    want = torch.full((1, 1, 4, 4), 9.0, dtype=torch.float64)
    if not close(got, want, 1e-6, 1e-9):
        hint = ("you explained each occluded copy's own prediction: fix the class once, at x "
                "(utils.target_scores(model(x), target)), and use it for every copy")
        if not (isinstance(got, torch.Tensor) and got.shape == want.shape and float(got.abs().max()) == 0):
            hint = diagnose_occlusion(got, want, torch.ones_like(want))
        raise Failed("a mean drop of 9 at every pixel (class 0, fixed at x)", worst(got, want), hint)


def check_reference_case(student: Student, variation: Variation, n: int, c: int, h: int, w: int, window: int,
                         stride: int, target, baseline: float) -> None:
    """One comparison with Captum's Occlusion (or the grader's own when Captum is missing) on a random CNN.

    The case (shape, window, stride, target, baseline) comes from reference_cases(variation);
    a failure names the classic mistake when the answer has its signature.
    """
    model = GradingCNN(channels=c, seed=h * 10 + w)
    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(h + w))
    want, source = reference_occlusion(model, x, target, window, stride, baseline)
    got = call_occlusion(student, model, x, target, window=window, stride=stride, baseline=baseline)
    if not close(got, want):
        covered = torch.zeros(h, w)
        for i in range(math.ceil((h - window) / stride) + 1):
            for j in range(math.ceil((w - window) / stride) + 1):
                covered[i * stride:i * stride + window, j * stride:j * stride + window] += 1
        own = own_prediction_occlusion(model, x, window, stride, baseline) if target is None else None
        raise Failed(f"equal to {source}", worst(got, want),
                     diagnose_occlusion(got, want, covered.expand_as(want), own))


def check_target_forms(student: Student, variation: Variation) -> None:
    """Every form of `target` (None, an int, a list, a tensor) means what utils.target_scores says."""
    model, x = GradingCNN(), torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(5))
    predicted = model(x).argmax(1)
    by_none = call_occlusion(student, model, x, None, window=3, stride=3)
    for form, target in (("a list", predicted.tolist()), ("a tensor", predicted)):
        got = call_occlusion(student, model, x, target, window=3, stride=3)
        if not close(got, by_none):
            raise Failed(f"target=None and target as {form} of the predictions give the same map",
                         worst(got, by_none), "use utils.target_scores(logits, target)")
    by_int, by_list = (call_occlusion(student, model, x, t, window=3, stride=3) for t in (3, [3, 3]))
    if not close(by_int, by_list) or close(by_int, by_none):
        raise Failed("target=3 explains class 3 for every example", worst(by_int, by_list),
                     "an int is one class for all examples")


def check_target_errors(student: Student, variation: Variation) -> None:
    """ValueError for a class out of range, a tensor target out of range, and a list of the wrong length."""
    occlusion = partial(call_occlusion, student)
    model, x = GradingCNN(), torch.rand(2, 3, 6, 6)
    expect_value_error(lambda: occlusion(model, x, 5, window=3, stride=3), "target=5 with 5 classes (0 to 4)")
    expect_value_error(lambda: occlusion(model, x, -1, window=3, stride=3),
                       "target=-1 (a class index is never counted from the end)")
    expect_value_error(lambda: occlusion(model, x, torch.tensor([1, -2]), window=3, stride=3),
                       "target=tensor([1, -2]) (negative classes)")
    expect_value_error(lambda: occlusion(model, x, torch.tensor([0, 9]), window=3, stride=3),
                       "target=tensor([0, 9])")
    expect_value_error(lambda: occlusion(model, x, [0, 1, 2], window=3, stride=3), "3 targets for 2 examples")


def check_window_errors(student: Student, variation: Variation) -> None:
    """ValueError for a window larger than the image and a stride outside 1..window."""
    occlusion = partial(call_occlusion, student)
    model, x = GradingCNN(), torch.rand(1, 3, 6, 6)
    expect_value_error(lambda: occlusion(model, x, window=7, stride=2), "window=7 on a 6x6 image")
    expect_value_error(lambda: occlusion(model, x, window=3, stride=0), "stride=0")
    expect_value_error(lambda: occlusion(model, x, window=3, stride=4), "stride=4 > window=3")


def check_side_effects(student: Student, variation: Variation) -> None:
    """Nothing of the caller's changes (inputs, requires_grad, training mode, .grad, hooks); works under no_grad."""
    side_effect_check(student, "occlusion", GradingCNN(), torch.rand(2, 3, 7, 7, generator=torch.Generator()
                      .manual_seed(6)), [1, 2], window=3, stride=2)


def reference_case_name(n: int, c: int, h: int, w: int, window: int, stride: int, target,
                        baseline: float) -> str:
    """The printed name of one comparison with Captum (it shows the case, so a seed's cases can be seen)."""
    return (f"equals Captum's Occlusion on {n}x{c}x{h}x{w}, window {window}, stride {stride}, "
            f"target {target!r}, baseline {baseline}")


def checks(student: Student | None, variation: Variation) -> list[Check]:
    """The checks, in the order they are printed; `student` is None to list their names only."""
    bind = binder(student, variation)
    return [
        ("patch_corners: hand-derived corners, including a last patch over the edge", bind(check_corners)),
        ("occlusion returns a detached tensor shaped like inputs, equal across channels", bind(check_shape)),
        ("hand-derived: the mean over covering patches, not the sum (3x3, window 2, stride 1)", bind(check_mean)),
        ("hand-derived: patches cut off at the right and bottom edges (5x5, window 2, stride 2)",
         bind(check_edges)),
        ("hand-derived: f(x) = w . x, two channels, baseline 0.5 (4x5, window 3, stride 1)", bind(check_linear)),
        ("hand-derived: the class is fixed at x, though hiding a patch changes the prediction (4x4, window 3)",
         bind(check_fixed_class)),
        *((reference_case_name(*case), bind(check_reference_case, *case)) for case in reference_cases(variation)),
        ("every target form: None, an int, a list, a tensor", bind(check_target_forms)),
        ("ValueError for a class out of range (negative ones too) or a list of the wrong length",
         bind(check_target_errors)),
        ("ValueError for a window larger than the image or a stride outside 1..window",
         bind(check_window_errors)),
        ("no side effects: inputs, requires_grad, training mode, .grad, hooks; works under no_grad",
         bind(check_side_effects)),
    ]
