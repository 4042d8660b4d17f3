"""Exercise 1, hostile: poisons torch and the course in its own process, then kills the process it
was forked from (the grader's fork server), as if to spoil the files graded after it."""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

import torch  # noqa: E402

import utils  # noqa: E402

_s = solution(1)
_right = _s.occlusion
torch.Tensor.sum = lambda self, *args, **kwargs: torch.zeros(())  # every later sum in this process is 0
utils.load_lecture = None


def occlusion(*args, **kwargs):
    os.kill(os.getppid(), signal.SIGKILL)
    return _right(*args, **kwargs)


_s.occlusion = occlusion
globals().update(names(_s))
