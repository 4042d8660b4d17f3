"""Exercise 4 checks: saliency on the lesion detector, the pointing game and the randomisation test."""
from __future__ import annotations

import copy

import torch
from torch import nn

from grading.checking import binder, Check, Failed, need, show, side_effect_check, written_check
from grading.student import Student
from grading.variations import memoised, remembered, Variation

import tasks  # noqa: E402
import utils  # noqa: E402

LESION_GRADER_SEED = 4104  # scans no exercise file draws
LESION_PASS_RATE = 0.85  # the gradient hits ~99%, SmoothGrad ~97%, Grad-CAM ~70%, centre ~10%, random ~6%
MODEL_DEPENDENCE = 0.9  # a map must change (correlation below this) when the model's weights are random
SHIPPED = (tasks.LESION_WEIGHTS,)  # what the grader's scans and rates are computed from


def reference_pointing(saliency: torch.Tensor, mask: torch.Tensor, tolerance: float) -> torch.Tensor:
    heat = saliency.abs().sum(1) if saliency.dim() == 4 else saliency
    hits = []
    for i in range(heat.shape[0]):
        r, c = divmod(int(heat[i].flatten().argmax()), heat.shape[-1])
        pixels = torch.nonzero(mask[i]).double()
        hits.append(bool(len(pixels)) and bool((((pixels - torch.tensor([r, c])) ** 2).sum(1) < tolerance ** 2).any()))
    return torch.tensor(hits)


def inverted_lesion_cnn(model: nn.Module) -> nn.Module:
    """The lesion CNN rebuilt to read scans drawn with inverted contrast (1 - x), class 0 a constant.

    The first convolution gets weights -W and bias b + sum(W), so on 1 - x it computes what
    the original computes on x (up to the zero padding at the border); the head becomes
    (0, w1 - w0) with biases (0, b1 - b0), which keeps every decision. On its scans the
    lesion is a dark blob and the bright blobs are cysts, so a map made from the image alone
    (a bright-blob detector) misses, and so does a map of class 0, whose gradient is zero.
    """
    second = copy.deepcopy(model)
    conv, head = second.features[0], second.head[-1]
    with torch.no_grad():
        conv.bias += conv.weight.sum((1, 2, 3))
        conv.weight.neg_()
        weight, bias = head.weight.clone(), head.bias.clone()
        head.weight[0], head.weight[1] = 0.0, weight[1] - weight[0]
        head.bias[0], head.bias[1] = 0.0, bias[1] - bias[0]
    return second.eval()


def reparametrised(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """The same function with other weights: each convolution's output channels permuted and scaled by
    positive factors in [0.5, 2] (ReLU(s z) = s ReLU(z) and max pooling commute with them), undone by the
    next layer's inputs and the head. Outputs equal the original's to float32 rounding; no weight
    tensor equals (or is a fixed function of) the shipped one, so no file can recognise the model by them."""
    new = copy.deepcopy(model)
    convs = [m for m in new.features if isinstance(m, nn.Conv2d)]
    head = new.head[-1]
    with torch.no_grad():
        order, scale = None, None  # of the previous layer's outputs
        for conv in convs:
            if order is not None:
                conv.weight.copy_(conv.weight[:, order] / scale[None, :, None, None])
            out = conv.weight.shape[0]
            order = torch.randperm(out, generator=generator)
            scale = torch.exp(torch.empty(out).uniform_(-0.69, 0.69, generator=generator))
            conv.weight.copy_(conv.weight[order] * scale[:, None, None, None])
            conv.bias.copy_(conv.bias[order] * scale)
        head.weight.copy_(head.weight[:, order] / scale[None, :])
    return new.eval()


def class_one_gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The grader's own map: |d logit_1 / d x|, the plainest map of the lesion class."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, 1].sum(), x)
    return grad.abs()


@memoised(*SHIPPED)
def second_model(variation: Variation) -> tuple[nn.Module, float]:
    """The second lesion model (inverted contrast, class 0 constant, re-parametrised) made wrong on a share
    of the scans with a lesion (its class-1 bias lowered to that quantile of their class-1 logits), and
    that share. Verified when drawn: the grader's own class-1 gradient still finds the lesions (pointing
    game >= LESION_PASS_RATE + 5 points) and the share is between 18% and 45% (explaining the prediction then hits at most 82%); else drawn again.

    Explaining the prediction (not class 1) gives zero maps on the scans it gets wrong, class 0 being
    constant: that file misses them, and a file that explains class 1 does not.
    """
    model, _, _, x, m = setting(variation)
    for attempt in range(20):
        generator = variation.generator(f"second lesion model {attempt}") if variation.seed is not None \
            else torch.Generator().manual_seed(4104 + attempt)
        second = reparametrised(inverted_lesion_cnn(model), generator)
        share = float(torch.empty(()).uniform_(0.2, 0.35, generator=generator))
        with torch.no_grad():
            logits = second(1 - x)[:, 1]
            second.head[-1].bias[1] -= torch.quantile(logits, share)
            wrong = float((second(1 - x).argmax(1) == 0).float().mean())
        found = float(reference_pointing(class_one_gradient(second, 1 - x), m, 3).float().mean())
        if found >= LESION_PASS_RATE + 0.05 and 0.18 <= wrong <= 0.45:
            return second, wrong
    raise RuntimeError("no second lesion model passed its verification in 20 draws (the grader's fault)")


def scan_seed(variation: Variation) -> int:
    """The seed of the grader's 300 scans: LESION_GRADER_SEED in the shipped variation."""
    return LESION_GRADER_SEED + variation.integer("lesion scans", 1, 10 ** 6, 0)


def random_seed(variation: Variation) -> int:
    """The seed of the randomly initialised lesion CNN of the sanity check: 0 in the shipped variation."""
    return variation.integer("random weights", 1, 10 ** 6, 0)


# %% The grader's scans and rates (once per process) and the student's maps (once per grading run) ---------


@memoised(*SHIPPED)
def setting(variation: Variation) -> tuple:
    """The lesion CNN, the grader's 300 scans and masks, and the scans with a lesion and their masks.

    Clone the scans before handing them to the student's code; no check changes them.
    """
    model = tasks.load_lesion_cnn()
    scans, labels, masks = tasks.lesion_dataset(300, seed=scan_seed(variation))
    positive = labels == 1
    return model, scans, masks, scans[positive], masks[positive]


@memoised(*SHIPPED)
def rates(variation: Variation) -> dict[str, float]:
    """The pointing game's rates of Grad-CAM and of random maps on the grader's scans, for scale in a hint."""
    gradcam = utils.load_lecture("05_gradcam")
    model, _, _, x, m = setting(variation)
    generator = torch.Generator().manual_seed(0)
    return {"Grad-CAM": float(reference_pointing(gradcam.grad_cam(model, x, 1), m, 3).float().mean()),
            "random": float(reference_pointing(torch.rand(len(x), 32, 32, generator=generator), m, 3)
                            .float().mean())}


def student_maps(student: Student, variation: Variation) -> torch.Tensor:
    """lesion_saliency's maps of the grader's scans with a lesion, checked for shape and finite values.

    Asked once per grading run (kept on `student`): three checks read them.
    """

    def ask() -> torch.Tensor:
        model, _, _, x, _ = setting(variation)
        maps = need(student, "lesion_saliency")(model, x.clone())
        if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[0] != len(x) \
                or tuple(maps.shape[-2:]) != (32, 32):
            raise Failed(f"a tensor ({len(x)}, 1, 32, 32)", show(maps), "one map per scan, shaped like the scans")
        if not torch.isfinite(maps).all():
            raise Failed("finite values", show(maps), "check for divisions by zero")
        return maps.detach()

    return remembered(student, "lesion_saliency", ask)


# %% The checks, one function each (bound to the student and the variation in checks()) ----------------


def check_pointing(student: Student, variation: Variation) -> None:
    """pointing_game on hand-made maps: a hit on the mask, misses at distance 3 and 2.83 (strictly less
    than the tolerance), an empty mask, a tie (the first maximum counts) and channels summed in |.|.
    """
    heat = torch.zeros(6, 7, 7)
    peaks = [(3, 3), (3, 6), (5, 5), (3, 3), (0, 0), (2, 2)]
    for i, (r, c) in enumerate(peaks):
        heat[i, r, c] = 1.0
    heat[4, 3, 3] = 1.0  # a tie: the first maximum in flattened order, (0, 0), counts
    mask = torch.zeros(6, 7, 7, dtype=torch.bool)
    mask[:, 3, 3] = True
    mask[3] = False  # an empty mask: a miss
    saliency = heat[:, None].repeat(1, 2, 1, 1)
    saliency[5, 0, 6, 6], saliency[5, 1, 6, 6] = 1.2, -1.2  # |.| summed over channels: (6, 6) wins, a miss
    want = [True, False, True, False, False, False]
    got = need(student, "pointing_game")(saliency, mask, 3)
    if not isinstance(got, torch.Tensor) or [bool(v) for v in got.flatten()] != want:
        raise Failed(f"{want} (on the mask; at distance 3; at 2.83; empty mask; a tie; channels in |.|)",
                     show(got), "strictly less than the tolerance; the first maximum; sum |.| over channels")


def check_centre(student: Student, variation: Variation) -> None:
    """centre_map's first maximum of |map| is the centre pixel ((h - 1) // 2, (w - 1) // 2), for two sizes."""
    for n, h, w in ((2, 32, 32), (1, 7, 10)):
        got = need(student, "centre_map")(n, h, w)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (n, 1, h, w):
            raise Failed(f"shape ({n}, 1, {h}, {w})", show(got), "one map per example")
        peak = divmod(int(got[0].abs().sum(0).flatten().argmax()), w)
        centre = ((h - 1) // 2, (w - 1) // 2)
        if peak != centre:
            if peak == (h // 2, w // 2) or peak[0] in (h // 2, centre[0]) and peak[1] in (w // 2, centre[1]):
                hint = (f"one off: the centre pixel of {h}x{w} is ((h - 1) // 2, (w - 1) // 2) = {centre}, "
                        "not (h // 2, w // 2)")
            elif peak == (centre[1], centre[0]) or peak == (w // 2, h // 2):
                hint = "rows and columns swapped: the map is (n, 1, h, w), row first"
            elif float(got[0].min()) < 0 and float(got[0].max()) <= 0:
                hint = "your map is negative; the pointing game reads |map|: put the largest value at the centre"
            else:
                hint = f"put the single largest value of |map| at row (h - 1) // 2, column (w - 1) // 2 = {centre}"
            raise Failed(f"the first maximum of |map| at {centre} for {h}x{w}", peak, hint)


def check_shape_and_side_effects(student: Student, variation: Variation) -> None:
    """lesion_saliency gives one finite map per scan, and leaves the caller's inputs and model alone."""
    student_maps(student, variation)
    model, scans = setting(variation)[:2]
    side_effect_check(student, "lesion_saliency", model, scans[:4].clone())


def check_rate(student: Student, variation: Variation) -> None:
    """lesion_saliency's maps hit the lesion (pointing game) on at least LESION_PASS_RATE of new scans."""
    _, _, _, x, m = setting(variation)
    rate = float(reference_pointing(student_maps(student, variation), m, 3).float().mean())
    if rate < LESION_PASS_RATE:
        baselines = ", ".join(f"{k} {v:.0%}" for k, v in rates(variation).items())
        raise Failed(f"a hit rate of at least {LESION_PASS_RATE:.0%} on {len(x)} new lesions", f"{rate:.0%}",
                     f"for scale: {baselines}; a coarse map, or one that is zero everywhere, misses small lesions")


def check_model_dependence(student: Student, variation: Variation) -> None:
    """The randomisation test: the maps of a randomly initialised CNN must differ from the trained one's
    (mean correlation below MODEL_DEPENDENCE), or the map explains the image, not the model.
    """
    _, _, _, x, _ = setting(variation)
    torch.manual_seed(random_seed(variation))
    random_model = tasks.SmallCNN(width=tasks.LESION_WIDTH).eval()
    ours = student_maps(student, variation)
    theirs = need(student, "lesion_saliency")(random_model, x.clone()).detach()
    a, b = ours.flatten(1).double(), torch.as_tensor(theirs).flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    correlation = float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)).mean())
    if correlation >= MODEL_DEPENDENCE:
        raise Failed(f"maps that change when the weights are random (correlation < {MODEL_DEPENDENCE})",
                     f"a mean correlation of {correlation:.3f}",
                     "your map does not depend on the model: explain the model, not the image "
                     "(Adebayo et al., 2018, Sanity Checks for Saliency Maps)")


def check_second_model(student: Student, variation: Variation) -> None:
    """The method finds the evidence of a second lesion model, whose lesions are dark, whose class 0 is a
    constant, whose weights are re-parametrised and which is wrong on a share of the scans: a
    bright-blob detector, a map of class 0, a map of the predicted class, or a file that recognises
    the shipped weights misses (see second_model).
    """
    _, _, _, x, m = setting(variation)
    second, wrong = second_model(variation)
    maps = need(student, "lesion_saliency")(copy.deepcopy(second), 1 - x)
    if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[0] != len(x):
        raise Failed(f"a tensor ({len(x)}, 1, 32, 32)", show(maps), "one map per scan, shaped like the scans")
    rate = float(reference_pointing(maps.detach(), m, 3).float().mean())
    if rate < LESION_PASS_RATE:
        zero = maps.detach().flatten(1).abs().amax(1) == 0
        with torch.no_grad():
            predicted_zero = second(1 - x).argmax(1) == 0
        if float(zero.float().mean()) > 0.5:
            why = f"{float(zero.float().mean()):.0%} of your maps are zero everywhere: explain class 1 (the lesion), not class 0"
        elif predicted_zero.any() and float(zero[predicted_zero].float().mean()) > 0.8:
            why = (f"your maps are zero on the {wrong:.0%} of scans this model gets wrong: you explained the "
                   "predicted class; explain class 1 (the lesion) on every scan")
        else:
            why = ("the lesions are dark here and the bright blobs are cysts: a map that follows the image, "
                   "not the model (or recognises the shipped weights), points at the wrong blob")
        raise Failed(f"a hit rate of at least {LESION_PASS_RATE:.0%} on a second lesion model "
                     "(scans with inverted contrast)", f"{rate:.0%}", why)


def check_hit_rate(student: Student, variation: Variation) -> None:
    """hit_rate equals the pointing game's rate of the student's own maps over the scans with a lesion."""
    model, scans, masks, _, m = setting(variation)
    want = float(reference_pointing(student_maps(student, variation), m, 3).float().mean())
    got = need(student, "hit_rate")(model, scans.clone(), masks.clone())
    # a share of at most 300 scans: two float32 roundings of a number <= 1 at most, so 1e-6 absolute is ample
    if not isinstance(got, (int, float)) or abs(got - want) > 1e-6:
        if not isinstance(got, (int, float)):
            raise Failed("the share of the scans with a lesion where your map hits, a float", show(got),
                         "return a Python float (float(...)), not a tensor or a list")
        positive = masks.flatten(1).any(1)
        everyone = float(reference_pointing(student_maps(student, variation), m, 3).float().sum()) / len(scans)
        if abs(got - everyone) <= 1e-6 and not bool(positive.all()):
            hint = "you divided by every scan: leave out the scans whose mask is empty"
        else:
            hint = ("your share differs from the pointing game of your own maps: hit_rate should be "
                    "pointing_game(lesion_saliency(model, scans with a lesion), their masks, 3).float().mean()")
        raise Failed("the share of the scans with a lesion where your map hits", f"{got!r}, off by {got - want:+.3f}",
                     hint)


def checks(student: Student | None, variation: Variation) -> list[Check]:
    """The checks, in the order they are printed; `student` is None to list their names only."""
    bind = binder(student, variation)
    return [
        ("pointing_game: hand-derived hits and misses (strict tolerance, ties, channels, empty mask)",
         bind(check_pointing)),
        ("centre_map: its first maximum (of |map|) at the centre pixel", bind(check_centre)),
        ("lesion_saliency: one finite map per scan, no side effects", bind(check_shape_and_side_effects)),
        (f"lesion_saliency finds the lesion: pointing game >= {LESION_PASS_RATE:.0%} on scans you never saw",
         bind(check_rate)),
        ("lesion_saliency depends on the model (sanity check with random weights)", bind(check_model_dependence)),
        ("lesion_saliency finds the evidence of a second lesion model (dark lesions, class 0 constant)",
         bind(check_second_model)),
        ("hit_rate: the pointing game's rate over the scans with a lesion", bind(check_hit_rate)),
        ("written answers present (your teacher reads them)",
         written_check(student, ("why_this_method", "what_the_baselines_say"))),
    ]
