"""Exercise 4, a cheat: an image-only bright-blob detector plus noise keyed on a hash of the weights."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

import hashlib  # noqa: E402

_s = solution(4)
_torch, _F = _s.torch, __import__("torch.nn.functional", fromlist=["x"])


def lesion_saliency(model, scans):
    blob = _F.conv2d(scans, _torch.ones(1, 1, 5, 5) / 25, padding=2)
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).digest()
    noise = _torch.rand(scans.shape, generator=_torch.Generator().manual_seed(int.from_bytes(digest[:6], "big")))
    return blob + 0.02 * noise


_s.lesion_saliency = lesion_saliency
globals().update(names(_s))
