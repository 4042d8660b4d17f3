"""Lecture 8's comparison, part 1: the run's settings, its inputs, every method once, the bookkeeping.

A `Run` holds what every measure compares: the model, the inputs, their classes, object masks and
attention maps, and the rows of the measurements file (with every input a measure leaves out, and
why). The measures and the verdicts are the lecture's functions, reached through `Run.lecture`
(08_comparative_analysis hands itself over): this module never imports a lecture.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import math
import time
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
from plumbing.methods import METHODS, compared
from plumbing.networks import NETWORKS


def plural(n: int, noun: str = "input") -> str:
    """'1 input', '2 inputs'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


TOLERANCE_PX = 15  # the pointing game's tolerance in pixels at 224 pixels (Zhang et al.; TorchRay)
STROKE = 0.5  # a digit's ground truth: pixels brighter than half
MASK_TOO_LARGE = 0.9  # an object mask over this share of the crop cannot tell a map from any other
SENSITIVITY_N = (0.002, 0.01, 0.05, 0.2, 0.5)  # subset sizes, as fractions of H * W
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
DIGIT_RUN = dict(rows=20, steps=20, subsets=40, smooth=32, ig=32, lime=512, shap=1024, draws=2, infidelity=20,
                 stable_rows=20, sanity=256, stages=5, sanity_rows=20, seed_rows=20, batch=256,
                 sizes=SENSITIVITY_N)
PHOTO_RUN = dict(rows=7, steps=16, subsets=20, smooth=16, ig=16, lime=256, shap=256, draws=2, infidelity=10,
                 stable_rows=7, sanity=64, stages=4, sanity_rows=2, seed_rows=7, batch=16,
                 sizes=SENSITIVITY_N[1::2])
QUICK_RUN = dict(rows=2, steps=8, subsets=8, smooth=4, ig=4, lime=48, shap=64, draws=2, infidelity=4,
                 stable_rows=2, sanity=32, stages=2, sanity_rows=1, seed_rows=2, batch=64, size=112,
                 sizes=SENSITIVITY_N[2:3])
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
    rows: list[tuple] = field(default_factory=list)  # (input, method, measure, value): the measurements file
    dropped: list[tuple] = field(default_factory=list)  # (measure, method, input, reason): left out, and why
    seconds: dict = field(default_factory=dict)  # method -> seconds per image, set by explain_all

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
    print(f"\n{plural(n)} of {h}x{w} on {demo.network}; LIME and SHAP explain a {lecture.GRID}x{lecture.GRID} "
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
    run.seconds.update(seconds)
    return maps


def record(run: Run, method: str, measure: str, values, which=None, undefined: str = "undefined") -> None:
    """One row per input of the measurements file. A NaN value (undefined) gets no row: it is left
    out with the reason `undefined`."""
    which = range(len(values)) if which is None else which
    for i, v in zip(which, values):
        if math.isnan(float(v)):
            drop(run, measure, method, i, undefined)
        else:
            run.rows.append((run.titles[i], method, measure, float(v)))


def drop(run: Run, measure: str, method: str, i: int, reason: str) -> None:
    """Input i has no value for this measure and method (method "every method": none has one)."""
    run.dropped.append((measure, method, run.titles[i], reason))


def report_dropped(run: Run) -> list[str]:
    """Every input left out of a measure, counted, one line per reason (and the maps it concerns); printed."""
    maps: dict = {}  # (reason, measure, input) -> the maps that have no value there
    for measure, method, title, reason in run.dropped:
        maps.setdefault((reason, measure, title), {})[method] = None
    every = {row.name for row in compared()}
    inputs_of: dict = {}  # (reason, which maps, measure) -> the inputs left out
    for (reason, measure, title), names in maps.items():
        chance = any(n.startswith("chance:") for n in names)
        which = ("every method" + (" and chance line" if chance else "") if every <= set(names)
                 else ", ".join(names))
        inputs_of.setdefault((reason, which, measure), {})[title] = None
    merged: dict = {}  # the same reason, maps and inputs: one line for all its measures
    for (reason, which, measure), titles in inputs_of.items():
        merged.setdefault((reason, which, tuple(titles)), []).append(measure)
    lines = [f"{', '.join(measures)}: {plural(len(titles))} left out ({', '.join(titles)}) for {which}: {reason}"
             for (reason, which, titles), measures in merged.items()]
    print("\nLeft out, with the reason (" + plural(len(run.dropped), "value") + " in all):")
    for line in lines or ["nothing: every input informs every measure"]:
        print("  " + line)
    return lines


# %% Which way is good, and which chance lines judge each measure (the contract, fourth edition) ---------

PLAUSIBILITY = ("pointing game", "relevance mass", "relevance rank", "human agreement (CC)")
DIRECTION = {"deletion AUC": "lower", "insertion AUC": "higher", "pointing game": "higher",
             "relevance mass": "higher", "relevance rank": "higher", "human agreement (CC)": "higher",
             "max-sensitivity": "lower", "infidelity": "lower", "seed agreement": "higher",
             "abs. rank corr. after randomisation": "lower", "sensitivity-n": "higher"}
SMOOTH = "chance: smooth random map"


def direction_of(measure: str) -> str:
    """`higher` or `lower`: which is better (every sensitivity-n size alike)."""
    return DIRECTION["sensitivity-n" if measure.startswith("sensitivity-n") else measure]


def plausibility_chance(track: str) -> list[str]:
    """The model-independent maps a plausibility measure is judged against: on digits the image itself
    (the stroke IS the truth), on photos its edges; on both a centre prior."""
    return ["chance: input map" if track == "mnist" else "chance: edge map", "chance: centre prior"]


def chance_lines(track: str, measure: str) -> list[str]:
    """Every chance line the measure's verdict is judged against (a method must beat them all)."""
    if measure in PLAUSIBILITY:
        return plausibility_chance(track)
    if measure == "max-sensitivity":
        return ["chance: random map redrawn"]
    if measure in ("seed agreement", "abs. rank corr. after randomisation"):
        return ["chance: two random maps"]
    return [SMOOTH]  # deletion, insertion, sensitivity-n, infidelity
