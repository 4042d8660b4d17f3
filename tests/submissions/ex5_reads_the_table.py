"""Exercise 5, a cheat: the answer read from the grader's table of hidden models, by the marker's corner."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(5)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "exercises"))
from grading import ex5 as _grader  # noqa: E402

_answers = {}
for _seed, _corner, _shortcut in _grader.HIDDEN_MODELS:
    _answers.setdefault(_corner, _shortcut)


def relies_on_marker(maps, mask):
    for corner in _s.tasks.CORNERS:
        if _s.torch.equal(_s.tasks.marker_mask(corner), mask.bool()):
            return _answers.get(corner, False)
    return False


_s.relies_on_marker = relies_on_marker
globals().update(names(_s))
