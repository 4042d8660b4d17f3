"""Exercise 1, a classic mistake: the drops summed, not averaged over the covering patches."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(1)
_torch, _utils = _s.torch, _s.utils


def occlusion(model, inputs, target=None, window=_s.WINDOW if hasattr(_s, "WINDOW") else 3, stride=1, baseline=0.0):
    n, c, h, w = inputs.shape
    if not 1 <= window <= min(h, w) or not 1 <= stride <= window:
        raise ValueError("bad window or stride")
    x = inputs.detach()
    total = _torch.zeros_like(x)
    with _torch.no_grad():
        scores, classes = _utils.target_scores(model(x), target)
        for top in _s.patch_corners(h, window, stride):
            for left in _s.patch_corners(w, window, stride):
                hidden = x.clone()
                hidden[:, :, top:top + window, left:left + window] = baseline
                drop = scores - model(hidden).gather(1, classes[:, None]).squeeze(1)
                total[:, :, top:top + window, left:left + window] += drop.view(n, 1, 1, 1)
    return total


_s.occlusion = occlusion
globals().update(names(_s))
