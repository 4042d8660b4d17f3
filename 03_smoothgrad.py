"""Part 3 of 9: SmoothGrad.      Previous: 02_gradient_input_saliency.py   Next: 04_integrated_gradients.py

Intuition: the gradient jitters from pixel to pixel; average it over noisy copies of the
image and the jitter cancels while the features that matter everywhere nearby remain.

    SG_c(x)  = 1/n sum_{j=1..n} dS_c/dx (x + eps_j),     eps_j ~ N(0, sigma^2 I)
    SG2_c(x) = 1/n sum_{j=1..n} (dS_c/dx (x + eps_j))^2    SmoothGrad-Squared
    sigma    = noise_level * (max(x) - min(x))             per example, in input units

noise_level is a fraction of the image's own range (the paper finds 10 to 20% best), so the
noise means the same on [0, 1] digits and on normalised photos. The run prints sigma in input
units, and where on a grid of noise levels the maps' structure (regions, not speckle) peaks.

Papers: D. Smilkov, N. Thorat, B. Kim, F. Viegas, M. Wattenberg, "SmoothGrad: removing
noise by adding noise", 2017, https://arxiv.org/abs/1706.03825; SmoothGrad-Squared:
S. Hooker, D. Erhan, P.-J. Kindermans, B. Kim, "A Benchmark for Interpretability
Methods in Deep Neural Networks", NeurIPS 2019, https://arxiv.org/abs/1806.10758

Run:          python 03_smoothgrad.py                 (ResNet-50, photos, 50 samples)
In seconds:   python 03_smoothgrad.py --quick          (ResNet-18, small grid)
Digits:       python 03_smoothgrad.py --model mnist    (the course's digit CNN)
Options:      --n-samples 50  --noise-level 0.15  --batch-size 8
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

import demos
import utils

vanilla = utils.load_lecture("01_vanilla_gradient_saliency")  # lecture 1's dS_c/dx

N_SAMPLES = 50  # the paper: "50 samples is enough"; the grid below shows why
NOISE_LEVEL = 0.15  # a fraction of each image's range; the paper finds 10-20% best
BATCH_SIZE = 8  # noisy copies per forward pass (about 0.1 GB each on ResNet-50): memory, never the result


# %% The method ---------------------------------------------------------------------


def smoothgrad(model: nn.Module, inputs: torch.Tensor, target=None, n_samples: int = N_SAMPLES,
               noise_level: float = NOISE_LEVEL, squared: bool = False, batch_size: int | None = None,
               generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """SmoothGrad (or SmoothGrad-Squared) of every example, signed, shaped like `inputs`.

    The noise comes from `generator` (None: torch's global generator), one draw per noisy
    copy, so `batch_size` (copies per forward pass; None: all at once) never changes it.
    """
    n_samples = utils.check_count(n_samples, "n_samples")
    _check(noise_level, batch_size)
    x = inputs.detach()  # (N, C, H, W)
    n = x.shape[0]
    shape = (-1,) + (1,) * (x.dim() - 1)  # to broadcast one number per example
    sigma = noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))  # (N,) in input units
    classes = utils.classes_at(model, x, target, batch_size)  # (N,) fixed at x
    total = torch.zeros_like(x)  # (N, C, H, W)
    for _, i in utils.point_chunks(n, n_samples, batch_size, x.device, progress, "SmoothGrad"):
        # drawn where the generator lives (a CPU generator may explain CUDA inputs)
        eps = torch.empty((len(i), *x.shape[1:]), dtype=x.dtype,
                          device=generator.device if generator is not None else x.device)  # (B, C, H, W)
        for copy in eps:  # one draw per copy, in copy order: the chunking cannot change the noise
            copy.normal_(generator=generator)
        noisy = x[i] + sigma[i].view(shape) * eps.to(x.device)  # (B, C, H, W)
        grads = vanilla.vanilla_gradient(model, noisy, classes[i], absolute=False)  # (B, C, H, W)
        # each copy's gradient into its own example's row
        total.index_add_(0, i, grads.square() if squared else grads)
    return (total / n_samples).detach()


def _check(noise_level: float, batch_size: int | None) -> None:
    if not noise_level >= 0:  # also rejects nan
        raise utils.InputError(f"noise_level is a fraction of the input's range, >= 0; got {noise_level}")
    utils.check_batch_size(batch_size)


# %% What the noise does ---------------------------------------------------------------
# Dividing by the range instead of multiplying would make the noise shrink as the range grows (one
# mistake tests/test_03_smoothgrad.py guards against: it checks sigma's units).

STRUCTURE_TILES = 14  # the structure number averages over tiles of 1/14 of the image side (16 px at 224)


def structure(maps: np.ndarray, block: int) -> np.ndarray:
    """Share of each map's variance that survives averaging over block x block tiles, (N,).

    What the eye sees at a glance: speckle that flips from pixel to pixel averages away
    inside a tile, regions as large as a tile stay. 0 is pure speckle, 1 is all regions.
    Measured on the map as it is displayed (each divided by its 99th percentile, clipped).
    """
    n, h, w = maps.shape
    tiles = maps[:, :h // block * block, :w // block * block]
    tiles = tiles.reshape(n, h // block, block, w // block, block).mean((2, 4))  # (N, h, w)
    return tiles.reshape(n, -1).var(1) / np.maximum(maps.reshape(n, -1).var(1), 1e-12)


def noisy_copy(x: torch.Tensor, noise_level: float, generator: torch.Generator) -> torch.Tensor:
    """One noisy copy of each example, exactly as SmoothGrad draws them, for the figure."""
    sigma = noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))  # (N,)
    eps = torch.randn(x.shape, generator=generator).to(x.device)  # (N, C, H, W)
    return x + sigma.view(-1, *[1] * (x.dim() - 1)) * eps


# %% Figures --------------------------------------------------------------------------
# The grid of noise levels (columns) by sample counts (rows) joins two figures of the paper:
# its row n = 50 is Figure 3 (noise levels 0 to 50%, 50 samples each), its 10% column is
# Figure 4 (sample sizes 2, 5, 20, 50 and 100 at 10% noise; 100 left out here to save time).
GRID_NOISE = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
GRID_SAMPLES = (2, 5, 20, 50)
QUICK_GRID_NOISE = (0.0, 0.1, 0.2)
QUICK_GRID_SAMPLES = (2, 8)
PAPER_RANGE = (0.10, 0.20)  # the noise levels Smilkov et al. find best


def for_display(demo: demos.Demo, maps: torch.Tensor) -> np.ndarray:
    """(N, H, W) maps as drawn. Photos: the largest |value| over RGB, as in lecture 1. Digits:
    signed, because on a black background every unit is off and the gradient is exactly 0,
    while the noise turns them on, so SmoothGrad also says what ink there would do (red: raise
    S_c, blue: lower it); the sign tells that apart from evidence on the strokes."""
    if demo.track == "mnist":
        return utils.scale_for_display(utils.reduce_channels(maps, "sum"), signed=True)
    return utils.scale_for_display(utils.reduce_channels(maps, "max_abs"))


def show_map(ax, demo: demos.Demo, heat: np.ndarray, title: str, outline: np.ndarray | None) -> None:
    utils.show_heatmap(ax, heat, title, signed=demo.track == "mnist", outline=outline, bar=False)


def map_bar(fig, demo: demos.Demo, axes, what: str = "") -> None:
    """The one colour bar of the maps drawn by show_map."""
    if demo.track == "mnist":
        utils.shared_colorbar(fig, axes, signed=True, label=f"{what}red +, blue -, 1 = 99th pct of |value|")
    else:
        utils.shared_colorbar(fig, axes, label=f"{what}|value|, max over RGB, 1 = 99th pct")


def plot_grid(demo: demos.Demo, maps: dict[tuple[float, int], torch.Tensor], noise_levels, sample_counts,
              explained: str, generator: torch.Generator, structures: dict[tuple[float, int], float]):
    """Row 0: one noisy copy at each noise level. Below: SmoothGrad by sample count (rows)."""
    if N_SAMPLES in sample_counts and 0.1 in noise_levels:
        paper = f"Smilkov et al.'s Figure 3 is the row n = {N_SAMPLES}, their Figure 4 the 10% column"
    else:
        paper = "a small grid: the full run shows Smilkov et al.'s Figures 3 and 4"
    fig, axes = utils.figure_grid(len(sample_counts) + 1, len(noise_levels), landscape=True,
                                  title=f"SmoothGrad of '{utils.shorten(explained)}' on '{demo.names[0]}', "
                                        f"{demo.network}: noise level (columns) by samples n (rows)\n"
                                        f"{paper}; "
                                        "s = structure (higher: more regions, less speckle)")
    copies = [demo.display(noisy_copy(demo.x[:1], level, generator))[0] for level in noise_levels]
    outline = demo.display()[0] if demo.track == "mnist" else None  # the digit's edge on every map
    for col, (level, copy) in enumerate(zip(noise_levels, copies)):
        utils.show_image(axes[0, col], copy, f"one noisy copy, {level:.0%}")
        for row, n in enumerate(sample_counts, start=1):
            n_used = 1 if level == 0 else n  # at 0% every copy is x itself
            show_map(axes[row, col], demo, for_display(demo, maps[level, n])[0],
                     f"{level:.0%}, n = {n_used}, s = {structures[level, n]:.2f}", outline)
    map_bar(fig, demo, axes[1:])
    return fig


def plot_comparison(demo: demos.Demo, grads, smooth, smooth_sq, explained, n_samples, noise_level):
    """Per example: input | vanilla gradient | SmoothGrad | SmoothGrad-Squared | SmoothGrad over the image."""
    images = demo.display()
    heats = [for_display(demo, m) for m in (grads, smooth)]
    squared = utils.scale_for_display(utils.reduce_channels(smooth_sq, "max_abs"))  # >= 0 already
    fig, panels = utils.example_grid(len(images), 5, title=f"Vanilla gradient (lecture 1) against SmoothGrad "
                                     f"(SG, noise {noise_level:.0%} of the range, n = {n_samples}) and "
                                     f"SmoothGrad-Squared (SG^2), {demo.network}")
    for row, (axes, image) in enumerate(zip(panels, images)):
        utils.show_image(axes[0], image, f"{utils.shorten(demo.names[row], 14)}\n"
                                         f"'{utils.shorten(explained[row], 14)}'")
        outline = image if demo.track == "mnist" else None  # the digit's edge: is the map on the ink?
        show_map(axes[1], demo, heats[0][row], "dS/dx", outline)
        show_map(axes[2], demo, heats[1][row], "SG", outline)
        utils.show_heatmap(axes[3], squared[row], "SG^2", outline=outline, bar=False)
        utils.show_heatmap(axes[4], np.abs(heats[1][row]), "|SG| over it", image=image, bar=False)
    if demo.track == "mnist":  # signed maps, then magnitudes
        map_bar(fig, demo, [axes[k] for axes in panels for k in (1, 2)], "columns 2, 3: ")
        utils.shared_colorbar(fig, [axes[k] for axes in panels for k in (3, 4)],
                              label="columns 4, 5: 1 = 99th pct")
    else:  # every map a magnitude on the same scale
        map_bar(fig, demo, [axes[k] for axes in panels for k in (1, 2, 3, 4)])
    return fig


# %% The demo -------------------------------------------------------------------------

QUICK_SAMPLES = 8
QUICK_PHOTOS = 2  # --quick explains this many photos ...
QUICK_DIGITS = 3  # ... or digits
QUICK_SIZE = 112  # --quick shrinks photos to this size: SmoothGrad evaluates the model n times
DIGITS = 6


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    parser = utils.make_parser(__doc__)
    parser.add_argument("--n-samples", type=utils.int_in_range(1, 10_000), default=None,
                        help=f"noisy copies per image (default {N_SAMPLES}; {QUICK_SAMPLES} with --quick)")
    parser.add_argument("--noise-level", type=utils.float_in_range(0.0, 1.0), default=NOISE_LEVEL,
                        help="sigma as a fraction of each image's value range (max - min)")
    parser.add_argument("--batch-size", type=utils.int_in_range(1, 100_000), default=BATCH_SIZE,
                        help="noisy copies per forward pass (memory, not results)")
    args = parser.parse_args(argv)
    demo = demos.setup_demo(args, n_images=QUICK_PHOTOS if args.quick else None,
                            n_digits=QUICK_DIGITS if args.quick else DIGITS, quick_size=QUICK_SIZE)
    target = demos.demo_target(args, demo)
    n_samples = args.n_samples or (QUICK_SAMPLES if args.quick else N_SAMPLES)
    progress = not args.quick
    generator = torch.Generator().manual_seed(args.seed)
    classes, explained = demo.explained_classes(target)  # (N,) and their names
    demos.print_what_photos_show(demo, target)

    # 1. sigma in input units: what "15% noise" means for these very inputs.
    low, high = demo.x.flatten(1).amin(1), demo.x.flatten(1).amax(1)
    sigma = args.noise_level * (high - low)
    units = "normalised units" if demo.track == "imagenet" else "pixel units, [0, 1] is black to white"
    print(f"\nNoise level {args.noise_level:.0%} of each input's range, in {units}:")
    for name, lo, hi, s in zip(demo.names, low.tolist(), high.tolist(), sigma.tolist()):
        grey_levels = s * 255 * (float(np.mean(demo.std)) if demo.track == "imagenet" else 1.0)
        print(f"  {name:>{max(map(len, demo.names))}}: range [{lo:+.2f}, {hi:+.2f}] -> sigma = {s:.3f}  "
              f"(~{grey_levels:.0f} of 255 grey levels)")

    # 2. The paper's grid (its Figures 3 and 4), on the first example: noise level against n.
    levels = QUICK_GRID_NOISE if args.quick else GRID_NOISE
    counts = QUICK_GRID_SAMPLES if args.quick else GRID_SAMPLES
    maps = {}
    cells = [(level, n) for level in levels for n in counts]
    for level, n in utils.progress_bar(cells, "noise grid", enabled=progress, leave=True):
        # at 0% every copy is x itself, so one sample is the exact average
        maps[level, n] = smoothgrad(demo.model, demo.x[:1], target=classes[:1],
                                    n_samples=1 if level == 0 else n, noise_level=level,
                                    batch_size=args.batch_size, generator=generator)
    block = max(2, demo.x.shape[-1] // STRUCTURE_TILES)
    structures = {cell: float(structure(np.abs(for_display(demo, m)), block)[0]) for cell, m in maps.items()}
    most = max(counts)
    noisy = [level for level in levels if level > 0]
    best = max(noisy, key=lambda level: structures[level, most])
    print(f"\nStructure of the grid's maps on {demo.names[0]} with n = {most}: the share of a map's variance "
          f"left after averaging\nover {block}x{block} tiles (speckle averages away, regions stay), "
          "by noise level:")
    print("  " + "   ".join(f"{level:.0%}: {structures[level, most]:.2f}" for level in levels))
    inside = PAPER_RANGE[0] <= best <= PAPER_RANGE[1]
    print(f"  Among the noisy maps it is highest at {best:.0%}, "
          + ("inside" if inside else "outside") + f" the paper's {PAPER_RANGE[0]:.0%}-{PAPER_RANGE[1]:.0%}"
          + (f", and {'above' if structures[best, most] > structures[0.0, most] else 'below'} the plain "
             f"gradient's {structures[0.0, most]:.2f} (0%)." if 0.0 in levels else "."))
    if not inside and best > PAPER_RANGE[1]:
        print(f"  On this input and {demo.network} the noise must be larger before the copies' gradients "
              f"average into regions:\n  try --noise-level {best}.")
    grid = plot_grid(demo, maps, levels, counts, explained[0], generator, structures)
    utils.save_figure(grid, args.out_dir, f"03_noise_grid_{demo.track}.png")

    # 3. Vanilla against SmoothGrad and SmoothGrad-Squared, on every example.
    grads = vanilla.vanilla_gradient(demo.model, demo.x, target, absolute=False)
    options = dict(target=target, n_samples=n_samples, noise_level=args.noise_level,
                   batch_size=args.batch_size, generator=generator, progress=progress)
    utils.stage(f"SmoothGrad and SmoothGrad-Squared, {n_samples} noisy copies of each input",
                enabled=progress)
    smooth = smoothgrad(demo.model, demo.x, **options)
    smooth_sq = smoothgrad(demo.model, demo.x, squared=True, **options)
    shown = [np.abs(for_display(demo, m)) for m in (grads, smooth)]  # the strength the eye sees
    share = [structure(m, block) for m in shown]
    print(f"\nStructure in the map as displayed: the share of its variance left after averaging over "
          f"{block}x{block} tiles\n(speckle averages away, regions stay: higher means more regions, "
          f"less speckle), n = {n_samples}:")
    width = max(map(len, demo.names))
    for name, s_vanilla, s_smooth in zip(demo.names, *share):
        trend = "more structure" if s_smooth > s_vanilla else "less structure"
        print(f"  {name:>{width}}: vanilla gradient {s_vanilla:.2f}   SmoothGrad {s_smooth:.2f}   {trend}")
    if demo.track == "mnist":
        print("On a digit the gradient is 0 a few pixels away from the ink (units that see only black are "
              "off), so there is\nlittle speckle to remove; the noise switches those units on and "
              "SmoothGrad spreads into the background,\nwhere it tells what ink would do (red: raise S_c, "
              "blue: lower it). Hence the signed maps in the figure.")
    else:
        fewer = [name for name, s_vanilla, s_smooth in zip(demo.names, *share) if s_smooth <= s_vanilla]
        if fewer:
            print(f"On {len(fewer)} of {len(demo.names)} photos ({', '.join(fewer)}) SmoothGrad at "
                  f"{args.noise_level:.0%} noise and n = {n_samples} has no more structure than the "
                  "gradient: "
                  f"for {demo.network}\nthe noisy copies' gradients have not averaged into regions yet. On "
                  f"{demo.names[0]} the grid's noisy maps have the most structure at {best:.0%} (above).")
    utils.save_figure(plot_comparison(demo, grads, smooth, smooth_sq, explained, n_samples, args.noise_level),
                      args.out_dir, f"03_smoothgrad_{demo.track}.png")


if __name__ == "__main__":
    main()
