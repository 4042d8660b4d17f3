"""Exercise 4: saliency on a domain model: does it point at the lesion?

A medical-style task made by code (tasks.lesion_dataset): 32x32 "scans" with tissue
texture, bright vessel-like lines and a dark cyst; half of them also carry a lesion,
a small round bright blob. A small CNN (tasks.SmallCNN, global max pooling head)
learnt to say whether a lesion is present (about 98% on new scans); its weights ship
in exercises/data/lesion_cnn.pt (python exercises/make_exercise_data.py retrains it
in about a minute). Class 1 is "lesion".

Does a saliency map find the lesion? The pointing game (Zhang et al., 2016,
"Top-down Neural Attention by Excitation Backprop", https://arxiv.org/abs/1608.00507)
counts a hit when the map's maximum lies on the object:

    hit = the map's first maximum (flattened order) lies strictly within TOLERANCE
          pixels (Euclidean) of some pixel of the lesion mask; an empty mask is a miss
    (N, C, H, W) maps are first summed in absolute value over channels; (N, H, W) as they are

Judge a rate against baselines that know nothing: a map that always points at the
centre, and a random map. A good method on this model hits far more often.

Your tasks (run this file to see which are left, then grade it):
    TODO 1  pointing_game(saliency, mask, tolerance=TOLERANCE)
    TODO 2  centre_map(n, height, width): the baseline that points at the centre
    TODO 3  lesion_saliency(model, scans): your choice of method, explaining class 1
    TODO 4  hit_rate(model, scans, masks): your method's rate on the scans that have a lesion
    TODO 5  WRITTEN: your own words

Grade:    python exercises/grade.py 4 exercises/04_domain_model.py
Run:      python exercises/04_domain_model.py     (a figure in outputs/exercises/ once done)
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
gradcam = utils.load_lecture("05_gradcam")

TOLERANCE = 3  # pixels; a lesion's radius is 1.8 to 2.8 pixels
LESION = 1  # the class to explain


# %% TODO 1 and 2: the pointing game and a baseline ------------------------------------------------


def pointing_game(saliency: torch.Tensor, mask: torch.Tensor, tolerance: float = TOLERANCE) -> torch.Tensor:
    """(N,) bools: does the map's first maximum lie strictly within `tolerance` pixels of the mask (N, H, W)?"""
    # TODO 1: reduce the map to (N, H, W) as the header says; find each map's first maximum
    # (argmax on the flattened map); a hit is a mask pixel at a distance < tolerance from it.
    raise NotImplementedError("write pointing_game: (N,) booleans")


def centre_map(n: int, height: int, width: int) -> torch.Tensor:
    """(N, 1, H, W): positive, largest at the image's centre, falling off with the distance from it.

    Positive, because the pointing game sums absolute values: a map of -distance**2 would
    peak at the corners.
    """
    # TODO 2: any map whose first maximum is at the centre pixel ((H - 1) // 2, (W - 1) // 2).
    raise NotImplementedError("write centre_map")


# %% TODO 3 and 4: your method, and its hit rate ------------------------------------------------------


def lesion_saliency(model: nn.Module, scans: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W): where the evidence for "lesion" (class 1) is, by a method of your choice."""
    # TODO 3: use a method from the lectures (utils.load_lecture) on the model, for class LESION.
    # The grader checks that your map finds lesions on scans it draws itself, and that it
    # depends on the model (a map computed from the image alone is not an explanation).
    raise NotImplementedError("write lesion_saliency: choose a method and explain class 1")


def hit_rate(model: nn.Module, scans: torch.Tensor, masks: torch.Tensor) -> float:
    """The share of the scans with a lesion (a non-empty mask) where lesion_saliency's peak hits it."""
    # TODO 4: keep the scans whose mask is not empty, explain them, play the pointing game.
    raise NotImplementedError("write hit_rate")


# %% TODO 5: in your own words ------------------------------------------------------------------------

WRITTEN = {  # TODO 5: a few sentences each, after running this file
    "why_this_method": "",
    "what_the_baselines_say": "",
}


# %% The demo ---------------------------------------------------------------------------------------------


def main() -> None:
    model = tasks.load_lesion_cnn()
    scans, labels, masks = tasks.lesion_dataset(200, seed=tasks.LESION_EXERCISE_SEED)
    mask1 = torch.zeros(1, 4, 4, dtype=torch.bool)
    steps = [("pointing_game (TODO 1)", lambda: pointing_game(torch.rand(1, 4, 4), mask1)),
             ("centre_map (TODO 2)", lambda: centre_map(1, 4, 4)),
             ("lesion_saliency (TODO 3)", lambda: lesion_saliency(model, scans[:2])),
             ("hit_rate (TODO 4)", lambda: hit_rate(model, scans[:8], masks[:8])),
             ("WRITTEN (TODO 5)", lambda: [_written(key) for key in WRITTEN])]
    if not tasks.report(4, steps):
        return
    print(f"accuracy on these {len(scans)} scans: {tasks.accuracy(model, scans, labels):.1%}")
    positive = labels == 1
    x, m = scans[positive], masks[positive]
    rates = {
        "your method": hit_rate(model, scans, masks),
        "Grad-CAM (lecture 5)": float(pointing_game(gradcam.grad_cam(model, x, LESION), m).float().mean()),
        "centre": float(pointing_game(centre_map(len(x), 32, 32), m).float().mean()),
        "random": float(pointing_game(torch.rand(len(x), 1, 32, 32, generator=torch.Generator().manual_seed(0)),
                                      m).float().mean()),
    }
    for name, rate in rates.items():
        print(f"pointing game, {name}: {rate:.1%} of {len(x)} lesions")
    show = slice(0, 6)
    ours, cams = lesion_saliency(model, x[show]), gradcam.grad_cam(model, x[show], LESION)
    hits_ours, hits_cam = pointing_game(ours, m[show]), pointing_game(cams, m[show])
    fig, axes = utils.figure_grid(3, 6, title="Where is the lesion? Its outline in cyan; the map's peak as a cross")
    for i in range(6):
        outline = m[i].float().numpy()
        utils.show_image(axes[0, i], x[i, 0].numpy(), "scan")
        axes[0, i].contour(outline, levels=[0.5], colors="cyan", linewidths=0.8)
        for row, (maps, hits, name) in enumerate(((ours, hits_ours, "your method"), (cams, hits_cam, "Grad-CAM")), 1):
            heat = utils.scale_for_display(maps[i:i + 1, 0].numpy())[0]
            verdict = "hit" if hits[i] else "miss" if maps[i].abs().max() > 0 else "miss (all zero)"
            utils.show_heatmap(axes[row, i], heat, f"{name}: {verdict}", label="saliency")
            axes[row, i].contour(outline, levels=[0.5], colors="cyan", linewidths=0.8)
            peak = int(maps[i, 0].flatten().argmax())
            axes[row, i].plot(peak % 32, peak // 32, "c+", markersize=9, markeredgewidth=1.5)
    print("figure:", utils.save_figure(fig, tasks.out_dir(), "04_domain_model.png"))


def _written(key: str) -> None:
    if len(WRITTEN[key].split()) < 15:
        raise NotImplementedError(f"write at least a few sentences for WRITTEN[{key!r}]")


if __name__ == "__main__":
    main()
