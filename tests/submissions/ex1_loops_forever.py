"""Exercise 1, hostile: patch_corners never returns."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)


def patch_corners(size, window, stride):
    while True:
        pass


_s.patch_corners = patch_corners
globals().update(names(_s))
