"""The instructor notes' numbers, computed now from the shipped models and data (grade.py --notes).

exercises/README.md quotes this text between its `notes` markers, and tests/test_exercises.py
fails when the two disagree, or when the README's prose has a measured number this text lacks.
"""
from __future__ import annotations

import importlib.util
import sys

import torch

from grading.guard import EXERCISES

import tasks  # noqa: E402
import utils  # noqa: E402


def solution(exercise: int):
    name = {2: "02_misclassified.py", 3: "03_evaluation_protocol.py", 4: "04_domain_model.py",
            5: "05_find_the_shortcut.py"}[exercise]
    spec = importlib.util.spec_from_file_location(f"notes_solution_{exercise}", EXERCISES / "solutions" / name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def exercise_2() -> list[str]:
    s = solution(2)
    model = utils.load_mnist_cnn()
    images, labels = tasks.heldout_digits()
    answers = s.answer_questions(model, images, labels)
    wrong, _ = s.find_mistakes(model, images, labels)
    from grading import ex2, variations

    x, y = ex2.grading_digits(model, variations.Variation())
    graded_wrong, _ = s.find_mistakes(model, x, y)
    shares = ", ".join(f"{m} {v:.2f}" for m, v in answers["share_on_ink"].items())
    return [f"exercise 2, the {len(images)} held-out digits: {answers['n_mistakes']} mistakes at {wrong.tolist()}; "
            f"the most confident is digit {answers['most_confident_mistake']}",
            f"exercise 2, Q3: the integrated-gradients contrast sums to {answers['ig_contrast_sum']:.2f} against a "
            f"margin change of {answers['margin_change']:.2f}",
            f"exercise 2, Q4: {answers['most_class_discriminative']}; Q5 shares on ink: {shares}",
            f"exercise 2, the grader's {len(x)} digits (with overlaid copies): {len(graded_wrong)} mistakes"]


def exercise_3() -> list[str]:
    s = solution(3)
    model = utils.load_mnist_cnn()
    images, _ = tasks.heldout_digits()
    x = images[::30]
    exercise = s.rank_methods(model, x, None, seed=0, steps=s.STEPS)
    graded = s.rank_methods(model, 1 - x, None, seed=0, steps=10)
    return [f"exercise 3, ten digits, seed 0, {s.STEPS} steps: " + ", ".join(f"{m} {v:+.2f}" for m, v in exercise),
            "exercise 3, the grader's ten digits drawn dark on light, 10 steps: "
            + ", ".join(f"{m} {v:+.2f}" for m, v in graded)]


def exercise_4() -> list[str]:
    s = solution(4)
    from grading import ex4

    model = tasks.load_lesion_cnn()
    gradcam = utils.load_lecture("05_gradcam")
    scans, labels, masks = tasks.lesion_dataset(200, seed=tasks.LESION_EXERCISE_SEED)
    x, m = scans[labels == 1], masks[labels == 1]
    rate = lambda maps: float(s.pointing_game(maps, m).float().mean())  # noqa: E731
    rates = {"the gradient": rate(s.lesion_saliency(model, x)), "Grad-CAM": rate(gradcam.grad_cam(model, x, 1)),
             "centre": rate(s.centre_map(len(x), 32, 32)),
             "random": rate(torch.rand(len(x), 1, 32, 32, generator=torch.Generator().manual_seed(0)))}
    g_scans, g_labels, g_masks = tasks.lesion_dataset(300, seed=ex4.LESION_GRADER_SEED)
    from grading.variations import Variation

    second, wrong = ex4.second_model(Variation())
    gx, gm = g_scans[g_labels == 1], g_masks[g_labels == 1]
    second_rate = float(s.pointing_game(s.lesion_saliency(second, 1 - gx), gm).float().mean())
    return [f"exercise 4, {len(scans)} scans: accuracy {tasks.accuracy(model, scans, labels):.0%}; pointing game: "
            + ", ".join(f"{k} {v:.0%}" for k, v in rates.items()),
            f"exercise 4, the grader's second lesion model (inverted contrast, re-parametrised): the gradient "
            f"{second_rate:.0%}, accuracy {tasks.accuracy(second, 1 - g_scans, g_labels):.0%}, wrong on "
            f"{wrong:.0%} of the scans with a lesion"]


def exercise_5() -> list[str]:
    s = solution(5)
    vanilla = utils.load_lecture("01_vanilla_gradient_saliency")
    lines = []
    for seed, corner in ((0, "top_left"), (11, "top_left")):
        mask = tasks.marker_mask(corner)
        images, _ = tasks.bars_dataset(100, seed=seed + 50, marker="all", corner=corner)
        parts = []
        for shortcut in (True, False):
            model = tasks.train_bars_cnn(shortcut, seed=seed, corner=corner)
            gradient = vanilla.vanilla_gradient(model, images)
            zero = float((gradient.flatten(1).abs().amax(1) == 0).float().mean())
            parts.append(f"{'shortcut' if shortcut else 'unbiased'}: SmoothGrad share "
                         f"{float(s.marker_share(s.explain(model, images), mask).mean()):.2f}, gradient share "
                         f"{float(s.marker_share(gradient, mask).mean()):.2f} ({zero:.0%} of its maps zero)")
        lines.append(f"exercise 5, seed {seed}, marker {corner.replace('_', ' ')}: " + "; ".join(parts))
    lines.append(f"exercise 5: the solution's threshold {s.SHARE_THRESHOLD}; the marker covers "
                 f"{int(tasks.marker_mask('top_left').sum())} of {tasks.SHORTCUT_SIZE ** 2} pixels")
    return lines


def thresholds() -> list[str]:
    from grading import ex4, student

    return [f"the grader's thresholds: exercise 4's pointing game at least {ex4.LESION_PASS_RATE:.0%}, its maps' "
            f"correlation with random weights below {ex4.MODEL_DEPENDENCE}; the time limit "
            f"{student.TIME_LIMIT:.0f} s per exercise; output capped at {student.OUTPUT_CAP // 1_000_000} MB"]


def text() -> str:
    """The notes, one line per measurement."""
    torch.manual_seed(0)
    return "\n".join(exercise_2() + exercise_3() + exercise_4() + exercise_5() + thresholds())
