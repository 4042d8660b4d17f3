"""Check utilities: failures and how they read, comparisons, and the checks every exercise shares.

A check is (what is checked, a callable that raises Failed); run_check() turns it into one line,
`ok` or `FAIL` with the reason. Nothing here talks to the child: the shared checks ask a
Student (student.py) for values and judge them in the grader's own process.
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from grading.student import Student
    from grading.variations import Variation


# %% Failures and how they read --------------------------------------------------------------------


class Failed(Exception):
    """A check that did not pass: what was expected, what came, and a hint."""

    def __init__(self, expected: object, got: object, hint: str = "") -> None:
        super().__init__(expected, got, hint)
        self.expected, self.got, self.hint = expected, got, hint


class StudentRaised(Exception):
    """The student's code raised: `kinds` is its class's MRO by name, `todo` the starter's own marker."""

    def __init__(self, kinds: list[str], message: str, where: str, todo: bool) -> None:
        super().__init__(message)
        self.kinds, self.message, self.where, self.todo = kinds, message, where, todo


class Stopped(Exception):
    """The child cannot go on for this check: time limit, exit, flood of output, a course file damaged."""


class Opaque:
    """Something the student returned that the grader does not read (a meta tensor, an object)."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __repr__(self) -> str:
        return self.description


Check = tuple[str, Callable[[], None]]  # (what is checked, a callable that raises Failed)


def printable(text: object) -> str:
    """`text` with every control or other unprintable character escaped (\\x1b for ESC): nothing the
    student's code wrote can clear the teacher's terminal, retitle its window or move its cursor."""
    text = str(text)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def one_line(text: object, limit: int = 300) -> str:
    """`text` on one line, escaped (printable()), at most `limit` characters."""
    text = printable(" ".join(str(text).split()))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def nonfinite(value: torch.Tensor) -> str:
    """'' when finite, else e.g. '3 NaN and 1 infinite of 784 values'."""
    if not value.is_floating_point():
        return ""
    nan, inf = int(torch.isnan(value).sum()), int(torch.isinf(value).sum())
    if not nan and not inf:
        return ""
    return f"{nan} NaN and {inf} infinite of {value.numel()} values"


def show(value: object) -> str:
    """A value in words: a shape and range, NaN named; no value to copyable precision."""
    if isinstance(value, torch.Tensor):
        v = value.detach()
        bad = nonfinite(v)
        if bad:
            return f"tensor {tuple(v.shape)} with {bad}"
        if v.numel() <= 12:
            data = v.double().squeeze().tolist() if v.is_floating_point() else v.squeeze().tolist()
            return str(_rounded(data))
        if v.numel() == 0:
            return f"an empty tensor {tuple(v.shape)}"
        return (f"tensor {tuple(v.shape)} {str(v.dtype).replace('torch.', '')} from {float(v.min()):.2g} "
                f"to {float(v.max()):.2g}")
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} (not a finite number)"
    return repr(value)


def _rounded(data: object) -> object:
    if isinstance(data, list):
        return [_rounded(d) for d in data]
    return round(data, 3) if isinstance(data, float) else data


def close(ours: object, theirs: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Equal to float32 precision, `atol` relative to the reference's scale; NaN is never close.

    For maps (occlusion drops, gradients) whose error scales with their largest value: a float32 map
    computed by another route (batched, looped, another summation order) differs by a few hundred ulps
    of that value at most (u = 2**-24 each: 1e-5 of the scale is ~170 ulps), and by 1e-4 of each entry.
    Areas and gaps, whose error does not shrink with their size, use near() with an absolute tolerance.
    """
    if not isinstance(ours, torch.Tensor) or ours.shape != theirs.shape or ours.is_complex():
        return False
    scale = max(float(theirs.abs().max()), 1e-12) if theirs.numel() else 1.0
    return bool(torch.allclose(ours.detach().to(theirs.dtype), theirs, rtol=rtol, atol=atol * scale))


UNIT_ROUNDOFF = 2.0 ** -24  # float32: a result is exact to within this fraction of itself (about 6.0e-8)


def near(ours: object, theirs: torch.Tensor, atol: float, rtol: float = 0.0) -> bool:
    """Equal within `atol` absolute (and `rtol` relative): for quantities whose rounding error does not shrink
    with their size, such as areas and gaps (differences of numbers near 1); NaN is never near."""
    if not isinstance(ours, torch.Tensor) or ours.shape != theirs.shape or ours.is_complex():
        return False
    return bool(torch.allclose(ours.detach().double(), theirs.double(), rtol=rtol, atol=atol))


def worst(ours: object, theirs: torch.Tensor) -> str:
    """How far off an answer is, in words (a relative difference, never the expected values)."""
    if not isinstance(ours, torch.Tensor):
        return repr(ours) if isinstance(ours, Opaque) else f"a {type(ours).__name__}, not a tensor"
    if ours.shape != theirs.shape:
        return f"shape {tuple(ours.shape)} instead of {tuple(theirs.shape)}"
    bad = nonfinite(ours.detach())
    if bad:
        return f"{bad}"
    difference = float((ours.detach().double() - theirs.double()).abs().max())
    scale = float(theirs.abs().max())
    return f"a largest difference of {difference / scale:.1%} of the largest value" if scale > 0 else \
        f"a largest difference of {difference:.2g} (the answer is all zero)"


def need(student: Student | None, name: str) -> Callable:
    """The student's function `name` (called in the child), or a failed check that says it is missing."""
    if student is None:
        raise Failed(f"a function named {name}", "nothing: the file did not import", "fix the import first")
    return student.function(name)


# %% Shared checks ---------------------------------------------------------------------------------------


def written_check(student: Student | None, keys: Sequence[str]) -> Callable[[], None]:
    """A check that each written answer in the student's WRITTEN dict has 15 words or more."""

    def check() -> None:
        if student is None:
            raise Failed("WRITTEN", "nothing: the file did not import", "fix the import first")
        if "WRITTEN" not in student.names:
            raise Failed("a dict named WRITTEN", "nothing by that name", "keep the starter's names")
        written = student._value("WRITTEN")
        short = [key for key in keys
                 if not isinstance(written, dict) or len(str(written.get(key, "")).split()) < 15]
        if short:
            raise Failed("a few sentences (15 words or more) for each written question", f"too short: {short}",
                         "your teacher reads these; the grader only checks they are there")

    return check


def expect_value_error(call: Callable[[], object], what: str) -> None:
    """`call()` must raise ValueError (or a subclass, such as utils.InputError)."""
    try:
        call()
    except StudentRaised as error:
        if "ValueError" in error.kinds:
            return
        if error.todo:
            raise
        raise Failed(f"ValueError for {what}", f"{error.kinds[0]}: {one_line(error.message, 120)}",
                     "raise ValueError (utils.resolve_target does it for targets)") from None
    raise Failed(f"ValueError for {what}", "no error", "check the argument before using it")


def side_effect_check(student: Student | None, name: str, model: nn.Module, x: torch.Tensor, *args, **kwargs) -> None:
    """Nothing of the caller's changes: inputs, requires_grad, training mode, .grad, hooks; works under no_grad.

    The child calls the function three ways (plumbing.side_effects.observe: inputs that require
    grad; a model in training mode; under torch.no_grad()) and sends back the state it left;
    the verdict is made here, against this process's own copy of `x`.
    """
    if student is None:
        raise Failed(f"a function named {name}", "nothing: the file did not import", "fix the import first")
    sent = x.clone()
    facts = student.side_effects(name, model, x, *args, **kwargs)
    keys = {"requires_grad_after", "grad_after", "training_after", "under_no_grad", "inputs_after",
            "parameter_grads", "hooks_left"}
    if not isinstance(facts, dict) or not keys <= set(facts):
        raise Failed("a report of the side effects", show(facts), "")
    if facts["requires_grad_after"] is not True or facts["grad_after"] is not None:
        raise Failed("inputs keep requires_grad=True and get no .grad", "they changed",
                     "work on inputs.detach() (or a clone); take no .backward() on the caller's tensor")
    if facts["training_after"] is not True:
        raise Failed("a model in training mode stays in training mode", "it was switched to eval",
                     "never call model.eval() inside a method; the caller decides")
    out = facts["under_no_grad"]
    if not isinstance(out, torch.Tensor) or nonfinite(out.detach()) or not torch.isfinite(out).all():
        raise Failed("finite values under the caller's torch.no_grad()", show(out),
                     "use torch.enable_grad() where you need gradients")
    after = facts["inputs_after"]
    if not isinstance(after, torch.Tensor) or after.shape != sent.shape or not torch.equal(after, sent):
        raise Failed("inputs unchanged", "your method wrote into them", "clone before you edit")
    if facts["parameter_grads"]:
        raise Failed("no .grad on the model's parameters", f"{len(facts['parameter_grads'])} had a .grad",
                     "use torch.autograd.grad, or torch.no_grad() for forward passes only")
    if facts["hooks_left"]:
        raise Failed("no hooks left on the model", ", ".join(map(str, facts["hooks_left"])),
                     "remove hooks in finally")
    kept = student.modes(name, model, x, *args, **kwargs)
    if not isinstance(kept, dict) or kept.get("eval") is not True:
        raise Failed("a model handed over in eval mode stays in eval mode", "it was switched to training mode",
                     "you call model.train() (perhaps after model.eval()): leave the mode alone, or save "
                     "model.training and restore it in finally")
    if kept.get("train") is not True:
        raise Failed("a model handed over in training mode stays in training mode", "it was switched to eval",
                     "never call model.eval() inside a method; the caller decides")


# %% Running the checks ------------------------------------------------------------------------------------


def binder(student: Student | None, variation: Variation) -> Callable[..., Callable[[], None]]:
    """`bind(check, *args)`: the check function with the student, the variation and `args` bound."""
    return lambda check, *args: functools.partial(check, student, variation, *args)


def run_check(check: Check) -> tuple[bool, str]:
    """One line: `ok` or `FAIL` with the reason; the verdict is this process's own."""
    name, function = check
    try:
        function()
    except Failed as failure:
        hint = f"; hint: {failure.hint}" if failure.hint else ""
        return False, f"FAIL  {name}: expected {one_line(failure.expected)}; got {one_line(failure.got)}{hint}"
    except StudentRaised as error:
        if error.todo:
            return False, f"FAIL  {name}: not done yet ({one_line(error.message)})"
        return False, (f"FAIL  {name}: your code raised {one_line(error.kinds[0], 80)}: "
                       f"{one_line(error.message, 200)} (at {one_line(error.where, 120)})")
    except Stopped as stop:
        return False, f"FAIL  {name}: {one_line(stop, 400)}"
    except Exception as error:  # noqa: BLE001  (the answer was of a kind the check could not read)
        return False, (f"FAIL  {name}: the grader could not read your answer ({type(error).__name__}: "
                       f"{one_line(error, 160)}); return what the docstring says")
    return True, f"ok    {name}"
