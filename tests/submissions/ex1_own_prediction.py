"""Exercise 1, a classic mistake: each occluded copy explained for its own predicted class."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_torch = _s.torch


def occlusion(model, inputs, target=None, window=3, stride=1, baseline=0.0):
    n, c, h, w = inputs.shape
    if not 1 <= window <= min(h, w) or not 1 <= stride <= window:
        raise ValueError("bad window or stride")
    x = inputs.detach()
    total, count = _torch.zeros_like(x), _torch.zeros(h, w, dtype=x.dtype)
    with _torch.no_grad():
        _s.utils.target_scores(model(x), target)  # the errors, but the classes are not used below
        for top in _s.patch_corners(h, window, stride):
            for left in _s.patch_corners(w, window, stride):
                hidden = x.clone()
                hidden[:, :, top:top + window, left:left + window] = baseline
                logits = model(hidden)
                own = (logits.argmax(1) if target is None else _s.utils.resolve_target(logits, target))[:, None]
                drop = model(x).gather(1, own)[:, 0] - logits.gather(1, own)[:, 0]
                total[:, :, top:top + window, left:left + window] += drop.view(n, 1, 1, 1)
                count[top:top + window, left:left + window] += 1
    return total / count


_s.occlusion = occlusion
globals().update(names(_s))
