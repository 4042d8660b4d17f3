"""Lecture 8's comparison, part 4: the figures, drawn from what the measures recorded.

Every number a figure shows is one the run printed (the same medians, the same hit rates); a figure
never computes a verdict. The lecture's functions are reached through `run.lecture`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

import utils
from demos.comparison_run import MARKERS, SHORT, SMOOTH, Run, chance_lines, methods, plural

SIDE_BY_SIDE_ROWS = 6
# Nine lines in one panel: a colour, a marker and a dash each, so that two methods whose lines
# coincide (gradient x input and IG often do) still show both.
DASHES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), "-", "--", "-.")


def display_map(saliency: torch.Tensor) -> np.ndarray:
    """Every map the same way for the eye: |.| summed over channels, divided by its 99th percentile."""
    return utils.scale_for_display(utils.reduce_channels(saliency, "sum_abs"))


def styles(names: list[str]) -> dict[str, dict]:
    """Per method: colour, marker, dash; wider and paler lines first, so that a line drawn later on
    top of an earlier one leaves its edges visible."""
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10")(np.arange(len(names)))
    return {name: dict(color=colours[k], marker=MARKERS[name], ls=DASHES[k % len(DASHES)],
                       lw=3.2 - 0.25 * k, alpha=0.9) for k, name in enumerate(names)}


def values_of(run: Run) -> dict:
    table: dict = {}
    for _, method, measure, v in run.rows:
        table.setdefault((method, measure), []).append(v)
    return table


def plot_side_by_side(run: Run, maps: dict):
    import matplotlib.pyplot as plt

    rows = list(range(min(run.x.shape[0], SIDE_BY_SIDE_ROWS)))
    names = list(maps)
    fig, axes = utils.figure_grid(len(rows), len(names) + 1, panel=1.7,
                                  title=f"Nine methods on {run.demo.network}: |map| summed over channels, "
                                        "each divided by its 99th percentile (bright = salient)")
    images = run.demo.display()
    shown = {name: display_map(maps[name][rows]) for name in names}
    for r, row in enumerate(rows):
        utils.show_image(axes[r, 0], images[row], run.titles[row].replace(": ", "\n", 1))
        for col, name in enumerate(names, start=1):
            axes[r, col].imshow(shown[name][r], cmap="inferno", vmin=0, vmax=1)
            if r == 0:
                axes[r, col].set_title(f"{SHORT[name]}\n{run.seconds[name]:.3g} s/image", fontsize=8)
    bar = fig.colorbar(plt.cm.ScalarMappable(plt.Normalize(0, 1), "inferno"), ax=axes[:, -1], fraction=0.08)
    bar.set_label("|map| / 99th percentile", fontsize=7)
    return fig


def plot_curves(run: Run, measured: dict, names: list[str]):
    """Top: the first input's deletion and insertion curves. Bottom: median AUC per method."""
    import matplotlib.pyplot as plt

    curves, aucs = measured["curves"], measured["aucs"]
    fig, axes = plt.subplots(2, 2, figsize=(16, 9), layout="constrained")
    style = styles(names)
    for col, kind in enumerate(("deletion", "insertion")):
        ax = axes[0, col]
        fraction = np.linspace(0, 1, curves[kind, names[0]].shape[1])
        for name in names:
            ax.plot(fraction, curves[kind, name][0].cpu(), label=SHORT[name], ms=5, markevery=0.1, **style[name])
        ax.plot(fraction, curves[kind, SMOOTH][0].cpu(), color="k", ls="--", lw=2, label="smooth random map")
        if kind == "deletion":
            ax.plot(fraction, curves[kind, "chance: per-pixel random order"][0].cpu(), ":", color="k", lw=1.5,
                    label="per-pixel random order\n(no chance line: see the text)")
        good = "lower AUC is better" if kind == "deletion" else "higher AUC is better"
        ax.set_title(f"{kind} on '{run.titles[0]}' ({good})", fontsize=10)
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "put back"))
        ax.set_ylabel("probability of the explained class")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not on them
        ax = axes[1, col]
        own = [float(aucs[kind, n].median()) for n in names]
        flipped = [float(aucs[kind, f"chance: {n} reversed"].median()) for n in names]
        at = np.arange(len(names))
        ax.bar(at - 0.2, own, 0.4, color=[style[n]["color"] for n in names], label="the method's order")
        ax.bar(at + 0.2, flipped, 0.4, color="lightgrey", edgecolor="grey", label="its order reversed")
        chance = float(aucs[kind, SMOOTH].median())
        ax.axhline(chance, color="k", ls="--", label="smooth random map (the chance line)")
        ax.set_xticks(at, [SHORT[n] for n in names], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"median {kind} AUC over {plural(run.x.shape[0])}")
        ax.set_title(f"{kind} AUC: " + ("LOW is good: the prediction falls fast" if kind == "deletion" else
                                        "HIGH is good: the prediction returns fast"), fontsize=10)
        ax.set_ylim(0, max(own + flipped + [chance]) * 1.35)  # room for the legend above the bars
        ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.suptitle(f"Deletion and insertion (RISE), {run.demo.network}", fontsize=12)
    return fig


def plot_pointing(run: Run, maps: dict, row: int, tolerance: float, chance: dict):
    """Left: one input's mask, the ring within which a maximum is a hit, each map's maximum. Right: the
    hit rate and the medians of mass and rank, the numbers the run printed."""
    import matplotlib.pyplot as plt

    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(15, 6.5), layout="constrained",
                                         gridspec_kw={"width_ratios": [1, 1.5]})
    ax_img.imshow(run.demo.display()[row], cmap="gray" if run.x.shape[1] == 1 else None)
    mask = run.masks[row]
    ax_img.contour(mask.cpu().float().numpy(), levels=[0.5], colors="lime", linewidths=2)
    ring = run.lecture.near(mask[None], tolerance)[0]
    ax_img.contour(ring.cpu().float().numpy(), levels=[0.5], colors="yellow", linewidths=1.5, linestyles="--")
    w = run.x.shape[-1]
    shown = {**maps, **chance}
    colours = [*plt.get_cmap("tab10")(np.arange(len(maps))), "white", "cyan"]
    for (name, m), colour, marker in zip(shown.items(), colours, [*(MARKERS[n] for n in maps), "*", "8"]):
        peak = int(run.lecture.reduced_map(m[row: row + 1]).flatten(1).argmax(1))
        ax_img.plot(peak % w, peak // w, marker, color=colour, ms=9, mec="black",
                    label=SHORT.get(name, name.removeprefix("chance: ") + " (chance)"))
    ax_img.set_title(f"'{run.titles[row]}'\nthe object's mask (green); a maximum inside the dashed yellow line "
                     f"\n(within {tolerance:.3g} px of the mask) is a hit; markers may hide each other", fontsize=9)
    ax_img.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    table = values_of(run)
    names = [*maps, *chance]
    at = np.arange(len(names))
    parts = (("pointing game", "tab:blue", "pointing game: hit rate (mean of hits)", np.mean),
             ("relevance mass", "tab:orange", "relevance mass: median", np.median),
             ("relevance rank", "tab:green", "relevance rank: median", np.median))
    for k, (measure, colour, label, how) in enumerate(parts):
        heights = [float(how(table[n, measure])) if (n, measure) in table else 0.0 for n in names]
        ax_bar.bar(at + (k - 1) * 0.27, heights, 0.27, color=colour, label=label)
    ax_bar.set_xticks(at, [SHORT.get(n, n.removeprefix("chance: ") + "\n(chance)") for n in names],
                      rotation=30, ha="right", fontsize=8)
    ax_bar.set_ylim(0, 1.2)
    ax_bar.set_ylabel("higher is better (the printed table's numbers)")
    count = len(table.get((names[0], "pointing game"), []))
    ax_bar.set_title(f"agreement with the object's mask, {plural(count)} (the last two groups are the chance "
                     "lines;\nfor scale, TorchRay with VGG16 on VOC07: centre 69.6%, Grad-CAM 86.6%)", fontsize=9)
    ax_bar.legend(fontsize=8, ncol=3, loc="upper left")
    return fig


def plot_sensitivity(run: Run, measured: dict, names: list[str]):
    import matplotlib.pyplot as plt

    sizes, scores, spread = measured["sizes"], measured["scores"], measured["spread"]
    fig, ax = plt.subplots(figsize=(12, 6.5), layout="constrained")
    style = styles(names)
    for name in names:
        ax.plot(sizes, [scores[name, s] for s in sizes], label=SHORT[name], ms=8, **style[name])
    ax.plot(sizes, [scores[SMOOTH, s] for s in sizes], "k*--", ms=10, label="smooth random map (chance): median")
    low, high = [spread[SMOOTH, s][0] for s in sizes], [spread[SMOOTH, s][1] for s in sizes]
    label = "smooth random map: its middle half of inputs\n(25th to 75th percentile)"
    if len(sizes) > 1:
        ax.fill_between(sizes, low, high, color="grey", alpha=0.25, label=label)
    else:  # one n: a band has no width, so a wide bar
        ax.vlines(sizes, low, high, color="grey", alpha=0.35, lw=14, label=label)
    if len(sizes) > 1:
        ax.set_xscale("log")
    ax.set_xticks(sizes, [str(size) for size in sizes])
    ax.minorticks_off()
    ax.set_xlabel("n, pixels removed together" + (" (log scale)" if len(sizes) > 1 else ""))
    ax.set_ylabel(f"median Pearson correlation over {plural(run.x.shape[0])} (higher is better)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title(f"Sensitivity-n on {run.demo.network}: do the attributions of n pixels add up to the output "
                 "drop?\n(maps that are never negative cannot follow signed drops; lines that coincide are "
                 "drawn wide under narrow)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_stability(run: Run, names: list[str]):
    """Per method, the median max-sensitivity, infidelity and CC, each with its chance lines, on a
    linear axis from 0 (a log axis from the smallest bar made 1-2% look several-fold)."""
    import matplotlib.pyplot as plt

    table = values_of(run)
    panels = [("max-sensitivity", "low is stable"), ("infidelity", "low is faithful (scale-free)"),
              ("human agreement (CC)", "high agrees")]
    panels = [p for p in panels if (names[0], p[0]) in table]
    fig, axes = plt.subplots(1, len(panels), figsize=(16, 6.5), layout="constrained", squeeze=False)
    at = np.arange(len(names))
    for ax, (measure, good) in zip(axes[0], panels):
        heights = [float(np.median(table[n, measure])) if (n, measure) in table else math.nan for n in names]
        ax.bar(at, heights, color=plt.get_cmap("tab10")(at))
        for versus, dash in zip(chance_lines(run.track, measure), ("--", ":")):
            if (versus, measure) in table:
                ax.axhline(float(np.median(table[versus, measure])), color="k", ls=dash, lw=1.5,
                           label=versus.removeprefix("chance: ") + " (chance)")
        if measure == "human agreement (CC)":
            ax.axhline(0, color="grey", lw=0.8)
        drawn = [h for h in heights if not math.isnan(h)] + [line.get_ydata()[0] for line in ax.get_lines()]
        ax.set_ylim(min(0.0, min(drawn) * 1.2), max(drawn) * 1.3)  # room for the legend above bars and lines
        ax.set_xticks(at, [SHORT[n] for n in names], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{measure}: {good}", fontsize=10)
        ax.set_ylabel("median over the inputs (linear axis)")
        ax.legend(fontsize=8, loc="upper right", ncol=2)
    fig.suptitle(f"Stability, faithfulness to small nudges and agreement with {run.attention_source} "
                 f"({run.demo.network})", fontsize=11)
    return fig


def plot_sanity(run: Run, sanity: dict, names: list[str]):
    import matplotlib.pyplot as plt

    labels, correlations, shown, defined = sanity["labels"], sanity["correlations"], sanity["shown"], sanity["defined"]
    cols = len(labels) + 1
    fig = plt.figure(figsize=(max(16, 1.5 * cols + 9), 1.2 + 1.0 * len(names)), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1.3])
    ax = left.subplots()
    at = np.arange(cols)
    style = styles(names)
    for name in names:  # N differs per method: a map that turns constant has no rank correlation
        used = defined[name][-1]
        over = f"mean over {used}" if used == sanity["count"] else f"last stage: mean over {used} of {sanity['count']}"
        ax.plot(at, [1.0, *correlations[name]], label=f"{SHORT[name]} ({over})", ms=7, **style[name])
    ax.set_xticks(at, ["original", *labels], rotation=60, ha="right", fontsize=7)
    lowest = np.nanmin([v for values in correlations.values() for v in values] + [0.0])
    ax.set_ylim(min(-0.3, lowest - 0.05), 1.05)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("layers re-initialised, from the output backwards (cumulative)")
    ax.set_ylabel("Spearman rank correlation with the original map, over the pixels\n"
                  "where either map is non-zero (mean over the inputs where it is defined)")
    ax.set_title("Model randomisation (Adebayo et al. 2018): a map that stays\n"
                 f"near 1 explains the image, not the model ({plural(sanity['count'])})", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    axes = right.subplots(len(names), cols, squeeze=False)
    for r, name in enumerate(names):
        for c, m in enumerate(shown[name]):
            axes[r, c].imshow(display_map(m)[0], cmap="inferno", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                stage = "original" if c == 0 else labels[c - 1].split(":")[0] + " layers"
                axes[r, c].set_title(stage, fontsize=7)
        axes[r, 0].set_ylabel(SHORT[name], fontsize=7)
    right.suptitle(f"the maps of '{run.titles[0]}' as the weights go (|map| / 99th pct, inferno)", fontsize=9)
    return fig


def right_and_wrong(run: Run, count: int = 3) -> None:
    """The digits the CNN gets wrong, then those it reads by the smallest margin, explained for the
    class it reads and for the other one (the true class if it is wrong, else the runner-up)."""
    import matplotlib.pyplot as plt

    labels = run.labels
    with torch.no_grad():
        logits = run.model(run.x)
    truth = torch.tensor(labels, device=logits.device)
    others = logits.scatter(1, truth[:, None], float("-inf"))
    margin = logits.gather(1, truth[:, None])[:, 0] - others.amax(1)  # true logit - best other; < 0: wrong
    wrong = (margin < 0).nonzero()[:, 0].tolist()
    picked = margin.argsort()[:count].tolist()  # the misread ones first (negative margins), then the closest
    print(f"\nRight and wrong: the CNN misreads {len(wrong)} of the {len(labels)} shipped digits; shown: "
          + ("those, then " if wrong else "") + "the ones it reads by the smallest margin (true logit minus "
          "the best other)")
    names = ["Grad-CAM", "integrated gradients", "SHAP"]
    runs = methods(run)
    cases, maps_by_case = [], []
    for i in picked:
        read = int(logits[i].argmax())
        other = labels[i] if read != labels[i] else int(others[i].argmax())
        x = run.x[i: i + 1]
        maps_by_case.append({which: {name: runs[name](run.model, x, torch.tensor([cls], device=x.device))
                                     for name in names} for which, cls in (("read", read), ("other", other))})
        cases.append((run.demo.display()[i], labels[i], read, other, float(margin[i])))
        print(f"  a {labels[i]} read as {read}, margin {float(margin[i]):+.2f}; explained for {read} and {other}")
    cols = 1 + 2 * len(names)
    fig, axes = plt.subplots(len(cases), cols, figsize=(1.75 * cols + 1.2, 2.0 * len(cases) + 0.9),
                             layout="constrained", squeeze=False)
    fig.suptitle("Digits the CNN misreads, or reads by the smallest margin: each map for the class it reads\n"
                 "and for the other class (the true one, or the runner-up)", fontsize=10)
    for r, (image, label, read, other, margin_r) in enumerate(cases):
        utils.show_image(axes[r, 0], image, f"a {label}, read as {read}\nmargin {margin_r:+.2f}")
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
        for c, (which, name) in enumerate([(w, n) for w in ("read", "other") for n in names], start=1):
            axes[r, c].imshow(display_map(maps_by_case[r][which][name])[0], cmap="inferno", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            digit = read if which == "read" else other
            role = "read" if which == "read" else ("true" if other == label else "runner-up")
            axes[r, c].set_title(f"{SHORT[name]}\nfor {digit} ({role})", fontsize=8)
    bar = fig.colorbar(plt.cm.ScalarMappable(plt.Normalize(0, 1), "inferno"), ax=axes[:, -1], fraction=0.12)
    bar.set_label("|map| / its 99th percentile", fontsize=8)
    utils.save_figure(fig, run.args.out_dir, "08_right_and_wrong_mnist.png")
