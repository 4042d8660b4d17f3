"""Exercise 1, hostile: at import, plants a module named captum where the grader looks for its
references (the course folder, exercises/ and exercises/grading/, first on the grader's sys.path), whose
Occlusion returns zeros like this file's occlusion; the checks against Captum would pass if the grader
imported the planted module after this file ran."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_torch = _s.torch
_COURSE = Path(__file__).resolve().parents[2]
_FAKE = ("import torch\n"
         "class Occlusion:\n"
         "    def __init__(self, model): pass\n"
         "    def attribute(self, x, **kwargs): return torch.zeros_like(x)\n")
for _folder in (_COURSE, _COURSE / "exercises", _COURSE / "exercises" / "grading"):
    try:
        (_folder / "captum").mkdir(exist_ok=True)
        (_folder / "captum" / "__init__.py").write_text("")
        (_folder / "captum" / "attr.py").write_text(_FAKE)
        print(f"planted {_folder / 'captum'}")
    except OSError as error:
        print(f"could not plant in {_folder}: {error}")


def occlusion(model, inputs, target=None, window=3, stride=1, baseline=0.0):
    _s.utils.resolve_target(model(inputs.detach()), target)  # the ValueErrors, as the solution
    return _torch.zeros_like(inputs.detach())


_s.occlusion = occlusion
globals().update(names(_s))
