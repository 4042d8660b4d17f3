"""Exercise 3, copied: rank_methods returns the shipped variation's ranking and gaps as constants.

They are what the solution computes on the grader's ten digits of the shipped variation (no
--seed: seed 0, 10 steps), pasted here; every other function is the solution's. On the
shipped variation only the check that another seed changes the chance score fails; an
instructor's --seed draws other digits, another seed and another number of steps, so the
constants no longer match.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(3)

COPIED = [("grad_cam", 0.11446528136730194), ("smoothgrad", 0.046726565808057785),
          ("vanilla_gradient", 0.027427364140748978), ("chance", -0.018688712269067764)]


def rank_methods(model, inputs, target=None, seed=0, steps=_s.STEPS):
    return list(COPIED)


_s.rank_methods = rank_methods
globals().update(names(_s))
