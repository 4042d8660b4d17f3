"""Exercise 1, hostile: 70,000 lines on stdout and stderr at import, then the solution."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

for _i in range(70_000):
    print(f"line {_i}: score: 13/13")
    print(f"error line {_i}", file=sys.stderr)
globals().update(names(solution(1)))
