"""Lecture 8's machinery: nine methods over many inputs, every measure, the verdicts, the files.

The measures themselves (their formulas and functions) are in 08_comparative_analysis.py; this
module runs them over a batch, adds the chance lines, tests each method against its chance line
(Wilcoxon signed-rank), and writes `08_measurements_{track}.csv`, `08_method_guide_{track}.csv`,
the Markdown guide and the figures. Read the lecture first.
"""
from __future__ import annotations

import contextlib
import csv
import inspect
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

import utils
from demos import common
from plumbing.cli import check_out_dir
from plumbing.methods import METHODS, compared
from plumbing.networks import NETWORKS



def inputs(n: int) -> str:
    """'1 input', '2 inputs'."""
    return f"{n} input{'' if n == 1 else 's'}"


TOLERANCE = 15  # the pointing game's tolerance at 224 pixels (Zhang et al.; TorchRay)
STROKE = 0.5  # a digit's ground truth: pixels brighter than half
SENSITIVITY_N = (0.002, 0.01, 0.05, 0.2, 0.5)  # subset sizes, as fractions of H * W
MIN_PAIRS = 6  # below this many inputs a Wilcoxon test cannot reach p < 0.05 (two-sided: 2 / 2^5)
ALPHA = 0.05
GROUND_TRUTH = utils.DATA_DIR / "ground_truth.json"
# What a run costs is set here. Each curve point, subset and coalition is one forward pass, and a
# 224-pixel photo costs a CPU ~100 times a 28-pixel digit, so the photo run draws fewer.
#   rows: inputs; steps: points per deletion / insertion curve; subsets: per size n for sensitivity-n
#   smooth, ig: SmoothGrad's noisy copies and IG's path points; lime, shap: coalitions per image
#   draws: max-sensitivity's perturbations (each re-runs the method: LIME and SHAP dominate the run's
#   cost), on the first stable_rows inputs; infidelity: its nudges (forward passes only), every input
#   sanity: LIME's and SHAP's coalitions in the randomisation test; stages: its cumulative steps
#   sanity_rows, seed_rows: inputs of the sanity check and of the second-seed run
#   batch: perturbed inputs per forward pass (memory, never the result)
DIGIT_RUN = dict(rows=20, steps=20, subsets=40, smooth=32, ig=32, lime=512, shap=1024, draws=3, infidelity=20,
                 stable_rows=10, sanity=256, stages=5, sanity_rows=8, seed_rows=10, batch=256,
                 sizes=SENSITIVITY_N)
PHOTO_RUN = dict(rows=7, steps=16, subsets=20, smooth=16, ig=16, lime=256, shap=256, draws=2, infidelity=10,
                 stable_rows=7, sanity=64, stages=4, sanity_rows=2, seed_rows=7, batch=16,
                 sizes=SENSITIVITY_N[1::2])
QUICK_RUN = dict(rows=2, steps=8, subsets=8, smooth=4, ig=4, lime=48, shap=64, draws=2, infidelity=4,
                 stable_rows=2, sanity=32, stages=2, sanity_rows=1, seed_rows=2, batch=64, size=112,
                 sizes=SENSITIVITY_N[2:3])
SIDE_BY_SIDE_ROWS = 6
SHORT = {row.name: row.short for row in METHODS.values()}
MARKERS = {row.name: row.marker for row in METHODS.values()}
# What this run's settings give the costly methods: (their parameter, the run's key). A method not
# named here runs at its own defaults.
BUDGETS = {"SmoothGrad": ("n_samples", "smooth"), "integrated gradients": ("steps", "ig"),
           "LIME": ("n_samples", "lime"), "SHAP": ("n_samples", "shap")}


# %% The command line and the inputs ------------------------------------------------------------


def parse_arguments(doc: str, argv):
    parser = utils.make_parser(doc)
    parser.add_argument("--steps", type=utils.int_in_range(1, 10_000), default=None,
                        help=f"points on each deletion and insertion curve (default {DIGIT_RUN['steps']} on "
                             f"digits, {PHOTO_RUN['steps']} on photos, {QUICK_RUN['steps']} with --quick)")
    parser.add_argument("--lime-samples", type=utils.int_in_range(1, 1_000_000), default=None,
                        help=f"LIME's coalitions per image (default {DIGIT_RUN['lime']} on digits, "
                             f"{PHOTO_RUN['lime']} on photos)")
    parser.add_argument("--shap-samples", type=utils.int_in_range(1, 1_000_000), default=None,
                        help=f"KernelSHAP's coalitions per image (default {DIGIT_RUN['shap']} on digits, "
                             f"{PHOTO_RUN['shap']} on photos)")
    parser.add_argument("--batch-size", type=utils.int_in_range(1, 100_000), default=None,
                        help=f"perturbed inputs per forward pass (memory, not results; default "
                             f"{DIGIT_RUN['batch']} on digits, {PHOTO_RUN['batch']} on photos)")
    parser.add_argument("--annotations", type=Path, default=None, metavar="FOLDER",
                        help="human attention maps: a grey PNG per input with the input's name (a photo's "
                             "file stem; shipped digits are digit_00, digit_01, ...), any size")
    common.add_layer_flag(parser)
    args = parser.parse_args(argv)
    common.check_cam_layer(args)  # a bad --layer or a ViT: one line, before any work
    if args.annotations is not None and not args.annotations.is_dir():
        raise utils.InputError(f"--annotations {args.annotations}: no such folder")
    return args


@dataclass
class Run:
    """One comparison: the model, the inputs and everything each measure compares them with."""

    lecture: ModuleType  # 08_comparative_analysis itself, whose measures this runs (it hands itself over)
    demo: common.Demo
    args: object
    settings: dict
    layer: str | None
    classes: torch.Tensor  # (N,) the class each input is explained for
    titles: list[str]
    masks: list  # per input: the object's boolean mask (H, W), or None
    attention: list  # per input: a human attention map (H, W) in [0, 1], or None
    attention_source: str
    labels: list[int] | None
    rows: list[tuple] = field(default_factory=list)  # (input, method, measure, value)

    @property
    def model(self) -> nn.Module:
        return self.demo.model

    @property
    def x(self) -> torch.Tensor:
        return self.demo.x

    @property
    def track(self) -> str:
        return self.demo.track


def load_objects() -> list[dict]:
    try:
        return json.loads(GROUND_TRUTH.read_text())["objects"]
    except (OSError, ValueError, KeyError) as error:
        raise utils.InputError(f"{GROUND_TRUTH}: unreadable ground truth ({error}); restore data/") from None


def object_masks(demo: common.Demo, objects: list[dict]) -> torch.Tensor:
    """(len(objects), H, W) the hand-drawn polygons filled on the original photos, then sent through
    the demo's own preprocessing (resize, crop), so they land where the pixels land."""
    transform = NETWORKS[demo.model_name].weights().transforms()  # the weights' own preprocessing
    masks = []
    for obj in objects:
        with Image.open(utils.DATA_DIR / obj["image"]) as photo:
            size = photo.size
        drawing = Image.new("RGB", size)
        ImageDraw.Draw(drawing).polygon([tuple(p) for p in obj["polygon"]], fill=(255, 255, 255))
        white = transform(drawing)[0]  # (H, W) normalised: 1 -> (1 - mean) / std
        masks.append(white > (0.5 - demo.mean[0]) / demo.std[0])
    masks = torch.stack(masks).float()[:, None]
    return F.interpolate(masks, size=demo.x.shape[-2:], mode="bilinear")[:, 0].to(demo.device) > 0.5


def annotation_names(demo: common.Demo, args) -> list[str]:
    """The file stem --annotations looks for, per input."""
    if demo.track == "mnist" and not args.image:
        return [f"digit_{i:02d}" for i in range(demo.x.shape[0])]
    return list(demo.names)


def read_annotations(folder: Path, names: list[str], size: tuple[int, int]) -> list[torch.Tensor]:
    """A grey PNG per input, resized to the input, in [0, 1]; a missing or unreadable one: InputError."""
    maps = []
    for name in names:
        path = folder / f"{name}.png"
        if not path.is_file():
            raise utils.InputError(f"--annotations {folder}: no {path.name} for the input '{name}'")
        try:
            with Image.open(path) as image:
                grey = image.convert("L").resize((size[1], size[0]), Image.BILINEAR)
        except (OSError, ValueError) as error:
            raise utils.InputError(f"--annotations: cannot read {path} ({error})") from None
        maps.append(torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255.0))
    return maps


def prepare(args, lecture: ModuleType) -> Run:
    """The demo's inputs with their classes, masks and attention maps; every check before slow work."""
    objects = load_objects()
    quick = args.quick
    demo = common.setup_demo(args, n_images=QUICK_RUN["rows"] if quick else None,
                            n_digits=QUICK_RUN["rows"] * 2 if quick else DIGIT_RUN["rows"],
                            images=list(dict.fromkeys(o["image"] for o in objects)),
                            quick_size=QUICK_RUN["size"])
    h, w = demo.x.shape[-2:]
    human = None
    if args.annotations is not None:  # read them all now: a bad file stops the run before any method
        human = read_annotations(args.annotations, annotation_names(demo, args), (h, w))
    target = common.demo_target(args, demo)
    layer = common.demo_layer(args, demo)
    if layer is not None and layer not in dict(demo.model.named_modules()):
        layer = None  # the demo layer of an older network: fall back to the last conv
    settings = dict(QUICK_RUN if quick else DIGIT_RUN if demo.track == "mnist" else PHOTO_RUN)
    for key, flag in (("steps", args.steps), ("lime", args.lime_samples), ("shap", args.shap_samples),
                      ("batch", args.batch_size)):
        settings[key] = flag or settings[key]
    titles, classes, masks, labels = inputs_of(demo, args, objects, target)
    if human is not None:
        attention, source = [a.to(demo.device) for a in human], f"the maps in {args.annotations}"
    elif demo.track == "mnist":
        attention = [None if m is None else m.float() for m in masks]
        source = "the stroke (pixels brighter than half)"
    else:
        attention = [None if m is None else m.float() for m in masks]
        source = "the course's hand-drawn object masks (data/ground_truth.json)"
    n = demo.x.shape[0]
    print(f"\n{inputs(n)} of {h}x{w} on {demo.network}; LIME and SHAP explain a {lecture.GRID}x{lecture.GRID} "
          f"grid of cells. Human agreement is measured against {source}.")
    if human is None:
        print("  These are not human attention: no eye-tracking or clicks went into them. They say where\n"
              "  the object is, not where people look; --annotations FOLDER measures agreement with\n"
              "  real maps.")
    return Run(lecture, demo, args, settings, layer, classes, titles, masks, attention, source, labels)


def inputs_of(demo, args, objects, target):
    """Per input: its title, the class it is explained for, its object mask (or None), the labels."""
    logits = utils.forward_in_chunks(demo.model, demo.x, 16)
    n = demo.x.shape[0]
    if demo.track == "mnist":
        labels = None if args.image else common.load_digits(n)[1]
        truth = labels or logits.argmax(1).tolist()  # the true digit when it is known
        classes = torch.tensor([target if target is not None else int(truth[i]) for i in range(n)])
        masks = [m if m.any() else None for m in demo.x[:, 0] > STROKE]  # the stroke (none: no mask)
        return [f"{i:02d} {demo.names[i]}" for i in range(n)], classes.to(demo.device), masks, labels
    # A photo's objects in data/ground_truth.json (the composite has two: cat and espresso).
    picked = [[o for o in objects if Path(o["image"]).stem == stem] for stem in demo.names]
    titles, classes, masks = [], [], []
    for i, found in enumerate(picked):
        if target is not None:
            c = target
        elif found:
            listed = torch.tensor([k for o in found for k in o["classes"]], device=logits.device)
            c = int(listed[logits[i, listed].argmax()])
        else:
            c = int(logits[i].argmax())
        named = [o for o in found if c in o["classes"]]
        masks.append(object_masks(demo, named[:1])[0] if named else None)
        titles.append(f"{i:02d} {demo.names[i]}: {demo.class_name(c)}"[:34])
        classes.append(c)
    return titles, torch.tensor(classes, device=demo.device), masks, None


# %% Every method once ------------------------------------------------------------------------


@contextlib.contextmanager
def counting(model: nn.Module) -> Iterator[list[int]]:
    """Count the examples the model evaluates (a forward pre-hook, removed on exit)."""
    count = [0]

    def add(module, args):
        count[0] += len(args[0])

    handle = model.register_forward_pre_hook(add)
    try:
        yield count
    finally:
        handle.remove()


def methods(run: Run, samples: int | None = None, seed: int | None = None) -> dict[str, Callable]:
    """name -> method(model, x, classes) for every method lecture 8 compares (plumbing/methods.py), with
    the run's settings (LIME's and SHAP's coalitions `samples` when given) and fixed seeds, so that a
    method called twice gives the same map."""
    seed = run.args.seed if seed is None else seed
    shared = {"batch_size": run.settings["batch"], "layer": run.layer}

    def bound(row) -> Callable:
        function = row.load()
        params = inspect.signature(function).parameters
        settings = {k: v for k, v in shared.items() if k in params}
        if row.name in BUDGETS:
            parameter, key = BUDGETS[row.name]
            settings[parameter] = samples if samples and key in ("lime", "shap") else run.settings[key]

        def method(m, x, c):
            drawn = {"generator": torch.Generator().manual_seed(seed)} if "generator" in params else {}
            return function(m, x, c, **settings, **drawn)
        return method

    return {row.name: bound(row) for row in compared()}


def explain_all(run: Run) -> dict[str, torch.Tensor]:
    """Each method's map of every input, once; prints the cost per image."""
    maps, seconds, evaluations = {}, {}, {}
    n = run.x.shape[0]
    for name, method in methods(run).items():
        with counting(run.model) as count:
            start = time.perf_counter()
            maps[name] = method(run.model, run.x, run.classes)
            seconds[name] = (time.perf_counter() - start) / n
        evaluations[name] = count[0] / n
    print("\nCost per image (model evaluations count forward passes; gradients add a backward each):")
    for name in maps:
        print(f"  {name:>20}: {seconds[name]:8.3f} s  {evaluations[name]:7.0f} "
              f"evaluation{'' if round(evaluations[name]) == 1 else 's'}")
    run.seconds = seconds
    return maps


def record(run: Run, method: str, measure: str, values, which=None) -> None:
    """One row per input of the measurements file; NaN values (undefined) get no row."""
    which = range(len(values)) if which is None else which
    for i, v in zip(which, values):
        if not math.isnan(float(v)):
            run.rows.append((run.titles[i], method, measure, float(v)))


# %% Chance lines ---------------------------------------------------------------------------


def smooth_random_maps(run: Run, seed: int) -> torch.Tensor:
    """(N, H, W) a 7 x 7 grid of uniform numbers, bilinearly enlarged: random, but as smooth as a real
    map, so deleting in its order makes holes of the same kind as a real map's."""
    n, (h, w) = run.x.shape[0], run.x.shape[-2:]
    low = torch.rand(n, 1, run.lecture.GRID, run.lecture.GRID, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[:, 0].to(run.x.device)


# %% The measures over every input ---------------------------------------------------------


def measure_curves(run: Run, maps: dict) -> dict:
    """Deletion (baseline 0: the mean colour, or black digits) and insertion (blur) for every map, its
    reverse, a smooth random map and a per-pixel random map; AUCs recorded per input."""
    steps, batch = run.settings["steps"], run.settings["batch"]
    n, (h, w) = run.x.shape[0], run.x.shape[-2:]
    chance_maps = {"chance: smooth random map": smooth_random_maps(run, run.args.seed),
                   "chance: per-pixel random order": torch.rand(
                       n, h, w, generator=torch.Generator().manual_seed(run.args.seed + 1)).to(run.x.device)}
    curve_of = {"deletion": run.lecture.deletion_curve, "insertion": run.lecture.insertion_curve}
    curves, aucs = {}, {}
    todo = {**{name: run.lecture.pixel_map(m) for name, m in maps.items()},
            **{f"chance: {name} reversed": -run.lecture.pixel_map(m) for name, m in maps.items()}, **chance_maps}
    for kind, fn in curve_of.items():
        for name, heat in todo.items():
            if kind == "insertion" and name == "chance: per-pixel random order":
                continue
            curves[kind, name] = fn(run.model, run.x, heat, run.classes, steps, batch_size=batch)
            aucs[kind, name] = run.lecture.area_under_curve(curves[kind, name]).cpu()
            record(run, name, f"{kind} AUC", aucs[kind, name])
    print(f"\nDeletion and insertion AUC, median over {inputs(n)} ({steps} steps; deletion: low is good, "
          "insertion: high is good; in brackets the method's own order reversed)")
    med = {key: float(v.median()) for key, v in aucs.items()}
    for name in maps:
        back = f"chance: {name} reversed"
        print(f"  {name:>20}: deletion {med['deletion', name]:.3f} ({med['deletion', back]:.3f})"
              f"   insertion {med['insertion', name]:.3f} ({med['insertion', back]:.3f})")
    smooth_name, pixel_name = "chance: smooth random map", "chance: per-pixel random order"
    print(f"  {'smooth random map':>20}: deletion {med['deletion', smooth_name]:.3f}   "
          f"insertion {med['insertion', smooth_name]:.3f}   <- the chance line of both verdicts")
    pixel, smooth_auc = med["deletion", pixel_name], med["deletion", smooth_name]
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


def measure_masks(run: Run, maps: dict) -> None:
    """Pointing game, relevance mass and rank against the object masks, with their chance lines."""
    have = [i for i, m in enumerate(run.masks) if m is not None]
    if not have:
        print("\nNo object mask for these inputs (data/ground_truth.json names the course's photos): "
              "no pointing game, relevance mass or rank")
        return
    h, w = run.x.shape[-2:]
    tolerance = TOLERANCE * h / 224  # TorchRay's 15 px at 224 px, scaled to this input size
    mask = torch.stack([run.masks[i] for i in have])  # (n, H, W)
    for name, m in maps.items():
        record(run, name, "pointing game", run.lecture.pointing_game(m[have], mask, tolerance).float(), have)
        record(run, name, "relevance mass", run.lecture.relevance_mass(m[have], mask).float(), have)
        record(run, name, "relevance rank", run.lecture.relevance_rank(m[have], mask).float(), have)
    area = mask.flatten(1).float().mean(1)  # what a uniform map gets in mass, a random ranking in rank
    record(run, "chance: mask area", "relevance mass", area, have)
    record(run, "chance: mask area", "relevance rank", area, have)
    rr, cc = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centre = -((rr - (h - 1) / 2) ** 2 + (cc - (w - 1) / 2) ** 2).float().expand(len(have), h, w)
    record(run, "chance: centre point", "pointing game",
           run.lecture.pointing_game(centre.to(mask.device), mask, tolerance).float(), have)
    if run.track == "mnist":
        # The stroke is the truth AND where maps that multiply by the input are non-zero, so a random
        # map restricted to the ink hits every time: that, not a uniform map, is the chance line.
        pointing_chance, why = "chance: random map on the ink", "a random map on the ink hits every time"
        record(run, pointing_chance, "pointing game", near_rate(run, mask, mask, tolerance), have)
    else:
        pointing_chance, why = "chance: random map", "a random map's maximum is a uniform pixel"
        record(run, pointing_chance, "pointing game", near_rate(run, torch.ones_like(mask), mask, tolerance), have)
    run.pointing_chance = pointing_chance
    table = summary(run, ("pointing game", "relevance mass", "relevance rank"))
    print(f"\nAgreement with the object ({inputs(len(have))}; medians; pointing game: mean hit rate, "
          f"tolerance {tolerance:.3g} px)")
    print(f"  {'':>22}  {'pointing game':>14}{'relevance mass':>16}{'relevance rank':>16}")
    for name in [*maps, pointing_chance, "chance: centre point", "chance: mask area"]:
        print(f"  {name.removeprefix('chance: '):>22}: " + "  ".join(table.get((name, k), " " * 14) for k in
                                                                     ("pointing game", "relevance mass",
                                                                      "relevance rank")))
    print(f"  Chance lines: for the pointing game {why}; for mass and rank the mask's share of the\n"
          "  image, what a uniform map and a random ranking get.")
    if run.track == "mnist":
        blank = run.x[have].abs().sum(1) == 0  # (n, H, W) where the digit image is exactly 0
        zero_off = [SHORT[k] for k, m in maps.items()
                    if bool((run.lecture.pixel_map(m[have]) * blank).flatten(1).abs().amax(1).eq(0).all())]
        print("  The trap on digits: the truth is the stroke, and " + (", ".join(zero_off) or "no method")
              + " is exactly zero wherever the\n  image is 0 (it multiplies by x), so its maximum and most "
              "of its mass land on the digit by\n  construction, whatever the network does. Hence the "
              "ink-random chance line: a method must beat a map that only knows\n  where the ink is.")
    print("  For scale, TorchRay's VOC07 pointing game with VGG16: centre 69.6%, gradient 76.3%, "
          "guided backprop 75.9%, Grad-CAM 86.6%.")


def near_rate(run: Run, where: torch.Tensor, mask: torch.Tensor, tolerance: float) -> torch.Tensor:
    """The expected hit rate of a map whose maximum is a uniform pixel of `where`."""
    hits = run.lecture.near(mask, tolerance) & where.bool()
    return hits.flatten(1).float().sum(1) / where.flatten(1).float().sum(1)


def measure_human(run: Run, maps: dict) -> None:
    """CC against the attention maps, with a smooth random map as the chance line."""
    have = [i for i, a in enumerate(run.attention) if a is not None]
    if not have:
        return
    attention = torch.stack([run.attention[i] for i in have])
    for name, m in maps.items():
        record(run, name, "human agreement (CC)", run.lecture.human_agreement(m[have], attention).float(), have)
    chance = smooth_random_maps(run, run.args.seed + 2)[have]
    record(run, "chance: smooth random map", "human agreement (CC)",
           run.lecture.human_agreement(chance, attention).float(), have)
    table = summary(run, ("human agreement (CC)",))
    print(f"\nHuman agreement: CC against {run.attention_source}, {inputs(len(have))} (median; chance: a "
          "smooth random map, which has a real map's blobs but no reason)")
    for k in [*maps, "chance: smooth random map"]:
        print(f"  {k.removeprefix('chance: '):>22}: {table[(k, 'human agreement (CC)')]}")


def measure_sensitivity_n(run: Run, maps: dict) -> dict:
    """Sensitivity-n at each size, all methods sharing one draw of subsets per size."""
    names, scores, sizes = list(maps), {}, []
    h, w = run.x.shape[-2:]
    chance = smooth_random_maps(run, run.args.seed + 3)[:, None]
    for fraction in run.settings["sizes"]:
        size = round(fraction * h * w)
        sizes.append(size)
        values = run.lecture.sensitivity_n(run.model, run.x, [maps[k] for k in names] + [chance], run.classes,
                                       n=fraction, n_subsets=run.settings["subsets"],
                                       batch_size=run.settings["batch"],
                                       generator=torch.Generator().manual_seed(run.args.seed))  # (9 + 1, N)
        for name, v in zip([*names, "chance: smooth random map"], values):
            record(run, name, f"sensitivity-n (n={size})", v)
            scores[name, size] = float(np.nanmedian(v.numpy())) if not torch.isnan(v).all() else math.nan
    print("\nSensitivity-n (median Pearson correlation over inputs), n = " + ", ".join(map(str, sizes))
          + " pixels; "
          f"{run.settings['subsets']} subsets per n:\n  a true 0 shows up as about "
          f"+-{1 / math.sqrt(run.settings['subsets']):.2f} per input")
    for name in [*names, "chance: smooth random map"]:
        shown = "  ".join(f"{scores[name, s]:+.2f}" for s in sizes)
        print(f"  {name.removeprefix('chance: '):>20}: {shown}")
    unsigned = [SHORT[k] for k, m in maps.items() if bool((m >= 0).all())]
    print("  The trap: removing pixels can raise the logit as well as lower it, so the drops are signed;\n"
          f"  never-negative maps ({', '.join(unsigned) or 'none here'}) cannot follow them: their "
          "correlation measures\n  how much the removed pixels matter in total, not the map's signs.")
    return {"sizes": sizes, "scores": scores}


def measure_stability(run: Run, maps: dict) -> None:
    """Max-sensitivity and infidelity of every method, and two seeds of the sampled ones."""
    s, batch, seed = run.settings, run.settings["batch"], run.args.seed
    radius = 0.02 * float(run.x.max() - run.x.min())  # 2% of the inputs' range
    rows = min(run.x.shape[0], s["stable_rows"])
    for name, method in methods(run).items():
        record(run, name, "max-sensitivity", run.lecture.max_sensitivity(
            method, run.model, run.x[:rows], run.classes[:rows], radius, s["draws"], batch,
            torch.Generator().manual_seed(seed)).float())
        record(run, name, "infidelity", run.lecture.infidelity(
            run.model, run.x, maps[name], run.classes, s["infidelity"], 0.1, batch,
            torch.Generator().manual_seed(seed)).float())
    redraw = torch.Generator().manual_seed(seed + 4)

    def random_method(model, x, c):  # a map that ignores x: the chance line of max-sensitivity
        low = torch.rand(x.shape[0], 1, run.lecture.GRID, run.lecture.GRID, generator=redraw).to(x.device)
        return F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)

    record(run, "chance: random map redrawn", "max-sensitivity", run.lecture.max_sensitivity(
        random_method, run.model, run.x[:rows], run.classes[:rows], radius, s["draws"], batch,
        torch.Generator().manual_seed(seed)).float())
    record(run, "chance: zero map", "infidelity", run.lecture.infidelity(
        run.model, run.x, torch.zeros_like(run.x), run.classes, s["infidelity"], 0.1, batch,
        torch.Generator().manual_seed(seed)).float())
    some = min(run.x.shape[0], s["seed_rows"])
    again = methods(run, seed=seed + 1)
    for name in ("SmoothGrad", "LIME", "SHAP"):
        other = again[name](run.model, run.x[:some], run.classes[:some])
        record(run, name, "seed agreement", [utils.rank_correlation(run.lecture.pixel_map(maps[name][i]),
                                                                    run.lecture.pixel_map(other[i]))
                                             for i in range(some)])
    a, b = smooth_random_maps(run, seed + 5), smooth_random_maps(run, seed + 6)
    record(run, "chance: two random maps", "seed agreement", [utils.rank_correlation(a[i], b[i])
                                                              for i in range(some)])
    table = summary(run, ("max-sensitivity", "infidelity", "seed agreement"))
    print(f"\nStability (medians): max-sensitivity under uniform noise of radius {radius:.3g} ({s['draws']} "
          f"draws, {inputs(rows)}; low is stable),\n  infidelity with N(0, 0.1^2) nudges ({s['infidelity']} "
          "draws; low is faithful), and the rank correlation of two seeds (high is stable)")
    print(f"  {'':>22}  {'max-sensitivity':>14}{'infidelity':>16}{'seed agreement':>16}")
    for name in [*maps, "chance: random map redrawn", "chance: zero map", "chance: two random maps"]:
        print(f"  {name.removeprefix('chance: '):>22}: " + "  ".join(
            table.get((name, k), " " * 14) for k in ("max-sensitivity", "infidelity", "seed agreement")))
    print("  Chance lines: a random map redrawn at every call (it moves as much as a map can), the zero map\n"
          "  (it predicts no change: its infidelity is the variance of the output's own change) and two\n"
          "  independent random maps. Infidelity depends on a map's scale: LIME and SHAP give every pixel\n"
          "  its whole cell's value, so their sum over a cell is the cell's size times what they meant.")


def measure_sanity(run: Run) -> dict:
    """Cascading randomisation of a copy; Spearman of each map with the original's, per stage; the
    last stage (every layer re-initialised) is recorded against two independent random maps."""
    s = run.settings
    count = min(s["sanity_rows"], run.x.shape[0])
    x, c = run.x[:count], run.classes[:count]
    stages = run.lecture.randomisation_stages(run.model, s["stages"])
    # LIME and SHAP use the same coalitions (same seed and count) before and after, so only the
    # weights differ between the two maps.
    runs = methods(run, samples=s["sanity"])
    original = {name: method(run.model, x, c) for name, method in runs.items()}
    heat = {name: run.lecture.pixel_map(m) for name, m in original.items()}  # (count, H, W)
    correlations = {name: [] for name in runs}
    shown = {name: [original[name][:1]] for name in runs}
    last, on_used = {}, {}
    for label, model in run.lecture.cascading_randomisation(run.model, stages, run.args.seed):
        for name, method in runs.items():
            m = run.lecture.pixel_map(method(model, x, c))
            rho = [utils.rank_correlation(heat[name][i], m[i]) for i in range(count)]
            correlations[name].append(float(np.nanmean(rho)) if not all(map(math.isnan, rho)) else math.nan)
            shown[name].append(m[:1])
            last[name] = rho
            used = heat[name] != 0  # the pixels the original map does not leave at exactly 0
            on_used[name] = [utils.rank_correlation(heat[name][i][used[i]], m[i][used[i]])
                             if used[i].sum() > 1 else math.nan for i in range(count)]
    for name in runs:
        record(run, name, "abs. rank corr. after randomisation", [abs(r) for r in last[name]])
    a, b = smooth_random_maps(run, run.args.seed + 5), smooth_random_maps(run, run.args.seed + 6)
    record(run, "chance: two random maps", "abs. rank corr. after randomisation",
           [abs(utils.rank_correlation(a[i], b[i])) for i in range(count)])
    labels = [label for label, _ in stages]
    print(f"\nSanity check on {count} input(s): Spearman rank correlation with the original map as the "
          "layers are re-initialised from the output backwards (" + " | ".join(labels) + ")")
    for name in runs:
        print(f"  {name:>20}: " + "  ".join(f"{v:+.2f}" for v in correlations[name]))
    tied = {name: float((heat[name] == 0).float().mean()) for name in runs}
    for name in [k for k, t in tied.items() if t > 0.3 and not all(map(math.isnan, on_used[k]))]:
        print(f"  The trap of ties: {tied[name]:.0%} of {name}'s original pixels are exactly 0 and share one "
              "rank; where the\n  randomised map is 0 too, those ties alone lift the rank correlation: over "
              f"the other pixels it is {np.nanmean(on_used[name]):+.2f}\n  at the last stage, not "
              f"{correlations[name][-1]:+.2f}.")
    constant = [SHORT[k] for k, v in last.items() if all(map(math.isnan, v))]
    if constant:
        print(f"  nan: the map of {', '.join(constant)} became constant (all zero after its ReLU), which "
              "has no rank\n  correlation: it changed completely, and has no row in the measurements.")
    print("  A map that stays correlated with the original while every layer is random explains the image,\n"
          "  not the model (Adebayo et al. 2018); the verdict compares the absolute rank correlation at the\n"
          "  last stage with that of two independent smooth random maps: 'worse' means the map survives\n"
          "  randomisation.")
    return {"labels": labels, "correlations": correlations, "shown": shown, "count": count}


# %% Verdicts ---------------------------------------------------------------------------------


def wilcoxon_verdict(values: list[float], chance: list[float], direction: str) -> tuple[float, str]:
    """(p, verdict) of the paired values against the chance line: scipy's default Wilcoxon test."""
    from scipy.stats import rankdata, wilcoxon

    if len(values) < MIN_PAIRS:
        return math.nan, "too few inputs"
    a, b = np.asarray(values, dtype=np.float64), np.asarray(chance, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-equal pairs: scipy warns and returns a p of 1 or NaN
        try:
            p = float(wilcoxon(a, b).pvalue)
        except ValueError:
            p = math.nan
    if not p < ALPHA:
        return p, "no difference"
    d = a - b
    d = d[d != 0]
    r = rankdata(np.abs(d))
    up, down = r[d > 0].sum(), r[d < 0].sum()  # the two signed-rank sums
    good = up > down if direction == "higher" else down > up
    return p, "better" if good else "worse"


MEASURES = {  # measure -> (direction, its chance line; None: the run decides)
    "deletion AUC": ("lower", "chance: smooth random map"),
    "insertion AUC": ("higher", "chance: smooth random map"),
    "pointing game": ("higher", None),
    "relevance mass": ("higher", "chance: mask area"),
    "relevance rank": ("higher", "chance: mask area"),
    "human agreement (CC)": ("higher", "chance: smooth random map"),
    "max-sensitivity": ("lower", "chance: random map redrawn"),
    "infidelity": ("lower", "chance: zero map"),
    "seed agreement": ("higher", "chance: two random maps"),
    "abs. rank corr. after randomisation": ("lower", "chance: two random maps"),
}


def direction_and_chance(run: Run, measure: str) -> tuple[str, str]:
    if measure.startswith("sensitivity-n"):
        return "higher", "chance: smooth random map"
    direction, chance = MEASURES[measure]
    return direction, chance or run.pointing_chance


def guide(run: Run) -> list[dict]:
    """One row per method and measure: median, chance line, Wilcoxon p and verdict."""
    values: dict[tuple[str, str], dict[str, float]] = {}
    for title, method, measure, v in run.rows:
        values.setdefault((method, measure), {})[title] = v
    out = []
    for (method, measure), per_input in values.items():
        if method.startswith("chance:"):
            continue
        direction, versus = direction_and_chance(run, measure)
        chance = values.get((versus, measure), {})
        both = [t for t in per_input if t in chance]
        p, verdict = wilcoxon_verdict([per_input[t] for t in both], [chance[t] for t in both], direction)
        out.append({"method": method, "measure": measure, "direction": direction,
                    "median": float(np.median(list(per_input.values()))), "versus": versus,
                    "p_value": p, "verdict": verdict})
    return out


def summary(run: Run, measures) -> dict:
    """(method, measure) -> the median (the pointing game: the hit rate) as text, chance lines included."""
    values: dict = {}
    for _, method, measure, v in run.rows:
        if measure in measures:
            values.setdefault((method, measure), []).append(v)
    # The pointing game's values are 0 or 1: its hit rate (the mean) says more than a median.
    typical = {k: np.mean(v) if k[1] == "pointing game" else np.median(v) for k, v in values.items()}
    return {k: f"{t:>+14.3f}" for k, t in typical.items()}


# %% The files --------------------------------------------------------------------------------


def write_files(run: Run, rows: list[dict]) -> None:
    """08_measurements_{track}.csv, 08_method_guide_{track}.csv and the Markdown guide."""
    out, track = check_out_dir(run.args.out_dir), run.track
    try:
        with open(out / f"08_measurements_{track}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["input", "method", "measure", "value"])
            writer.writerows((t, m, k, repr(v)) for t, m, k, v in run.rows)  # repr: every digit, exact
        with open(out / f"08_method_guide_{track}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            for r in rows:  # at least 7 significant digits; an undefined p is written empty
                p = "" if math.isnan(r["p_value"]) else f"{r['p_value']:.9g}"
                writer.writerow({**r, "median": f"{r['median']:.9g}", "p_value": p})
        markdown = guide_markdown(run, rows)
        (out / f"08_method_guide_{track}.md").write_text(markdown)
    except OSError as error:
        raise utils.InputError(f"cannot write the method guide to {out}: {error.strerror or error}") from None
    print("\n" + markdown)
    print(f"saved {out / f'08_measurements_{track}.csv'}, {out / f'08_method_guide_{track}.csv'} and .md")


def by_verdict(rows: list[dict], method: str) -> dict[str, list[str]]:
    words: dict[str, list[str]] = {}
    for r in rows:
        if r["method"] == method:
            words.setdefault(r["verdict"], []).append(r["measure"])
    return words


def guide_markdown(run: Run, rows: list[dict]) -> str:
    """The guide's words, each generated from a verdict of the CSV (Wilcoxon against a chance line)."""
    n = run.x.shape[0]
    lines = [f"# Method guide: {run.demo.network}, {inputs(n)}", "",
             f"Every verdict is a two-sided Wilcoxon signed-rank test (p < {ALPHA}) of a method's per-input "
             "values against the chance line named in 08_method_guide_" + run.track + ".csv; 'too few "
             f"inputs' below {MIN_PAIRS} pairs."]
    if all(r["verdict"] == "too few inputs" for r in rows):
        lines += ["", f"**Every verdict here is 'too few inputs'**: this run has fewer than {MIN_PAIRS} "
                      "inputs per measure (--quick), so its numbers show the machinery, not the methods."]
    lines += ["", "## What this run measured", ""]
    for method in dict.fromkeys(r["method"] for r in rows):
        words = by_verdict(rows, method)
        said = [f"better than chance on {', '.join(words['better'])}" if "better" in words else "",
                f"worse than chance on {', '.join(words['worse'])}" if "worse" in words else "",
                f"no different from chance on {', '.join(words['no difference'])}" if "no difference" in words
                else "",
                f"untested (too few inputs) on {', '.join(words['too few inputs'])}"
                if "too few inputs" in words else ""]
        lines.append(f"- **{method}**: " + "; ".join(s for s in said if s) + ".")
    verdict = {(r["method"], r["measure"]): r["verdict"] for r in rows}
    methods_here = list(dict.fromkeys(r["method"] for r in rows))
    stable = [m for m in methods_here if verdict.get((m, "max-sensitivity")) == "better"]
    unstable = [m for m in methods_here if verdict.get((m, "max-sensitivity")) == "worse"]
    like_noise = [m for m in methods_here if verdict.get((m, "max-sensitivity")) == "no difference"]
    medians = {(r["method"], r["measure"]): r["median"] for r in rows}
    ordered = sorted((m for m in methods_here if (m, "max-sensitivity") in medians),
                     key=lambda m: medians[m, "max-sensitivity"])
    lines += ["", "## Stability", "",
              "- Moves less than a redrawn random map under small input noise (max-sensitivity 'better'): "
              + (", ".join(stable) or "none (or untested)") + ".",
              "- Moves more than it ('worse'): " + (", ".join(unstable) or "none") + ".",
              "- No different from it: " + (", ".join(like_noise) or "none") + ".",
              "- By median max-sensitivity, most stable first: "
              + ", ".join(f"{m} {medians[m, 'max-sensitivity']:.3g}" for m in ordered) + "."]
    seeds = [(m, verdict[m, "seed agreement"], medians[m, "seed agreement"]) for m in methods_here
             if (m, "seed agreement") in verdict]
    if seeds:
        lines.append("- Two seeds (rank correlation, against two random maps): "
                     + "; ".join(f"{m} {v} (median {med:.2f})" for m, v, med in seeds) + ".")
    fails = [m for m in methods_here if verdict.get((m, "abs. rank corr. after randomisation")) == "worse"]
    lines += ["", "## Sanity check", "",
              "- Still correlated with the original map when every layer is random ('worse' than two random "
              "maps): " + (", ".join(fails) or "none (or untested)") + "."]
    lines += ["", "## The literature's view, and what this run says", "",
              "| method | the literature says | tested by | verdict that would agree | this run "
              "| agreement |",
              "| --- | --- | --- | --- | --- | --- |"]
    for method, (claim, measure, expected) in ((row.name, row.claim) for row in compared() if row.claim):
        got = verdict.get((method, measure), "not measured")
        agree = ("cannot tell" if got in ("too few inputs", "not measured") else
                 "agrees" if got == expected else "disagrees")
        lines.append(f"| {method} | {claim} | {measure} | {expected} | {got} | {agree} |")
    return "\n".join(lines) + "\n"


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


# %% Figures ----------------------------------------------------------------------------------


def display_map(saliency: torch.Tensor) -> np.ndarray:
    """Every map the same way for the eye: |.| summed over channels, divided by its 99th percentile."""
    return utils.scale_for_display(utils.reduce_channels(saliency, "sum_abs"))


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
    fig, axes = plt.subplots(2, 2, figsize=(15, 8.5), layout="constrained")
    colours = plt.get_cmap("tab10")(np.arange(len(names)))
    smooth_name = "chance: smooth random map"
    for col, kind in enumerate(("deletion", "insertion")):
        ax = axes[0, col]
        fraction = np.linspace(0, 1, curves[kind, names[0]].shape[1])
        for name, colour in zip(names, colours):
            ax.plot(fraction, curves[kind, name][0].cpu(), color=colour, label=SHORT[name])
        ax.plot(fraction, curves[kind, smooth_name][0].cpu(), "k--", lw=2, label="smooth random map")
        if kind == "deletion":
            ax.plot(fraction, curves[kind, "chance: per-pixel random order"][0].cpu(), ":", color="k", lw=1.5,
                    label="per-pixel random order\n(no chance line: see the text)")
        good = "lower AUC is better" if kind == "deletion" else "higher AUC is better"
        ax.set_title(f"{kind} on '{run.titles[0]}' ({good})", fontsize=10)
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "put back"))
        ax.set_ylabel("probability of the explained class")
        ax.legend(fontsize=7, ncol=2, loc="upper right" if kind == "deletion" else "lower right")
        ax = axes[1, col]
        own = [float(aucs[kind, n].median()) for n in names]
        flipped = [float(aucs[kind, f"chance: {n} reversed"].median()) for n in names]
        at = np.arange(len(names))
        ax.bar(at - 0.2, own, 0.4, color=colours, label="the method's order")
        ax.bar(at + 0.2, flipped, 0.4, color="lightgrey", edgecolor="grey", label="its order reversed")
        chance = float(aucs[kind, smooth_name].median())
        ax.axhline(chance, color="k", ls="--", label="smooth random map (the chance line)")
        ax.set_xticks(at, [SHORT[n] for n in names], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"median {kind} AUC over {inputs(run.x.shape[0])}")
        ax.set_title(f"{kind} AUC: " + ("LOW is good: the prediction falls fast" if kind == "deletion" else
                                        "HIGH is good: the prediction returns fast"), fontsize=10)
        ax.set_ylim(0, max(own + flipped + [chance]) * 1.35)  # room for the legend above the bars
        ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.suptitle(f"Deletion and insertion (RISE), {run.demo.network}", fontsize=12)
    return fig


def plot_pointing(run: Run, maps: dict, row: int):
    import matplotlib.pyplot as plt

    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(14, 6.5), layout="constrained",
                                         gridspec_kw={"width_ratios": [1, 1.5]})
    ax_img.imshow(run.demo.display()[row], cmap="gray" if run.x.shape[1] == 1 else None)
    ax_img.contour(run.masks[row].cpu().float().numpy(), levels=[0.5], colors="lime", linewidths=2)
    w = run.x.shape[-1]
    for (name, m), colour in zip(maps.items(), plt.get_cmap("tab10")(np.arange(len(maps)))):
        marker = MARKERS[name]
        peak = int(run.lecture.pixel_map(m[row: row + 1]).flatten(1).argmax(1))
        ax_img.plot(peak % w, peak // w, marker, color=colour, ms=9, mec="white", label=SHORT[name])
    ax_img.set_title(f"'{run.titles[row]}'\nthe object's mask (green) and each map's maximum\n"
                     "(markers may hide each other)", fontsize=9)
    ax_img.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    table: dict = {}
    for _, method, measure, v in run.rows:
        if measure in ("pointing game", "relevance mass", "relevance rank"):
            table.setdefault((method, measure), []).append(v)
    names = [*maps, run.pointing_chance, "chance: mask area"]
    at = np.arange(len(names))
    for k, (measure, colour) in enumerate(zip(("pointing game", "relevance mass", "relevance rank"),
                                              ("tab:blue", "tab:orange", "tab:green"))):
        heights = [float(np.mean(table[n, measure])) if (n, measure) in table else 0.0 for n in names]
        ax_bar.bar(at + (k - 1) * 0.27, heights, 0.27, color=colour,
                   label={"pointing game": "pointing game (hit rate)", "relevance mass": "relevance mass",
                          "relevance rank": "relevance rank"}[measure])
    ax_bar.set_xticks(at, [SHORT.get(n, n.removeprefix("chance: ") + "\n(chance)") for n in names],
                      rotation=30, ha="right", fontsize=8)
    ax_bar.set_ylim(0, 1.15)
    ax_bar.set_ylabel("mean over the inputs with a mask (higher is better)")
    count = len(table.get((names[0], "pointing game"), []))
    ax_bar.set_title(f"agreement with the object's mask, {inputs(count)} "
                     "(the last two groups are chance lines;\nfor scale, TorchRay with VGG16 on VOC07: "
                     "centre 69.6%, Grad-CAM 86.6%)", fontsize=9)
    ax_bar.legend(fontsize=8, ncol=3, loc="upper left")
    return fig


def plot_sensitivity(run: Run, measured: dict, names: list[str]):
    import matplotlib.pyplot as plt

    sizes, scores = measured["sizes"], measured["scores"]
    fig, ax = plt.subplots(figsize=(11, 6), layout="constrained")
    for name, colour in zip(names, plt.get_cmap("tab10")(np.arange(len(names)))):
        marker = MARKERS[name]
        ax.plot(sizes, [scores[name, s] for s in sizes], marker + "-", color=colour, label=SHORT[name])
    ax.plot(sizes, [scores["chance: smooth random map", s] for s in sizes], "k*--", ms=10,
            label="smooth random map (chance)")
    noise = 1 / math.sqrt(run.settings["subsets"] * run.x.shape[0])
    ax.axhspan(-noise, noise, color="grey", alpha=0.2, label="where a true 0 lands\n(one standard error)")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(size) for size in sizes])
    ax.minorticks_off()
    ax.set_xlabel("n, pixels removed together (log scale)")
    ax.set_ylabel("median Pearson correlation (higher is better)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title(f"Sensitivity-n on {run.demo.network}: do the attributions of n pixels add up to the output "
                 "drop? (maps that are never negative cannot follow signed drops)", fontsize=10)
    ax.legend(fontsize=8, ncol=3)
    return fig


def plot_stability(run: Run, names: list[str]):
    """Per method, the median max-sensitivity, infidelity and CC, each with its chance line."""
    import matplotlib.pyplot as plt

    table: dict = {}
    for _, method, measure, v in run.rows:
        table.setdefault((method, measure), []).append(v)
    panels = [("max-sensitivity", "low is stable", True), ("infidelity", "low is faithful", True),
              ("human agreement (CC)", "high agrees", False)]
    panels = [p for p in panels if (names[0], p[0]) in table]
    fig, axes = plt.subplots(1, len(panels), figsize=(16, 6), layout="constrained", squeeze=False)
    at = np.arange(len(names))
    for ax, (measure, good, log) in zip(axes[0], panels):
        ax.bar(at, [float(np.median(table[n, measure])) for n in names],
               color=plt.get_cmap("tab10")(at))
        _, versus = direction_and_chance(run, measure)
        ax.axhline(float(np.median(table[versus, measure])), color="k", ls="--",
                   label=versus.removeprefix("chance: ") + " (chance)")
        if log:
            ax.set_yscale("log")
        ax.set_xticks(at, [SHORT[n] for n in names], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{measure}: {good}", fontsize=10)
        ax.set_ylabel("median over the inputs" + (" (log scale)" if log else ""))
        ax.legend(fontsize=8)
    fig.suptitle(f"Stability, faithfulness to small nudges and agreement with {run.attention_source} "
                 f"({run.demo.network})", fontsize=11)
    return fig


def plot_sanity(run: Run, sanity: dict, names: list[str]):
    import matplotlib.pyplot as plt

    labels, correlations, shown = sanity["labels"], sanity["correlations"], sanity["shown"]
    cols = len(labels) + 1
    fig = plt.figure(figsize=(max(16, 1.5 * cols + 9), 1.2 + 1.0 * len(names)), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1.3])
    ax = left.subplots()
    at = np.arange(cols)
    for name, colour in zip(names, plt.get_cmap("tab10")(np.arange(len(names)))):
        marker = MARKERS[name]
        ax.plot(at, [1.0, *correlations[name]], marker + "-", color=colour, label=SHORT[name], alpha=0.85)
    ax.set_xticks(at, ["original", *labels], rotation=60, ha="right", fontsize=7)
    lowest = np.nanmin([v for values in correlations.values() for v in values] + [0.0])
    ax.set_ylim(min(-0.3, lowest - 0.05), 1.05)
    ax.set_xlabel("layers re-initialised, from the output backwards (cumulative)")
    ax.set_ylabel(f"Spearman rank correlation with the original map\n(mean over {sanity['count']} input(s))")
    ax.set_title("Model randomisation (Adebayo et al. 2018): a map that stays\n"
                 "near 1 explains the image, not the model", fontsize=10)
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
    """The digits the CNN gets wrong, else those it reads by the smallest margin, explained for the
    class it reads and for the other one (the true class if it is wrong, else the runner-up)."""
    labels = run.labels
    with torch.no_grad():
        logits = run.model(run.x)
    truth = torch.tensor(labels, device=logits.device)
    others = logits.scatter(1, truth[:, None], float("-inf"))
    margin = logits.gather(1, truth[:, None])[:, 0] - others.amax(1)  # true logit - best other; < 0: wrong
    wrong = (margin < 0).nonzero()[:, 0].tolist()
    if wrong:
        print(f"\nRight and wrong: the CNN misreads {len(wrong)} of the {len(labels)} shipped digits")
        picked = sorted(wrong, key=lambda i: float(margin[i]))[:count]
    else:
        print(f"\nRight and wrong: the CNN reads all {len(labels)} shipped digits correctly, so these are "
              "the ones it reads by the smallest margin (true logit minus the best other)")
        picked = margin.argsort()[:count].tolist()
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
        print(f"  a {labels[i]} read as {read}, margin {float(margin[i]):+.2f}; "
              f"explained for {read} and {other}")
    fig, axes = utils.figure_grid(len(cases), 1 + 2 * len(names), panel=1.8,
                                  title="Digits the CNN misreads (or nearly): each map for the class it "
                                        "reads and for the other class (|map| / 99th percentile)")
    for r, (image, label, read, other, margin_r) in enumerate(cases):
        utils.show_image(axes[r, 0], image, f"a {label}, read as {read}\nmargin {margin_r:+.2f}")
        for c, (which, name) in enumerate([(w, n) for w in ("read", "other") for n in names], start=1):
            axes[r, c].imshow(display_map(maps_by_case[r][which][name])[0], cmap="inferno", vmin=0, vmax=1)
            digit = read if which == "read" else other
            role = "read" if which == "read" else ("true" if other == label else "runner-up")
            axes[r, c].set_title(f"{SHORT[name]}\nfor {digit} ({role})", fontsize=8)
    utils.save_figure(fig, run.args.out_dir, "08_right_and_wrong_mnist.png")


# %% The whole comparison, in the order the lecture teaches it --------------------------------


def compare(run: Run, maps: dict) -> list[dict]:
    """Every measure on every input, the verdicts, the files and the figures."""
    names, out, track = list(maps), run.args.out_dir, run.track
    show_shapley(run, maps["SHAP"])
    utils.save_figure(plot_side_by_side(run, maps), out, f"08_side_by_side_{track}.png")
    curves = measure_curves(run, maps)
    utils.save_figure(plot_curves(run, curves, names), out, f"08_deletion_insertion_{track}.png")
    measure_masks(run, maps)
    if any(m is not None for m in run.masks):
        row = next(i for i, m in enumerate(run.masks) if m is not None)
        utils.save_figure(plot_pointing(run, maps, row), out, f"08_pointing_game_{track}.png")
    measure_human(run, maps)
    sensitivity = measure_sensitivity_n(run, maps)
    utils.save_figure(plot_sensitivity(run, sensitivity, names), out, f"08_sensitivity_n_{track}.png")
    measure_stability(run, maps)
    utils.save_figure(plot_stability(run, names), out, f"08_stability_{track}.png")
    sanity = measure_sanity(run)
    utils.save_figure(plot_sanity(run, sanity, names), out, f"08_sanity_check_{track}.png")
    if track == "mnist" and run.labels:
        right_and_wrong(run)
    rows = guide(run)
    if run.args.quick:
        print(f"\n--quick: fewer than {MIN_PAIRS} inputs per measure, so every verdict below is 'too few "
              "inputs'; the files have the full run's layout, not its conclusions.")
    write_files(run, rows)
    return rows
