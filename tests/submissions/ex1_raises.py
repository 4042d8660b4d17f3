"""Exercise 1: occlusion raises ZeroDivisionError; the other checks still run."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)


def occlusion(*args, **kwargs):
    return 1 / 0


_s.occlusion = occlusion
globals().update(names(_s))
