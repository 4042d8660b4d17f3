"""Exercise 2, copied: answer_questions returns the shipped variation's answers as constants.

They are what the solution computes on the grader's digits of the shipped variation (no
--seed), pasted here; every other function is the solution's. On the shipped variation the
file earns every point, as a copied answer would; an instructor's --seed draws other digits
(other overlaid copies), so the constants no longer answer the questions.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(2)

COPIED = {"n_mistakes": 39, "most_confident_mistake": 496, "ig_contrast_sum": 3.2255935668945312,
          "margin_change": 3.278470754623413, "most_class_discriminative": "vanilla_gradient",
          "share_on_ink": {"vanilla_gradient": 0.7060930728912354, "integrated_gradients": 1.0,
                           "grad_cam": 0.4233141243457794}}


def answer_questions(model, images, labels):
    return {**COPIED, "share_on_ink": dict(COPIED["share_on_ink"])}


_s.answer_questions = answer_questions
globals().update(names(_s))
