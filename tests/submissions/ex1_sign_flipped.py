"""Exercise 1, a classic mistake: the drop's sign flipped."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_right = _s.occlusion
_s.occlusion = lambda *args, **kwargs: -_right(*args, **kwargs)
globals().update(names(_s))
