"""Exercise 1, a cheat: the grader's run_check replaced at import, so every check would pass."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "exercises"))
for _name in ("grade", "grading.harness"):
    try:
        _module = __import__(_name, fromlist=["x"])
        _module.run_check = lambda check: (True, f"ok    {check[0]}")
        _module.close = lambda *a, **k: True
    except Exception:  # noqa: BLE001
        pass
globals().update(names(_s))
globals()["occlusion"] = lambda *a, **k: None
globals()["patch_corners"] = lambda *a: None
