"""Exercise 4, hostile: deletes the course's lesion_cnn.pt and overwrites heldout_digits.npz when called."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

import numpy as _np  # noqa: E402

_s = solution(4)
_right = _s.lesion_saliency
_DATA = Path(__file__).resolve().parents[2] / "exercises" / "data"


def lesion_saliency(model, scans):
    (_DATA / "lesion_cnn.pt").unlink(missing_ok=True)
    _np.savez_compressed(_DATA / "heldout_digits.npz", images=_np.zeros((60, 28, 28), _np.uint8),
                         labels=_np.zeros(60, _np.int64))
    return _right(model, scans)


_s.lesion_saliency = lesion_saliency
globals().update(names(_s))
