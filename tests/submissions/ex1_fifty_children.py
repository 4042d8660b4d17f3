"""Exercise 1, hostile: at import, starts 50 children that sleep for five minutes (their pids go to
/tmp/saliency-grading-children.pids), then answers as the solution does."""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_pids = []
for _ in range(50):
    try:
        _pid = os.fork()
    except OSError:
        break
    if _pid == 0:
        try:
            time.sleep(300)
        finally:
            os._exit(0)
    _pids.append(_pid)
with open("/tmp/saliency-grading-children.pids", "w") as _handle:
    _handle.write(" ".join(map(str, _pids)))
globals().update(names(solution(1)))
