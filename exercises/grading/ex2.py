"""Exercise 2 checks: the digit CNN's mistakes, explained with three lectures' methods."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from grading.harness import (Check, Failed, GradingCNN, LinearTwoClass, ConstantModel, Student, SumModel, Variation,
                             WeightedSum, cached, close, expect_value_error, need, one_line, show,
                             side_effect_check, worst, written_check)

import tasks  # noqa: E402
import utils  # noqa: E402

def checks(student: Student | None, variation: Variation) -> list[Check]:
    """The checks, in the order they are printed; `student` is None to list their names only."""
    vanilla = utils.load_lecture("01_vanilla_gradient_saliency")
    ig = utils.load_lecture("04_integrated_gradients")
    gradcam = utils.load_lecture("05_gradcam")
    methods = ("vanilla_gradient", "integrated_gradients", "grad_cam")
    steps = 32  # the exercise's IG_STEPS

    @cached
    def setting():
        model = utils.load_mnist_cnn()  # whatever weights ship now: nothing below is hard-coded
        images, labels = tasks.heldout_digits()
        with torch.no_grad():
            predicted = model(images).argmax(1)
        wrong = torch.nonzero(predicted != labels).flatten()
        return model, images, labels, wrong, predicted[wrong]

    def reference_maps(model, x, target) -> dict[str, torch.Tensor]:
        return {"vanilla_gradient": vanilla.vanilla_gradient(model, x, target, absolute=False),
                "integrated_gradients": ig.integrated_gradients(model, x, target, steps=steps),
                "grad_cam": gradcam.grad_cam(model, x, target, relu=False)}

    @cached
    def reference_answers() -> dict:
        model, images, labels, wrong, predicted = setting()
        x, true = images[wrong], labels[wrong]
        with torch.no_grad():
            chosen = model(x).softmax(1).gather(1, predicted[:, None])[:, 0]
        k = int(chosen.argmax())
        for_p, for_t = reference_maps(model, x, predicted), reference_maps(model, x, true)
        diff = {m: for_p[m] - for_t[m] for m in methods}
        with torch.no_grad():
            margin = lambda z: model(z)[0, int(predicted[k])] - model(z)[0, int(true[k])]  # noqa: E731
            change = float(margin(x[k:k + 1]) - margin(torch.zeros_like(x[k:k + 1])))
        unlike = {m: float(1 - F.cosine_similarity(for_p[m].flatten(1), for_t[m].flatten(1), dim=1).mean())
                  for m in methods}
        share = {m: float((diff[m].clamp(min=0) * (x > 0)).sum() / diff[m].clamp(min=0).sum()) for m in methods}
        return {"n_mistakes": len(wrong), "most_confident_mistake": int(wrong[k]),
                "ig_contrast_sum": float(diff["integrated_gradients"][k].sum()), "margin_change": change,
                "most_class_discriminative": max(unlike, key=unlike.get), "share_on_ink": share,
                "_unlike": unlike}

    @cached
    def student_answers() -> dict:
        model, images, labels, _, _ = setting()
        answers = need(student, "answer_questions")(model, images.clone(), labels.clone())
        if not isinstance(answers, dict):
            raise Failed("a dict from answer_questions", type(answers).__name__, "return the dict of answers")
        return answers

    def answer(key: str) -> object:
        answers = student_answers()
        if key not in answers:
            raise Failed(f"a key {key!r} in answer_questions' dict", sorted(answers), "see TODO 4 for the keys")
        return answers[key]

    def check_mistakes() -> None:
        model, images, labels, wrong, predicted = setting()
        result = need(student, "find_mistakes")(model, images.clone(), labels.clone())
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Failed("(indices, predicted classes)", show(result), "return two tensors")
        got_wrong, got_predicted = (torch.as_tensor(r).flatten().long() for r in result)
        if not torch.equal(got_wrong, wrong):
            raise Failed(f"{len(wrong)} mistakes at {show(wrong)}", show(got_wrong),
                         "a mistake is predicted != label; return the indices in ascending order")
        if not torch.equal(got_predicted, predicted):
            raise Failed(f"predictions {show(predicted)}", show(got_predicted), "the argmax of each mistake's logits")

    def method_check(method: str):
        def check() -> None:
            model, images, labels, wrong, predicted = setting()
            x = images[wrong[:4]]
            maps = need(student, "explain")(model, x.clone(), predicted[:4])
            if not isinstance(maps, dict) or method not in maps:
                raise Failed(f"a dict with the key {method!r}", show(maps) if not isinstance(maps, dict)
                             else sorted(maps), "one entry per name in METHODS")
            want = reference_maps(model, x, predicted[:4])[method]
            got = maps[method]
            if not close(got, want, 1e-3, 1e-4):
                hint = {"vanilla_gradient": "absolute=False: keep the sign",
                        "integrated_gradients": f"steps={steps} (IG_STEPS) from a black image (baseline None)",
                        "grad_cam": "relu=False: keep the sign; the default layer (None)"}[method]
                if isinstance(got, torch.Tensor) and close(got.abs(), want.abs(), 1e-3, 1e-4):
                    hint = "the sign was dropped: keep the signed map"
                raise Failed(f"lecture's {method} for the predicted classes", worst(got, want), hint)
        return f"explain: {method} equals the lecture's function (signed)", check

    def check_contrast() -> None:
        model, images, labels, wrong, predicted = setting()
        x, true = images[wrong[:3]], labels[wrong[:3]]
        got = need(student, "contrast")(model, x.clone(), predicted[:3], true)
        for_p, for_t = reference_maps(model, x, predicted[:3]), reference_maps(model, x, true)
        for m in methods:
            if not isinstance(got, dict) or m not in got or not close(got[m], for_p[m] - for_t[m], 1e-3, 1e-4):
                raise Failed(f"contrast[{m!r}] = map(predicted) - map(true)",
                             worst(got[m], for_p[m] - for_t[m]) if isinstance(got, dict) and m in got else show(got),
                             "predicted minus true, in that order")

    def exact(key: str, hint: str):
        def check() -> None:
            got = answer(key)  # the student's first: an unfinished answer costs no reference work
            want = reference_answers()[key]
            if got != want:
                raise Failed(f"{key} = {want!r}", repr(got), hint)
        return check

    def check_completeness() -> None:
        answer("ig_contrast_sum")
        ref = reference_answers()
        for key in ("ig_contrast_sum", "margin_change"):
            got = answer(key)
            if not isinstance(got, (int, float)) or not math.isclose(got, ref[key], rel_tol=2e-3, abs_tol=1e-3):
                raise Failed(f"{key} = {ref[key]:.4f}", repr(got),
                             "for the most confident mistake; the margin is S_predicted - S_true, black = zeros")

    def check_discriminative() -> None:
        got = answer("most_class_discriminative")
        ref = reference_answers()
        if got != ref["most_class_discriminative"]:
            scores = ", ".join(f"{m} {v:.3f}" for m, v in ref["_unlike"].items())
            raise Failed(f"{ref['most_class_discriminative']!r} (1 - mean cosine: {scores})", repr(got),
                         "compare each method's map for the predicted class with its map for the true class")

    def check_share() -> None:
        got = answer("share_on_ink")
        ref = reference_answers()["share_on_ink"]
        if not isinstance(got, dict) or any(not isinstance(got.get(m), (int, float))
                                            or not math.isclose(got[m], ref[m], abs_tol=1e-3) for m in methods):
            raise Failed({m: round(v, 4) for m, v in ref.items()}, got,
                         "sum the positive part of each contrast map over all mistakes, on pixels with x > 0, "
                         "divided by its sum everywhere")

    return [
        ("find_mistakes: the misclassified digits and their predictions", check_mistakes),
        *(method_check(m) for m in methods),
        ("contrast: map(predicted) - map(true) for each method", check_contrast),
        ("Q1 n_mistakes", exact("n_mistakes", "count the mistakes find_mistakes finds on all digits")),
        ("Q2 most_confident_mistake", exact("most_confident_mistake",
                                            "the highest softmax probability of the predicted class; "
                                            "an index into images, not into the mistakes")),
        ("Q3 completeness: ig_contrast_sum and margin_change", check_completeness),
        ("Q4 most_class_discriminative", check_discriminative),
        ("Q5 share_on_ink of the evidence for the wrong class", check_share),
        ("written answers present (your teacher reads them)",
         written_check(student, ("what_argues_for_the_wrong_class", "what_each_method_shows"))),
    ]

