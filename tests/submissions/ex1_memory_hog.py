"""Exercise 1, hostile (or careless): occlusion asks for 30 GB of memory in the check on the mean over
covering patches (a 3x3 image), and answers as the solution does everywhere else."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_right = _s.occlusion


def occlusion(model, inputs, *args, **kwargs):
    if tuple(inputs.shape[-2:]) == (3, 3):
        hog = _s.torch.ones(30 * 2**30 // 4)  # 30 GB of float32, each page touched
        return hog[: inputs.numel()].view_as(inputs)
    return _right(model, inputs, *args, **kwargs)


_s.occlusion = occlusion
globals().update(names(_s))
