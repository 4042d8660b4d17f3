"""Lecture 8's comparison, part 2: every measure over every input, beside its chance lines.

Each `measure_*` calls the lecture's functions (through `run.lecture`) on every method's maps and on
the chance lines the contract names, records one row per input, leaves out (with the reason) the inputs a
measure cannot use, and prints what a student should see in the numbers.
"""
from __future__ import annotations

import math

import numpy as np
import torch

import utils
from demos.comparison_run import (MASK_TOO_LARGE, SHORT, SMOOTH, TOLERANCE_PX, Run, drop, methods,
                                  plausibility_chance, plural, record)

MASK_MEASURES = ("pointing game", "relevance mass", "relevance rank")


# %% The chance lines' maps ------------------------------------------------------------------


def smooth_random_maps(run: Run, seed: int) -> torch.Tensor:
    """(N, H, W) the lecture's smooth random map for every input, from a fixed seed."""
    n, (h, w) = run.x.shape[0], run.x.shape[-2:]
    return run.lecture.smooth_random_map(n, h, w, torch.Generator().manual_seed(seed)).to(run.x.device)


def grey_images(run: Run) -> torch.Tensor:
    """(N, H, W) the inputs as grey pictures in [0, 1] (ITU-R 601 luma for colour)."""
    pictures = torch.from_numpy(np.ascontiguousarray(run.demo.display())).float()  # (N, H, W, C)
    if pictures.shape[-1] == 3:
        return (pictures @ torch.tensor([0.299, 0.587, 0.114])).to(run.x.device)
    return pictures.mean(-1).to(run.x.device)


def plausibility_maps(run: Run) -> dict[str, torch.Tensor]:
    """The model-independent maps the plausibility measures are judged against, (N, H, W) each."""
    n, (h, w) = run.x.shape[0], run.x.shape[-2:]
    first, centre = plausibility_chance(run.track)
    made = run.lecture.input_map(run.x) if run.track == "mnist" else run.lecture.edge_map(grey_images(run))
    return {first: made, centre: run.lecture.centre_prior(n, h, w).to(run.x.device)}


def medians(run: Run, measures) -> dict:
    """(method, measure) -> the median as text (the pointing game: its hit rate, the mean of 0s and 1s)."""
    values: dict = {}
    for _, method, measure, v in run.rows:
        if measure in measures:
            values.setdefault((method, measure), []).append(v)
    typical = {k: np.mean(v) if k[1] == "pointing game" else np.median(v) for k, v in values.items()}
    return {k: f"{t:>+14.3f}" for k, t in typical.items()}


# %% Deletion and insertion --------------------------------------------------------------------


def measure_curves(run: Run, maps: dict) -> dict:
    """Deletion (baseline 0: the mean colour, or black digits) and insertion (blur) for every map, its
    reverse, a smooth random map and a per-pixel random map; AUCs recorded per input."""
    steps, batch = run.settings["steps"], run.settings["batch"]
    n, (h, w) = run.x.shape[0], run.x.shape[-2:]
    pixel_name = "chance: per-pixel random order"
    chance_maps = {SMOOTH: smooth_random_maps(run, run.args.seed),
                   pixel_name: torch.rand(n, h, w, generator=torch.Generator().manual_seed(run.args.seed + 1)
                                          ).to(run.x.device)}
    curve_of = {"deletion": run.lecture.deletion_curve, "insertion": run.lecture.insertion_curve}
    curves, aucs = {}, {}
    todo = {**{name: run.lecture.reduced_map(m) for name, m in maps.items()},
            **{f"chance: {name} reversed": -run.lecture.reduced_map(m) for name, m in maps.items()}, **chance_maps}
    for kind, fn in curve_of.items():
        for name, heat in todo.items():
            if kind == "insertion" and name == pixel_name:
                continue
            curves[kind, name] = fn(run.model, run.x, heat, run.classes, steps, batch_size=batch)
            aucs[kind, name] = run.lecture.area_under_curve(curves[kind, name]).cpu()
            record(run, name, f"{kind} AUC", aucs[kind, name])
    print(f"\nDeletion and insertion AUC, median over {plural(n)} ({steps} steps; deletion: low is good, "
          "insertion: high is good; in brackets the method's own order reversed)")
    med = {key: float(v.median()) for key, v in aucs.items()}
    for name in maps:
        back = f"chance: {name} reversed"
        print(f"  {name:>20}: deletion {med['deletion', name]:.3f} ({med['deletion', back]:.3f})"
              f"   insertion {med['insertion', name]:.3f} ({med['insertion', back]:.3f})")
    print(f"  {'smooth random map':>20}: deletion {med['deletion', SMOOTH]:.3f}   "
          f"insertion {med['insertion', SMOOTH]:.3f}   <- the chance line of both verdicts")
    pixel, smooth_auc = med["deletion", pixel_name], med["deletion", SMOOTH]
    beaten = [SHORT[k] for k in maps if pixel < med["deletion", k]]
    print(f"  {'per-pixel random':>20}: deletion {pixel:.3f}: "
          + (f"faster than the smooth random map ({smooth_auc:.3f})" if pixel < smooth_auc else
             f"no faster than the smooth random map ({smooth_auc:.3f}) on these inputs")
          + (f"; it beats the order of {', '.join(beaten)}" if beaten else "") + ".")
    print("  Scattered holes take an image off the data the network knows (Hooker et al. 2019; Rong et al.\n"
          "  2022), so a per-pixel random order measures the holes, not a map: it is recorded, never a\n"
          "  chance line. The smooth random map makes holes like a real map's; a method's reversed order\n"
          "  (least salient first) shows how much its order matters.")
    return {"curves": curves, "aucs": aucs}


# %% Plausibility: the object's mask and the attention maps --------------------------------------


def usable_masks(run: Run) -> list[int]:
    """The inputs whose object mask can inform the pointing game, mass and rank; the others are
    left out with the reason: no mask, or a mask over MASK_TOO_LARGE of the crop (any map lands on it)."""
    have = []
    for i, mask in enumerate(run.masks):
        share = math.nan if mask is None else float(mask.float().mean())
        if mask is None:
            reason = "no object mask for this input"
        elif share > MASK_TOO_LARGE:
            reason = f"the object's mask covers over {MASK_TOO_LARGE:.0%} of the crop ({share:.1%})"
        else:
            have.append(i)
            continue
        for measure in MASK_MEASURES:
            drop(run, measure, "every method", i, reason)
    return have


def measure_masks(run: Run, maps: dict, chance: dict) -> list[int]:
    """Pointing game, relevance mass and rank against the object masks, beside the chance maps.
    Returns the inputs measured."""
    have = usable_masks(run)
    if not have:
        print("\nNo usable object mask for these inputs: no pointing game, relevance mass or rank")
        return have
    tolerance = pointing_tolerance(run)
    mask = torch.stack([run.masks[i] for i in have])  # (n, H, W)
    for name, m in {**maps, **chance}.items():
        record(run, name, "pointing game", run.lecture.pointing_game(m[have], mask, tolerance).float(), have)
        record(run, name, "relevance mass", run.lecture.relevance_mass(m[have], mask).float(), have)
        record(run, name, "relevance rank", run.lecture.relevance_rank(m[have], mask).float(), have)
    table = medians(run, MASK_MEASURES)
    print(f"\nAgreement with the object ({plural(len(have))}; medians; pointing game: hit rate, the mean of "
          f"hits, tolerance {tolerance:.3g} px)")
    print(f"  {'':>22}  {'pointing game':>14}{'relevance mass':>16}{'relevance rank':>16}")
    for name in [*maps, *chance]:
        print(f"  {name.removeprefix('chance: '):>22}: " + "  ".join(table.get((name, k), " " * 14)
                                                                     for k in MASK_MEASURES))
    first = next(iter(chance))
    if run.track == "mnist":
        print("  Chance lines: the image itself and a centred Gaussian. On digits the truth is the stroke, and\n"
              "  the image itself is bright exactly there: its maximum always hits, and most of its mass and its\n"
              "  top pixels lie on the stroke. A map that cannot beat the image has shown nothing about the\n"
              "  network; a chance line at the measure's best value makes the verdict 'uninformative'.")
    else:
        print(f"  Chance lines: the Sobel edges of the grey image ({first.removeprefix('chance: ')}) and a centred\n"
              "  Gaussian: objects have edges and photographers centre them. A method must beat both.")
    print("  For scale, TorchRay's VOC07 pointing game with VGG16: centre 69.6%, gradient 76.3%, "
          "guided backprop 75.9%, Grad-CAM 86.6%.")
    return have


def pointing_tolerance(run: Run) -> float:
    """TorchRay's 15 px at 224 px, scaled to this input size, in pixels."""
    return TOLERANCE_PX * run.x.shape[-2] / 224


def measure_human(run: Run, maps: dict, chance: dict) -> None:
    """CC against the attention maps, beside the chance maps; an undefined CC (a constant map) is left out."""
    have = [i for i, a in enumerate(run.attention) if a is not None]
    for i, a in enumerate(run.attention):
        if a is None:
            drop(run, "human agreement (CC)", "every method", i, "no attention map for this input")
    if not have:
        return
    attention = torch.stack([run.attention[i] for i in have])
    for name, m in {**maps, **chance}.items():
        cc = run.lecture.human_agreement(m[have], attention, undefined=math.nan).float()
        record(run, name, "human agreement (CC)", cc, have, "a constant map (or attention map): CC undefined")
    table = medians(run, ("human agreement (CC)",))
    print(f"\nHuman agreement: CC against {run.attention_source}, {plural(len(have))} (median; chance lines: "
          + ", ".join(k.removeprefix("chance: ") for k in chance) + ")")
    for k in [*maps, *chance]:
        print(f"  {k.removeprefix('chance: '):>22}: {table.get((k, 'human agreement (CC)'), '  (no value)')}")


# %% Sensitivity-n, stability, infidelity ---------------------------------------------------------


def measure_sensitivity_n(run: Run, maps: dict) -> dict:
    """Sensitivity-n at each size, all methods sharing one draw of subsets per size."""
    names, scores, spread, sizes = list(maps), {}, {}, []
    h, w = run.x.shape[-2:]
    chance = smooth_random_maps(run, run.args.seed + 3)[:, None]
    for fraction in run.settings["sizes"]:
        size = round(fraction * h * w)
        sizes.append(size)
        values = run.lecture.sensitivity_n(run.model, run.x, [maps[k] for k in names] + [chance], run.classes,
                                           n=fraction, n_subsets=run.settings["subsets"],
                                           batch_size=run.settings["batch"],
                                           generator=torch.Generator().manual_seed(run.args.seed))  # (9 + 1, N)
        for name, v in zip([*names, SMOOTH], values):
            record(run, name, f"sensitivity-n (n={size})", v, undefined="a constant map or constant output drops")
            kept = v.numpy()[~np.isnan(v.numpy())]
            scores[name, size] = float(np.median(kept)) if len(kept) else math.nan
            spread[name, size] = tuple(np.percentile(kept, [25, 75])) if len(kept) else (math.nan, math.nan)
    print("\nSensitivity-n (median Pearson correlation over inputs), n = " + ", ".join(map(str, sizes))
          + f" pixels; {run.settings['subsets']} subsets per n")
    for name in [*names, SMOOTH]:
        shown = "  ".join(f"{scores[name, s]:+.2f}" for s in sizes)
        print(f"  {name.removeprefix('chance: '):>20}: {shown}")
    unsigned = [SHORT[k] for k, m in maps.items() if bool((m >= 0).all())]
    print("  The trap: removing pixels can raise the logit as well as lower it, so the drops are signed;\n"
          f"  never-negative maps ({', '.join(unsigned) or 'none here'}) cannot follow them: their "
          "correlation measures\n  how much the removed pixels matter in total, not the map's signs.")
    return {"sizes": sizes, "scores": scores, "spread": spread}


def measure_stability(run: Run, maps: dict) -> None:
    """Max-sensitivity and scale-free infidelity of every method, and two seeds of the sampled ones."""
    s, batch, seed = run.settings, run.settings["batch"], run.args.seed
    radius = 0.02 * float(run.x.max() - run.x.min())  # 2% of the inputs' range
    rows = min(run.x.shape[0], s["stable_rows"])
    for i in range(rows, run.x.shape[0]):
        drop(run, "max-sensitivity", "every method", i, f"max-sensitivity runs on the first {plural(rows)} only "
             "(its cost)")

    def infidelity(saliency):  # Yeh et al.'s optimal scaling: a map's units do not count
        return run.lecture.infidelity(run.model, run.x, saliency, run.classes, s["infidelity"], 0.1, batch,
                                      torch.Generator().manual_seed(seed), normalize=True).float()

    for name, method in methods(run).items():
        record(run, name, "max-sensitivity", run.lecture.max_sensitivity(
            method, run.model, run.x[:rows], run.classes[:rows], radius, s["draws"], batch,
            torch.Generator().manual_seed(seed)).float())
        record(run, name, "infidelity", infidelity(maps[name]))
    redraw = torch.Generator().manual_seed(seed + 4)

    def random_method(model, x, c):  # a map that ignores x and is redrawn at every call
        h, w = x.shape[-2:]
        return run.lecture.smooth_random_map(x.shape[0], h, w, redraw)[:, None].to(x.device)

    record(run, "chance: random map redrawn", "max-sensitivity", run.lecture.max_sensitivity(
        random_method, run.model, run.x[:rows], run.classes[:rows], radius, s["draws"], batch,
        torch.Generator().manual_seed(seed)).float())
    record(run, SMOOTH, "infidelity", infidelity(smooth_random_maps(run, seed + 7)[:, None].expand_as(run.x)))
    some = min(run.x.shape[0], s["seed_rows"])
    again = methods(run, seed=seed + 1)
    for name in ("SmoothGrad", "LIME", "SHAP"):
        other = again[name](run.model, run.x[:some], run.classes[:some])
        record(run, name, "seed agreement", [utils.rank_correlation(run.lecture.reduced_map(maps[name][i]),
                                                                    run.lecture.reduced_map(other[i]))
                                             for i in range(some)], undefined="a constant map: no rank correlation")
    a, b = smooth_random_maps(run, seed + 5), smooth_random_maps(run, seed + 6)
    record(run, "chance: two random maps", "seed agreement", [utils.rank_correlation(a[i], b[i])
                                                              for i in range(some)])
    table = medians(run, ("max-sensitivity", "infidelity", "seed agreement"))
    print(f"\nStability (medians): max-sensitivity under uniform noise of radius {radius:.3g} ({s['draws']} "
          f"draws, {plural(rows)}; low is stable),\n  infidelity with N(0, 0.1^2) nudges ({s['infidelity']} "
          "draws; low is faithful; each map first scaled by Yeh et al.'s\n  optimal factor, so a map's units do "
          "not count), and the rank correlation of two seeds (high is stable)")
    print(f"  {'':>22}  {'max-sensitivity':>14}{'infidelity':>16}{'seed agreement':>16}")
    for name in [*maps, "chance: random map redrawn", SMOOTH, "chance: two random maps"]:
        print(f"  {name.removeprefix('chance: '):>22}: " + "  ".join(
            table.get((name, k), " " * 14) for k in ("max-sensitivity", "infidelity", "seed agreement")))
    print("  Chance lines: a smooth random map redrawn at every call (it ignores the input; a method that\n"
          "  moves more than it is 'worse'), a fixed smooth random map for infidelity (a map that knows\n"
          "  nothing of the model, scaled as well as it can be), and two independent random maps for the seeds.")


# %% The sanity check -----------------------------------------------------------------------------


def correlation_where_nonzero(original: torch.Tensor, randomised: torch.Tensor) -> float:
    """Spearman over the pixels where either map is non-zero: the pixels both leave at exactly 0 are
    one big tie that would lift the correlation whatever the weights. NaN when undefined."""
    used = (original != 0) | (randomised != 0)
    if int(used.sum()) < 2:
        return math.nan
    return utils.rank_correlation(original[used], randomised[used])


def measure_sanity(run: Run) -> dict:
    """Cascading randomisation of a copy; Spearman of each map with the original's, per stage, over the
    pixels where either is non-zero; the last stage is recorded against two independent random maps."""
    s = run.settings
    count = min(s["sanity_rows"], run.x.shape[0])
    x, c = run.x[:count], run.classes[:count]
    for i in range(count, run.x.shape[0]):
        drop(run, "abs. rank corr. after randomisation", "every method", i,
             f"the sanity check runs on the first {plural(count)} only (its cost)")
    stages = run.lecture.randomisation_stages(run.model, s["stages"])
    # LIME and SHAP use the same coalitions (same seed and count) before and after, so only the
    # weights differ between the two maps.
    runs = methods(run, samples=s["sanity"])
    heat = {name: run.lecture.reduced_map(method(run.model, x, c)) for name, method in runs.items()}  # (count, H, W)
    correlations = {name: [] for name in runs}  # per stage, the mean over the inputs where it is defined
    defined = {name: [] for name in runs}  # per stage, how many inputs that mean is over
    shown = {name: [heat[name][:1]] for name in runs}
    last = {}
    for label, model in run.lecture.cascading_randomisation(run.model, stages, run.args.seed):
        for name, method in runs.items():
            m = run.lecture.reduced_map(method(model, x, c))
            rho = np.array([correlation_where_nonzero(heat[name][i], m[i]) for i in range(count)])
            ok = ~np.isnan(rho)
            correlations[name].append(float(rho[ok].mean()) if ok.any() else math.nan)
            defined[name].append(int(ok.sum()))
            shown[name].append(m[:1])
            last[name] = rho
    for name in runs:
        record(run, name, "abs. rank corr. after randomisation", np.abs(last[name]),
               undefined="the map became constant (all zero) once randomised: no rank correlation")
    a, b = smooth_random_maps(run, run.args.seed + 5), smooth_random_maps(run, run.args.seed + 6)
    record(run, "chance: two random maps", "abs. rank corr. after randomisation",
           [abs(correlation_where_nonzero(a[i], b[i])) for i in range(count)])
    labels = [label for label, _ in stages]
    print(f"\nSanity check on {plural(count)}: Spearman rank correlation with the original map, over the pixels\n"
          "  where either map is non-zero, as the layers are re-initialised from the output backwards\n  ("
          + " | ".join(labels) + "); the mean over the inputs where it is defined")
    for name in runs:
        print(f"  {name:>20}: " + "  ".join(f"{v:+.2f}" for v in correlations[name])
              + ("" if defined[name][-1] == count else f"   (last stage: {defined[name][-1]} of {count} defined)"))
    print("  Why only non-zero pixels: a map that is exactly 0 off the ink (or after a ReLU) ties most pixels\n"
          "  at one rank in both maps, and those ties alone would make two unrelated maps look correlated.\n"
          "  A map that stays correlated with the original while every layer is random explains the image,\n"
          "  not the model (Adebayo et al. 2018); the verdict compares the absolute rank correlation at the\n"
          "  last stage with that of two independent smooth random maps: 'worse' means the map survives\n"
          "  randomisation.")
    return {"labels": labels, "correlations": correlations, "shown": shown, "defined": defined, "count": count}


# %% SHAP's lesson on screen -----------------------------------------------------------------


def show_shapley(run: Run, shap_map: torch.Tensor) -> None:
    """Efficiency on screen, and the Shapley formula against KernelSHAP on a 2 x 2 grid."""
    x, classes, batch = run.x, run.classes, run.settings["batch"]
    with torch.no_grad():
        v_all = run.model(x).gather(1, classes[:, None])[:, 0]
        v_none = run.model(torch.zeros_like(x)).gather(1, classes[:, None])[:, 0]
    mask = run.lecture.grid_mask(*x.shape[-2:]).to(x.device).flatten()
    per_cell = torch.zeros(x.shape[0], run.lecture.GRID ** 2, dtype=x.dtype, device=x.device)
    per_cell.scatter_(1, mask.expand(x.shape[0], -1), shap_map[:, 0].flatten(1))  # each cell holds one value
    gap = (per_cell.sum(1) - (v_all - v_none)).abs().max()
    print(f"\nSHAP's efficiency: on '{run.titles[0]}' the {run.lecture.GRID ** 2} cell values add up to "
          f"{float(per_cell[0].sum()):+.4f} and v(all) - v(none) = {float(v_all[0] - v_none[0]):+.4f}; "
          f"largest gap over the inputs {float(gap):.1e}")
    # Four features, 16 coalitions: evaluate them all once, then compare the formula with
    # KernelSHAP's regression on coalitions drawn from the Shapley kernel (no new forward passes).
    x0, c0 = x[:1], classes[:1]
    quarters = run.lecture.grid_mask(*x.shape[-2:], cells=2).to(x.device)
    bits = (torch.arange(16)[:, None] >> torch.arange(4) & 1).bool()  # (16, 4): bit j = feature j
    v = run.lecture.coalition_values(run.model, x0, c0, quarters, torch.zeros_like(x0), bits.to(x.device), batch)
    print("  On a 2x2 grid (M = 4): the Shapley formula, then KernelSHAP with n coalitions drawn from "
          "the kernel")
    print(f"    {'formula':>12}: " + "  ".join(f"{float(p):+.4f}" for p in run.lecture.shapley_formula(v, 4)[0]))
    generator = torch.Generator().manual_seed(0)
    for n in (16, 256, 4096):
        Z = run.lecture.kernel_coalitions(4, n, generator)  # (n, 4)
        index = (Z.long() << torch.arange(4)).sum(1)  # each coalition's number, to look up v
        phi = run.lecture.efficient_regression(Z, v[:, index.to(v.device)], v[:, 15], v[:, 0])
        print(f"    {f'n = {n}':>12}: " + "  ".join(f"{float(p):+.4f}" for p in phi[0]))


