"""Exercise 2 checks: the digit CNN's mistakes, explained with three lectures' methods."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from grading.checking import binder, Check, close, Failed, need, show, worst, written_check
from grading.student import Student
from grading.variations import memoised, remembered, Variation

import tasks  # noqa: E402
import utils  # noqa: E402
from plumbing.paths import MNIST_WEIGHTS  # noqa: E402

OVERLAY = 0.3  # a second digit drawn over each copy at this strength: more mistakes to choose among
METHODS = ("vanilla_gradient", "integrated_gradients", "grad_cam")
STEPS = 32  # the exercise's IG_STEPS
SHIPPED = (MNIST_WEIGHTS, tasks.DIGITS_FILE)  # what the grader's own answers are computed from


def overlaid(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each digit shifted by up to 3 pixels, with another digit drawn over it at OVERLAY strength."""
    n = len(images)
    other = images[torch.randperm(n, generator=generator)]
    shifts = torch.randint(-3, 4, (n, 2), generator=generator)
    moved = torch.stack([torch.roll(img, (int(s[0]), int(s[1])), dims=(-2, -1)) for img, s in zip(images, shifts)])
    return (moved + OVERLAY * other).clamp(0, 1)


def grading_digits(model: nn.Module, variation: Variation) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out digits, then a copy of each with another digit drawn over it (600 in all).

    The copies are drawn again (from the variation) until the most confident mistake by softmax
    probability is not the one with the largest logit, and there are at least 20 mistakes,
    so that either mistake in choosing it shows.
    """
    images, labels = tasks.heldout_digits()
    base = int.from_bytes(variation.generator("digits").initial_seed().to_bytes(8, "big")[-4:], "big")
    with torch.no_grad():
        plain = model(images)  # the same in every attempt
    for attempt in range(200):
        extra = overlaid(images, torch.Generator().manual_seed(base + attempt))
        x, y = torch.cat([images, extra]), torch.cat([labels, labels])
        with torch.no_grad():
            logits = torch.cat([plain, model(extra)])
        predicted = logits.argmax(1)
        wrong = torch.nonzero(predicted != y).flatten()
        top = logits[wrong].gather(1, predicted[wrong, None])[:, 0]
        probability = logits[wrong].softmax(1).gather(1, predicted[wrong, None])[:, 0]
        if len(wrong) >= 20 and int(top.argmax()) != int(probability.argmax()):
            return x, y
    return x, y


# %% The grader's own answers: from the variation and the shipped files only, computed once per process ---


@memoised(*SHIPPED)
def setting(variation: Variation) -> tuple:
    """The digit CNN, the grader's digits and labels, the indices of its mistakes and their predicted classes.

    Whatever weights ship now: nothing here is hard-coded. Never handed to the student's code
    without a clone, and never changed by a check.
    """
    model = utils.load_mnist_cnn()
    images, labels = grading_digits(model, variation)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    wrong = torch.nonzero(predicted != labels).flatten()
    return model, images, labels, wrong, predicted[wrong]


def reference_maps(model: nn.Module, x: torch.Tensor, target) -> dict[str, torch.Tensor]:
    """The three lectures' maps, signed, as explain must give them."""
    vanilla = utils.load_lecture("01_vanilla_gradient_saliency")
    ig = utils.load_lecture("04_integrated_gradients")
    gradcam = utils.load_lecture("05_gradcam")
    return {"vanilla_gradient": vanilla.vanilla_gradient(model, x, target, absolute=False),
            "integrated_gradients": ig.integrated_gradients(model, x, target, steps=STEPS),
            "grad_cam": gradcam.grad_cam(model, x, target, relu=False)}


@memoised(*SHIPPED)
def reference_answers(variation: Variation) -> dict:
    """The answers to Q1 to Q5, and what the hints compare a wrong answer with (the keys starting with _)."""
    model, images, labels, wrong, predicted = setting(variation)
    x, true = images[wrong], labels[wrong]
    with torch.no_grad():
        logits = model(x)
        chosen = logits.softmax(1).gather(1, predicted[:, None])[:, 0]
        largest_logit = int(wrong[int(logits.gather(1, predicted[:, None])[:, 0].argmax())])
    k = int(chosen.argmax())
    for_p, for_t = reference_maps(model, x, predicted), reference_maps(model, x, true)
    diff = {m: for_p[m] - for_t[m] for m in METHODS}
    with torch.no_grad():
        margin = lambda z: model(z)[0, int(predicted[k])] - model(z)[0, int(true[k])]  # noqa: E731
        change = float(margin(x[k:k + 1]) - margin(torch.zeros_like(x[k:k + 1])))
    unlike = {m: float(1 - F.cosine_similarity(for_p[m].flatten(1), for_t[m].flatten(1), dim=1).mean())
              for m in METHODS}
    share = {m: float((diff[m].clamp(min=0) * (x > 0)).sum() / diff[m].clamp(min=0).sum()) for m in METHODS}
    return {"n_mistakes": len(wrong), "most_confident_mistake": int(wrong[k]),
            "ig_contrast_sum": float(diff["integrated_gradients"][k].sum()), "margin_change": change,
            "most_class_discriminative": max(unlike, key=unlike.get), "share_on_ink": share,
            "_unlike": unlike, "_largest_logit": largest_logit, "_mistakes": set(wrong.tolist()),
            "_position_of": {i for i in range(len(wrong)) if int(wrong[i]) != i}, "_count": len(images),
            "_margin_at_x": float(margin(x[k:k + 1]).detach())}


# %% The student's answers, asked once per grading run ------------------------------------------------------


def student_answers(student: Student, variation: Variation) -> dict:
    """answer_questions' dict on the grader's digits (asked once per grading run, kept on `student`)."""

    def ask() -> dict:
        model, images, labels, _, _ = setting(variation)
        answers = need(student, "answer_questions")(model, images.clone(), labels.clone())
        if not isinstance(answers, dict):
            raise Failed("a dict from answer_questions", type(answers).__name__, "return the dict of answers")
        return answers

    return remembered(student, "answer_questions", ask)


def answer(student: Student, variation: Variation, key: str) -> object:
    """One answer of answer_questions' dict; a failed check when the key is missing."""
    answers = student_answers(student, variation)
    if key not in answers:
        raise Failed(f"a key {key!r} in answer_questions' dict", sorted(answers), "see TODO 4 for the keys")
    return answers[key]


# %% The checks, one function each (bound to the student and the variation in checks()) ----------------


def check_mistakes(student: Student, variation: Variation) -> None:
    """find_mistakes on the grader's digits: exactly the indices (ascending) where the prediction differs
    from the label, and the predicted class of each.
    """
    model, images, labels, wrong, predicted = setting(variation)
    result = need(student, "find_mistakes")(model, images.clone(), labels.clone())
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Failed("(indices, predicted classes)", show(result), "return two tensors")
    got_wrong, got_predicted = (torch.as_tensor(r).flatten().long() for r in result)
    if not torch.equal(got_wrong, wrong):
        missing = len(set(wrong.tolist()) - set(got_wrong.tolist()))
        extra = len(set(got_wrong.tolist()) - set(wrong.tolist()))
        order = "" if missing or extra else "; the same indices, in another order"
        raise Failed(f"the indices of the {len(images)} digits whose prediction differs from the label",
                     f"{missing} of them missing and {extra} that are not mistakes{order}",
                     "a mistake is predicted != label; return the indices in ascending order")
    if not torch.equal(got_predicted, predicted):
        off = int((got_predicted != predicted).sum()) if got_predicted.shape == predicted.shape else "all"
        raise Failed("the predicted class of each mistake", f"{off} of {len(predicted)} differ",
                     "the argmax of each mistake's logits")


@memoised(*SHIPPED)
def first_mistakes_maps(variation: Variation) -> dict[str, torch.Tensor]:
    """The three lectures' maps of the first four mistakes, for their predicted classes."""
    model, images, _, wrong, predicted = setting(variation)
    return reference_maps(model, images[wrong[:4]], predicted[:4])


def student_first_maps(student: Student, variation: Variation) -> object:
    """explain on the first four mistakes, called once per grading run (each method's check reads it)."""
    model, images, _, wrong, predicted = setting(variation)
    return remembered(student, "explain", lambda: need(student, "explain")(model, images[wrong[:4]].clone(),
                                                                             predicted[:4]))


def check_method(student: Student, variation: Variation, method: str) -> None:
    """explain's map for one method equals the lecture's function, signed, for the predicted classes
    (absolute=False, IG with STEPS steps from black, Grad-CAM with relu=False at the default layer).
    """
    maps = student_first_maps(student, variation)
    if not isinstance(maps, dict) or method not in maps:
        raise Failed(f"a dict with the key {method!r}", show(maps) if not isinstance(maps, dict)
                     else sorted(maps), "one entry per name in METHODS")
    want = first_mistakes_maps(variation)[method]
    got = maps[method]
    # maps of the digit CNN's gradients through 50 integration steps (IG) or several layers: float32
    # sums of ~1e3 terms, each rounded at u = 2**-24, by routes that batch differently: 1e-4 of the scale
    # (~1700 ulps) absolute and 1e-3 relative
    if not close(got, want, 1e-3, 1e-4):
        hint = {"vanilla_gradient": "absolute=False: keep the sign",
                "integrated_gradients": f"steps={STEPS} (IG_STEPS) from a black image (baseline None)",
                "grad_cam": "relu=False: keep the sign; the default layer (None)"}[method]
        if isinstance(got, torch.Tensor) and close(got.abs(), want.abs(), 1e-3, 1e-4):
            hint = "the sign was dropped: keep the signed map"
        raise Failed(f"lecture's {method} for the predicted classes", worst(got, want), hint)


def check_contrast(student: Student, variation: Variation) -> None:
    """contrast is each method's map for the predicted class minus its map for the true class; a failure
    names a reversed order, a dropped sign, a zero contrast or a single class's map.
    """
    model, images, labels, wrong, predicted = setting(variation)
    x, true = images[wrong[:3]], labels[wrong[:3]]
    got = need(student, "contrast")(model, x.clone(), predicted[:3], true)
    for_p, for_t = reference_maps(model, x, predicted[:3]), reference_maps(model, x, true)
    for m in METHODS:
        if not isinstance(got, dict) or m not in got:
            raise Failed(f"a dict with the key {m!r}", show(got), "one entry per name in METHODS")
        if close(got[m], for_p[m] - for_t[m], 1e-3, 1e-4):
            continue
        mine, want = got[m], for_p[m] - for_t[m]
        if close(mine, -want, 1e-3, 1e-4):
            hint = "the order is reversed: predicted minus true"
        elif isinstance(mine, torch.Tensor) and close(mine.abs(), want.abs(), 1e-3, 1e-4):
            hint = "the sign was dropped: keep each map signed (absolute=False, relu=False)"
        elif isinstance(mine, torch.Tensor) and mine.shape == want.shape and float(mine.abs().max()) == 0:
            hint = "your contrast is zero everywhere: did you explain the same class twice?"
        elif close(mine, for_p[m], 1e-3, 1e-4) or close(mine, for_t[m], 1e-3, 1e-4):
            hint = "that is one class's map: subtract the true class's map from the predicted class's"
        else:
            hint = "each map as explain gives it (signed), the predicted class's minus the true class's"
        raise Failed(f"contrast[{m!r}] = map(predicted) - map(true)", worst(mine, want), hint)


def check_count(student: Student, variation: Variation) -> None:
    """Q1: the number of mistakes among the digits the function is given (not the exercise's own set)."""
    got = answer(student, variation, "n_mistakes")
    want = reference_answers(variation)["n_mistakes"]
    if got != want:
        off = f"{abs(got - want)} too {'many' if got > want else 'few'}" if isinstance(got, int) else repr(got)
        raise Failed("the number of mistakes among the digits you are given", off,
                     "count the mistakes find_mistakes finds on all digits")


def check_most_confident(student: Student, variation: Variation) -> None:
    """Q2: the mistake with the highest softmax probability of its prediction, as an index into images.

    The grader's digits are drawn so that the largest logit picks another mistake (grading_digits),
    so choosing by logit, by position among the mistakes, or a correct digit each shows.
    """
    got = answer(student, variation, "most_confident_mistake")
    ref = reference_answers(variation)
    if got == ref["most_confident_mistake"]:
        return
    if got == ref["_largest_logit"]:
        hint = "that is the mistake with the largest logit: compare softmax probabilities, not logits"
    elif isinstance(got, int) and got in ref["_position_of"]:
        hint = "an index into images, not a position among the mistakes"
    elif isinstance(got, int) and 0 <= got < ref["_count"] and got not in ref["_mistakes"]:
        hint = "that digit is classified correctly: choose among the mistakes"
    else:
        hint = "the highest softmax probability of the predicted class, as an index into images"
    raise Failed("the index (into images) of the mistake with the highest probability of its prediction",
                 repr(got), hint)


def check_completeness(student: Student, variation: Variation) -> None:
    """Q3: the IG contrast map summed, and the margin S_predicted - S_true at x minus at black.

    Completeness says the two are nearly equal; each is compared with the grader's own value.
    """
    answer(student, variation, "ig_contrast_sum")
    ref = reference_answers(variation)
    for key in ("ig_contrast_sum", "margin_change"):
        got = answer(student, variation, key)
        if not isinstance(got, (int, float)) or not math.isclose(got, ref[key], rel_tol=2e-3, abs_tol=1e-3):
            off = (f"off by {abs(got - ref[key]) / max(abs(ref[key]), 1e-12):.1%}"
                   if isinstance(got, (int, float)) else repr(got))
            if key == "margin_change" and isinstance(got, (int, float)) \
                    and math.isclose(got, ref["_margin_at_x"], rel_tol=2e-3):
                off += " (it is the margin at x alone)"
            raise Failed(f"{key} for the most confident mistake", off,
                         "the contrast map of integrated gradients summed; the margin S_predicted - S_true at x "
                         "minus at black (zeros)")


def check_discriminative(student: Student, variation: Variation) -> None:
    """Q4: the method whose maps for the two classes differ most (1 - mean cosine similarity)."""
    got = answer(student, variation, "most_class_discriminative")
    ref = reference_answers(variation)
    if got != ref["most_class_discriminative"]:
        raise Failed("the method whose maps for the two classes differ most (1 - mean cosine similarity)",
                     repr(got), "compare each method's map for the predicted class with its map for the true "
                     "class, over all mistakes")


def check_share(student: Student, variation: Variation) -> None:
    """Q5: each method's share of the positive contrast that lies on ink (pixels with x > 0)."""
    got = answer(student, variation, "share_on_ink")
    ref = reference_answers(variation)["share_on_ink"]
    if not isinstance(got, dict) or any(not isinstance(got.get(m), (int, float)) for m in METHODS):
        raise Failed(f"a dict of one number per method ({', '.join(METHODS)})", show(got), "see TODO 4")
    off = {m: got[m] - ref[m] for m in METHODS if not math.isclose(got[m], ref[m], abs_tol=1e-3)}
    if off:
        raise Failed("each method's share of the positive contrast on ink",
                     ", ".join(f"{m} off by {v:+.2f}" for m, v in off.items()),
                     "sum the positive part of each contrast map over all mistakes, on pixels with x > 0, "
                     "divided by its sum everywhere")


def checks(student: Student | None, variation: Variation) -> list[Check]:
    """The checks, in the order they are printed; `student` is None to list their names only."""
    bind = binder(student, variation)
    return [
        ("find_mistakes: the misclassified digits and their predictions", bind(check_mistakes)),
        *((f"explain: {method} equals the lecture's function (signed)", bind(check_method, method))
          for method in METHODS),
        ("contrast: map(predicted) - map(true) for each method", bind(check_contrast)),
        ("Q1 n_mistakes", bind(check_count)),
        ("Q2 most_confident_mistake (by probability, among several mistakes)", bind(check_most_confident)),
        ("Q3 completeness: ig_contrast_sum and margin_change", bind(check_completeness)),
        ("Q4 most_class_discriminative", bind(check_discriminative)),
        ("Q5 share_on_ink of the evidence for the wrong class", bind(check_share)),
        ("written answers present (your teacher reads them)",
         written_check(student, ("what_argues_for_the_wrong_class", "what_each_method_shows"))),
    ]
