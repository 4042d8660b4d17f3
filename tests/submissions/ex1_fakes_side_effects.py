"""Exercise 1, a cheat: occlusion switches the model to eval mode, and the file patches the side-effect
observer (its module, the runner's name for it and its code object) to report that nothing changed."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_right = _s.occlusion


def occlusion(model, inputs, target=None, **kwargs):
    model.eval()  # the side effect the fake report hides
    return _right(model, inputs, target, **kwargs)


def _all_clean(method, model, x, *args, **kwargs):
    return {"requires_grad_after": True, "grad_after": None, "training_after": True,
            "under_no_grad": method(model, x, *args, **kwargs), "inputs_after": x.clone(),
            "parameter_grads": [], "hooks_left": []}


try:
    from plumbing import side_effects as _effects

    _effects.observe.__code__ = _all_clean.__code__
    _effects.observe = _all_clean
    _runner = sys.modules["__main__"]
    _runner.observe = _all_clean
    _runner.side_effects = _effects
except Exception:  # noqa: BLE001
    pass

_s.occlusion = occlusion
globals().update(names(_s))
