"""Exercise 1, a classic mistake: a negative target counted from the end (target=-1 taken as the last
class), as Python's indexing would, instead of refused as every method of the course does."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_right = _s.occlusion


def occlusion(model, inputs, target=None, *args, **kwargs):
    if isinstance(target, int) and target < 0:
        with _s.torch.no_grad():
            target = model(inputs.detach()).shape[1] + target
    return _right(model, inputs, target, *args, **kwargs)


_s.occlusion = occlusion
globals().update(names(_s))
