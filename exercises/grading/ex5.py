"""Exercise 5 checks: a shortcut detector asked about models trained by the grader."""
from __future__ import annotations

import copy

import torch

from grading.checking import binder, Check, close, Failed, need, show, side_effect_check
from grading.student import Student
from grading.variations import remembered, Variation

import tasks  # noqa: E402

# The grader's own models: seeds and corners that no exercise file uses. Measured with the
# solution's |gradient| maps: shortcut models put 28% to 41% of the map on the marker, models
# trained without the shortcut 3% to 6% (the marker's area is 3.5%).
HIDDEN_MODELS = ((9001, "top_right", True), (9002, "top_right", False),
                 (11, "top_left", True), (9004, "top_left", False))  # seed 11: most of its gradient maps are zero


def hidden_models(variation: Variation) -> list[tuple[int, str, bool]]:
    """Two models of each kind; each marker corner is used by one of each, so the corner gives nothing away.

    The shipped variation includes a shortcut model (seed 11, top left) whose plain gradient
    is exactly zero on most marked images (dead ReLUs): a rule that works only on dense maps fails it.
    """
    if variation.seed is None:
        return list(HIDDEN_MODELS)
    g = variation.generator("shortcut models")
    corners = [tasks.CORNERS[int(i)] for i in torch.randperm(4, generator=g)[:2]]
    seeds = (torch.randperm(90_000, generator=g)[:4] + 10_000).tolist()
    specs = [(seeds[0], corners[0], True), (seeds[1], corners[0], False),
             (seeds[2], corners[1], True), (seeds[3], corners[1], False)]
    return [specs[int(i)] for i in torch.randperm(4, generator=g)]


SHORTCUT_DROP = 0.25  # a shortcut model loses at least this much accuracy when the marker is removed (measured: 0.5)
CLEAN_ACCURACY, CLEAN_CHANGE = 0.9, 0.05  # a clean one is accurate without the marker, and a random marker moves it little
_VERIFIED: dict[tuple, tuple] = {}


def does_what_its_label_says(model, seed: int, corner: str, shortcut: bool) -> bool:
    """A shortcut model loses accuracy without the marker; a clean one does not, and ignores a random marker."""
    accuracy = {marker: tasks.accuracy(model, *tasks.bars_dataset(400, seed=seed + 77, marker=marker, corner=corner))
                for marker in ("none", "shortcut", "random")}
    if shortcut:
        return accuracy["shortcut"] - accuracy["none"] >= SHORTCUT_DROP
    return accuracy["none"] >= CLEAN_ACCURACY and abs(accuracy["random"] - accuracy["none"]) <= CLEAN_CHANGE


def verified_model(seed: int, corner: str, shortcut: bool):
    """The hidden model drawn for (seed, corner, kind), checked to do what its label says; when it does
    not, trained again from another seed (the corner and kind, which the check's name shows, stay).
    Once per process for each drawing."""
    key = (seed, corner, shortcut)
    if key not in _VERIFIED:
        for attempt in range(6):
            trained_seed = seed + 100_003 * attempt
            model = tasks.train_bars_cnn(shortcut, seed=trained_seed, corner=corner)
            if does_what_its_label_says(model, trained_seed, corner, shortcut):
                _VERIFIED[key] = (model, trained_seed)
                break
        else:
            raise RuntimeError("no hidden model of this kind passed its verification in 6 draws (the grader's fault)")
    model, trained_seed = _VERIFIED[key]
    return copy.deepcopy(model), trained_seed


def as_bool(value: object) -> bool:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return bool(value)
    if type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    raise Failed("True or False", repr(value), "return a bool (bool(...) of a comparison)")


def call_share(student: Student, *args) -> object:
    """The student's marker_share, called in the child (a failed check when the file has none)."""
    return need(student, "marker_share")(*args)


def detector_runs(student: Student) -> None:
    """Try the detector on an untrained model first: an unfinished one costs no training (once per grading run)."""

    def run() -> None:
        torch.manual_seed(0)
        images, _ = tasks.bars_dataset(2, seed=3, marker="all")
        maps = need(student, "explain")(tasks.SmallCNN(width=tasks.BARS_WIDTH).eval(), images)
        need(student, "relies_on_marker")(maps, tasks.marker_mask("top_left"))

    remembered(student, "detector runs", run)


# %% The checks, one function each (bound to the student and the variation in checks()) ----------------


def check_share(student: Student, variation: Variation) -> None:
    """marker_share on hand-made maps: |map| inside the mask over |map| everywhere, per map, with channels
    summed in |.| first for (N, 3, H, W) maps.
    """
    mask = tasks.marker_mask("top_left")
    maps = torch.ones(3, 1, 16, 16)
    maps[1] = 0.0
    maps[1, 0, mask] = 2.0  # all of it on the marker
    maps[2, 0, mask] = -3.0  # negative on the marker: |.| counts; 9 * 3 of 9 * 3 + 247
    want = torch.tensor([9 / 256, 1.0, 27 / (27 + 247)])
    got = call_share(student, maps, mask)
    if not close(got, want, 1e-5, 1e-7):
        raise Failed(show(want), show(got), "|map| summed inside the mask over |map| summed everywhere, per map")
    colour = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) - 0.5
    heat = colour.abs().sum(1)
    want = (heat * mask).flatten(1).sum(1) / heat.flatten(1).sum(1)
    if not close(call_share(student, colour, mask), want, 1e-5, 1e-7):
        raise Failed(f"for (2, 3, 16, 16) maps: {show(want)}", show(call_share(student, colour, mask)),
                     "sum |.| over channels first")


def check_decision(student: Student, variation: Variation) -> None:
    """relies_on_marker separates the two extremes: maps almost all on the marker, and maps spread evenly."""
    mask = tasks.marker_mask("bottom_right")
    spread = torch.rand(20, 1, 16, 16, generator=torch.Generator().manual_seed(1)) + 0.5
    focused = spread * 0.01
    focused[:, :, mask] = 1.0
    decide = need(student, "relies_on_marker")
    for maps, want, what in ((focused, True, "maps almost all on the marker"),
                             (spread, False, "maps spread evenly (3.5% on the marker)")):
        got = as_bool(decide(maps.clone(), mask))
        if got != want:
            raise Failed(f"{want} for {what}", got, "the rule must separate these two extremes")


def check_explain(student: Student, variation: Variation) -> None:
    """explain gives finite maps (N, 1, 16, 16), one per image, with no side effects, on a quickly trained model."""
    detector_runs(student)
    model = tasks.train_bars_cnn(True, seed=1, corner="top_right", n=200, epochs=1)
    images, _ = tasks.bars_dataset(6, seed=2, marker="all", corner="top_right")
    maps = need(student, "explain")(model, images.clone())
    if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[0] != 6 \
            or tuple(maps.shape[-2:]) != (16, 16) or not torch.isfinite(maps).all():
        raise Failed("finite maps (6, 1, 16, 16)", show(maps), "one map per image")
    side_effect_check(student, "explain", model, images)


def check_hidden(student: Student, variation: Variation, seed: int, corner: str, shortcut: bool) -> None:
    """On one of the grader's own models (seed, marker corner, trained with the shortcut or not), the
    detector's verdict must be `shortcut`; a wrong one says how much of the maps lies on the marker.
    """
    detector_runs(student)
    model, seed = verified_model(seed, corner, shortcut)
    images, _ = tasks.bars_dataset(100, seed=seed + 50, marker="all", corner=corner)
    mask = tasks.marker_mask(corner)
    maps = need(student, "explain")(model, images.clone())
    got = as_bool(need(student, "relies_on_marker")(maps, mask.clone()))
    if got != shortcut:
        heat = maps.detach().abs().sum(1) if maps.dim() == 4 else maps.detach().abs()
        share = float(((heat * mask).flatten(1).sum(1) / heat.flatten(1).sum(1).clamp(min=1e-30)).mean())
        raise Failed(str(shortcut), str(got), f"your maps put {share:.1%} of their mass on the marker "
                     "(its area is 3.5%); train more models of both kinds to place your rule")


def hidden_name(seed: int, corner: str, shortcut: bool) -> str:
    """The printed name of one hidden model's check (the corner shown, the seed not)."""
    kind = "trained with the shortcut" if shortcut else "trained without it"
    return f"a hidden model {kind}, marker {corner.replace('_', ' ')}: detected correctly"


def checks(student: Student | None, variation: Variation) -> list[Check]:
    """The checks, in the order they are printed; `student` is None to list their names only."""
    bind = binder(student, variation)
    return [
        ("marker_share: hand-derived shares (|.|, channels)", bind(check_share)),
        ("relies_on_marker: True for maps on the marker, False for maps spread evenly", bind(check_decision)),
        ("explain: finite maps, one per image, no side effects", bind(check_explain)),
        *((hidden_name(*spec), bind(check_hidden, *spec)) for spec in hidden_models(variation)),
    ]
