"""Exercise 1, a classic mistake: hiding with 0 whatever the baseline."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_right = _s.occlusion
_s.occlusion = lambda model, inputs, target=None, window=3, stride=1, baseline=0.0: _right(model, inputs, target,
                                                                                          window, stride, 0.0)
globals().update(names(_s))
