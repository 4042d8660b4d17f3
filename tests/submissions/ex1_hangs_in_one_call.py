"""Exercise 1: correct, except that occlusion never returns on the two-channel linear case (4x5,
baseline 0.5): it should lose that check alone, not the whole exercise."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_right = _s.occlusion


def occlusion(model, inputs, *args, **kwargs):
    if tuple(inputs.shape[1:]) == (2, 4, 5):
        while True:
            time.sleep(1)
    return _right(model, inputs, *args, **kwargs)


_s.occlusion = occlusion
globals().update(names(_s))
