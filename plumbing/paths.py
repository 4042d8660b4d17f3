"""Where the course keeps its files: every path comes from this file's place, never the working directory."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the course folder, the one with the nine lectures
DATA_DIR = ROOT / "data"
OUTPUT_DIR = ROOT / "outputs"
PHOTOS = ["cat_chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "grace_hopper.jpg"]
COMPOSITE = "cat_and_coffee.png"  # the cat beside the espresso cup, for lectures 5 to 7
MNIST_WEIGHTS = DATA_DIR / "mnist_cnn.pt"
DIGITS_DIR = DATA_DIR / "digits"
MNIST_DIR = DATA_DIR / "mnist"  # where torchvision.datasets.MNIST puts the real data set
