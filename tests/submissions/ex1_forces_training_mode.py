"""Exercise 1, a classic mistake: occlusion calls model.eval() for its forward passes and model.train()
at the end, so a model handed over in eval mode comes back in training mode."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_right = _s.occlusion


def occlusion(model, inputs, *args, **kwargs):
    model.eval()
    try:
        return _right(model, inputs, *args, **kwargs)
    finally:
        model.train()


_s.occlusion = occlusion
globals().update(names(_s))
