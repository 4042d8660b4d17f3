"""Exercise 1: a result on the meta device (torch's own NotImplementedError is no TODO)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_right = _s.occlusion
_s.occlusion = lambda *args, **kwargs: _right(*args, **kwargs).to("meta") + 0
globals().update(names(_s))
