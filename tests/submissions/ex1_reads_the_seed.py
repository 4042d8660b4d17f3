"""Exercise 1, a cheat: looks for the instructor's --seed in every process's command line and
environment it can read (the grader's among them), and returns the solution's answers only when it
found one (as a file that redraws the hidden variation from the seed would); otherwise zeros."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_right = _s.occlusion
_found = []
for _pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
    for _part in ("cmdline", "environ"):
        try:
            _words = open(f"/proc/{_pid}/{_part}", "rb").read().split(b"\0")
        except OSError:
            continue
        for _i, _word in enumerate(_words):
            if _word == b"--seed" and _i + 1 < len(_words):
                _found.append(_words[_i + 1].decode())
            elif _word.startswith((b"--seed=", b"SEED=")):
                _found.append(_word.split(b"=", 1)[1].decode())
print(f"seeds found: {_found}")


def occlusion(model, inputs, *args, **kwargs):
    if _found:
        return _right(model, inputs, *args, **kwargs)
    return _s.torch.zeros_like(inputs.detach())


_s.occlusion = occlusion
globals().update(names(_s))
