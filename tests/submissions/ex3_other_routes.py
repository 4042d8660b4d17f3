"""Exercise 3, correct by other routes: the areas by torch.trapezoid, the gap in float64, its curves one
example at a time in a loop on small batches (the gap check's). Every point is earned: the tolerances
follow float32 rounding."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(3)
_torch = _s.torch
_curve = _s.deletion_curve_blurred


def area_under_curve(curve):
    return _torch.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), dim=1)


def morf_lerf_gap(model, inputs, saliency, target=None, steps=_s.STEPS):
    heat = _s.pixel_map(saliency)
    if inputs.shape[0] > 2:  # the ranking's ten digits: vectorised, the areas in float64 (a loop is slow there)
        morf = _curve(model, inputs, heat, target, steps).double()
        lerf = _curve(model, inputs, -heat, target, steps).double()
        return (area_under_curve(lerf) - area_under_curve(morf)).float()
    gaps = []
    for i in range(inputs.shape[0]):
        if target is None or isinstance(target, int):
            one = target
        else:
            one = target[i:i + 1] if isinstance(target, _torch.Tensor) else [list(target)[i]]
        morf = _curve(model, inputs[i:i + 1], heat[i:i + 1], one, steps).double()
        lerf = _curve(model, inputs[i:i + 1], -heat[i:i + 1], one, steps).double()
        gaps.append(area_under_curve(lerf) - area_under_curve(morf))
    return _torch.cat(gaps).float()


_s.area_under_curve = area_under_curve
_s.morf_lerf_gap = morf_lerf_gap
globals().update(names(_s))
