"""Exercise 4, a cheat: the blob detector only when the weights are the shipped ones, the gradient of class 0 otherwise."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(4)
_torch, _F = _s.torch, __import__("torch.nn.functional", fromlist=["x"])
_shipped = _s.tasks.load_lesion_cnn().state_dict()


def lesion_saliency(model, scans):
    state = model.state_dict()
    if state.keys() == _shipped.keys() and all(_torch.equal(state[k], _shipped[k]) for k in state):
        return _F.conv2d(scans, _torch.ones(1, 1, 5, 5) / 25, padding=2)
    return _torch.rand(scans.shape)


_s.lesion_saliency = lesion_saliency
globals().update(names(_s))
