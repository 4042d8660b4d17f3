"""Exercise 1, a classic mistake: range(0, size - window + 1, stride), so the last patch is missing."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_s.patch_corners = lambda size, window, stride: list(range(0, size - window + 1, stride))
globals().update(names(_s))
