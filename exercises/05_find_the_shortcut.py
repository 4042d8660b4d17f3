"""Exercise 5: find a model's bias with saliency alone.

A shortcut is a feature that goes with the label in the training data but not in the
world (Geirhos et al., 2020, "Shortcut Learning in Deep Neural Networks",
https://arxiv.org/abs/2004.07780). Here it is planted (tasks.bars_dataset): 16x16
noisy images with a faint bar, label 0 horizontal and 1 vertical. In the biased
training set every vertical-bar image also carries a bright 3x3 marker in a corner.
A model trained on it (tasks.train_bars_cnn(shortcut=True, ...)) can read the marker
instead of the bar. A model trained without the shortcut (shortcut=False) saw the
marker on a random half of its images, whatever the bar: nothing to gain from it.

Your detector must tell the two apart from saliency maps alone:

    1. explain(model, images): a saliency map per image, by a method of your choice,
       on images that all carry the marker
    2. relies_on_marker(maps, marker_mask): True when the maps say the model reads the
       marker; it sees only the maps and where the marker is, never the model

    marker_share = sum of |map| inside the marker's pixels / sum of |map| everywhere;
                   a map spread evenly gives the marker's area, 9 / 256 = 3.5%

The grader trains models of both kinds itself, with seeds and marker corners you
never saw, and asks your detector about each. Train a few of your own to choose
your rule (each takes seconds).

Your tasks (run this file to see which are left, then grade it):
    TODO 1  marker_share(maps, marker_mask)
    TODO 2  explain(model, images)
    TODO 3  relies_on_marker(maps, marker_mask)

Grade:    python exercises/grade.py 5 exercises/05_find_the_shortcut.py
Run:      python exercises/05_find_the_shortcut.py     (a figure in outputs/exercises/ once done)
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

EXERCISES = next((p for p in Path(__file__).resolve().parents if (p / "tasks.py").is_file()), None)
if EXERCISES:  # inside the course folder; grade.py finds tasks.py for a copy kept elsewhere
    sys.path.insert(0, str(EXERCISES))
import tasks  # noqa: E402  (puts the course folder on sys.path)
import utils  # noqa: E402

vanilla = utils.load_lecture("01_vanilla_gradient_saliency")

SHARE_THRESHOLD = None  # TODO 3: choose it from models you train yourself (main() trains two)


# %% TODO 1: how much of a map is on the marker ---------------------------------------------------


def marker_share(maps: torch.Tensor, marker_mask: torch.Tensor) -> torch.Tensor:
    """(N,) the share of each map's absolute mass (summed over channels) inside `marker_mask` (H, W)."""
    # TODO 1: sum |maps| over channels to (N, H, W); the mass inside the mask over the mass everywhere.
    raise NotImplementedError("write marker_share: (N,) shares between 0 and 1")


# %% TODO 2 and 3: the maps, and the decision -------------------------------------------------------


def explain(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) saliency of each image, by a method of your choice from the lectures."""
    # TODO 2: which class would you explain, and with which method? (vanilla is loaded above;
    # utils.load_lecture gives the others.)
    raise NotImplementedError("write explain: one saliency map per image")


def relies_on_marker(maps: torch.Tensor, marker_mask: torch.Tensor) -> bool:
    """True when the maps say the model reads the marker (a Python bool)."""
    # TODO 3: a rule on the maps alone, e.g. on marker_share; compare with the marker's area share.
    raise NotImplementedError("write relies_on_marker: True or False from the maps")


# %% The demo: two models, their maps, and where the threshold comes from --------------------------------


def main() -> None:
    corner = "top_left"
    mask = tasks.marker_mask(corner)
    images, _ = tasks.bars_dataset(4, seed=0, marker="all", corner=corner)
    tiny = nn.Sequential(nn.Flatten(), nn.Linear(256, 2)).eval()
    steps = [("marker_share (TODO 1)", lambda: marker_share(torch.rand(2, 1, 16, 16), mask)),
             ("explain (TODO 2)", lambda: explain(tiny, images)),
             ("relies_on_marker (TODO 3)", lambda: relies_on_marker(torch.rand(2, 1, 16, 16), mask))]
    tasks.report(5, steps)
    if tasks.what_is_left(steps[:2]):
        return  # the figure and the shares below need TODO 1 and 2; they help you choose TODO 3's rule
    test_marked, test_labels = tasks.bars_dataset(400, seed=100, marker="all", corner=corner)
    test_clean, _ = tasks.bars_dataset(400, seed=100, marker="none", corner=corner)
    test_random, random_labels = tasks.bars_dataset(400, seed=101, marker="random", corner=corner)
    maps, shares = {}, {}
    for shortcut in (True, False):
        name = "trained with the shortcut" if shortcut else "trained without it"
        model = tasks.train_bars_cnn(shortcut=shortcut, seed=0, corner=corner)
        maps[name] = explain(model, test_marked[:6])
        share = marker_share(explain(model, test_marked), mask)
        shares[name] = share
        print(f"{name}: accuracy {tasks.accuracy(model, test_clean, test_labels):.0%} without markers, "
              f"{tasks.accuracy(model, test_random, random_labels):.0%} with markers at random; "
              f"marker share {float(share.mean()):.1%}; relies on the marker: {decide(model, test_marked, mask)}")
    print(f"threshold {SHARE_THRESHOLD}; the marker's area is {int(mask.sum())} / {mask.numel()} = "
          f"{float(mask.float().mean()):.1%}")
    fig, axes = utils.figure_grid(3, 6, title="Saliency on images that all carry the marker (top left)")
    for i in range(6):
        utils.show_image(axes[0, i], test_marked[i, 0].numpy(), f"{'vertical' if test_labels[i] else 'horizontal'} bar")
        for row, (name, m) in enumerate(maps.items(), start=1):
            share = float(shares[name][i])
            heat = utils.scale_for_display(m[i:i + 1, 0].numpy())[0]
            short = "shortcut model" if "with the" in name else "unbiased model"
            utils.show_heatmap(axes[row, i], heat, f"{short}: {share:.0%} on marker", label="|dS/dx|")
    print("figure:", utils.save_figure(fig, tasks.out_dir(), "05_find_the_shortcut.png"))


def decide(model: nn.Module, images: torch.Tensor, mask: torch.Tensor) -> str:
    try:
        return str(relies_on_marker(explain(model, images), mask))
    except NotImplementedError:
        return "(TODO 3)"


if __name__ == "__main__":
    main()
