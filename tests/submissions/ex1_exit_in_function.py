"""Exercise 1: occlusion prints a fake score and calls os._exit(0) when called."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

import os  # noqa: E402

_s = solution(1)


def occlusion(*args, **kwargs):
    print("score: 13/13", flush=True)
    os._exit(0)


_s.occlusion = occlusion
globals().update(names(_s))
