"""Grade an exercise: one line per check, then `score: P/T`.

    python exercises/grade.py N [FILE]

N is the exercise (1 to 5); FILE is your file (default: the starter,
exercises/0N_....py). A failed check says what was expected, what came and a hint.
Exit status: 0 when every check passes, 1 otherwise, 2 for a usage error. Your
code's exceptions are failed checks, never a crash of the grader. Offline; each
exercise grades in well under two minutes on a laptop CPU.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import sys
import traceback
import warnings
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

EXERCISES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXERCISES))
import tasks  # noqa: E402  (puts the course folder on sys.path)
import utils  # noqa: E402

FILES = {1: "01_occlusion.py", 2: "02_misclassified.py", 3: "03_evaluation_protocol.py",
         4: "04_domain_model.py", 5: "05_find_the_shortcut.py"}


# %% The machinery: checks, failures, loading the student's file ---------------------------------


class Failed(Exception):
    """A check that did not pass: what was expected, what came, and a hint."""

    def __init__(self, expected: object, got: object, hint: str = "") -> None:
        super().__init__(expected, got, hint)
        self.expected, self.got, self.hint = expected, got, hint


Check = tuple[str, Callable[[], None]]  # (what is checked, a callable that raises Failed)


def one_line(text: object, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def show(value: object) -> str:
    """A value as a short string: small tensors in full (4 decimals), large ones by shape and range."""
    if isinstance(value, torch.Tensor):
        v = value.detach().cpu()
        if v.numel() <= 30:
            data = v.double().squeeze().tolist() if v.is_floating_point() else v.squeeze().tolist()
            return str(_rounded(data))
        return (f"tensor {tuple(v.shape)} {str(v.dtype).replace('torch.', '')} from {float(v.min()):.4g} "
                f"to {float(v.max()):.4g}")
    return repr(value)


def _rounded(data: object) -> object:
    if isinstance(data, list):
        return [_rounded(d) for d in data]
    return round(data, 4) if isinstance(data, float) else data


def load(path: Path) -> ModuleType:
    """Import the student's file as a module; its own errors propagate to the caller."""
    spec = importlib.util.spec_from_file_location(f"graded_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def need(module: ModuleType, name: str):
    """The student's function or value `name`, or a failed check that says it is missing."""
    if not hasattr(module, name):
        raise Failed(f"a function or value named {name}", "nothing by that name", "keep the starter's names")
    return getattr(module, name)


def run_check(check: Check) -> tuple[bool, str]:
    name, function = check
    quiet = io.StringIO()  # the student's prints would break one line per check
    try:
        with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            function()
    except Failed as failure:
        hint = f"; hint: {failure.hint}" if failure.hint else ""
        return False, f"FAIL  {name}: expected {one_line(failure.expected)}; got {one_line(failure.got)}{hint}"
    except NotImplementedError as todo:
        return False, f"FAIL  {name}: not done yet ({one_line(todo)})"
    except (Exception, SystemExit, RecursionError) as error:  # the student's code raised: a failed check
        where = traceback.extract_tb(error.__traceback__)[-1]
        return False, (f"FAIL  {name}: your code raised {type(error).__name__}: {one_line(error, 200)} "
                       f"(at {Path(where.filename).name}:{where.lineno})")
    return True, f"ok    {name}"


def grade(exercise: int, path: Path, out=None) -> tuple[int, int]:
    """Run every check of `exercise` on the file at `path`; print one line each and the score."""
    out = out or sys.stdout
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = load(path)
        checks = GRADERS[exercise](module)
    except (Exception, SystemExit) as error:
        print(f"FAIL  {path.name} does not import: {type(error).__name__}: {one_line(error, 200)}", file=out)
        checks, module = GRADERS[exercise](None), None
        results = [(False, f"FAIL  {name}: not run, the file does not import") for name, _ in checks]
    else:
        results = [run_check(check) for check in checks]
    for _, line in results:
        print(line, file=out, flush=True)
    passed = sum(ok for ok, _ in results)
    print(f"score: {passed}/{len(results)}", file=out)
    return passed, len(results)


# %% Shared helpers for the checks ---------------------------------------------------------------


def written_check(student: ModuleType | None, keys: Sequence[str]) -> Callable[[], None]:
    """A check that each written answer in the student's WRITTEN dict has 15 words or more."""

    def check() -> None:
        written = need(student, "WRITTEN")
        short = [key for key in keys
                 if not isinstance(written, dict) or len(str(written.get(key, "")).split()) < 15]
        if short:
            raise Failed("a few sentences (15 words or more) for each written question", f"too short: {short}",
                         "your teacher reads these; the grader only checks they are there")

    return check


def close(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Equal to float32 precision, `atol` relative to the reference's scale."""
    if not isinstance(ours, torch.Tensor) or ours.shape != theirs.shape:
        return False
    scale = max(float(theirs.abs().max()), 1e-12)
    return bool(torch.allclose(ours.detach().to(theirs.dtype).cpu(), theirs.cpu(), rtol=rtol, atol=atol * scale))


def worst(ours: torch.Tensor, theirs: torch.Tensor) -> str:
    if not isinstance(ours, torch.Tensor):
        return f"a {type(ours).__name__}, not a tensor"
    if ours.shape != theirs.shape:
        return f"shape {tuple(ours.shape)} instead of {tuple(theirs.shape)}"
    return f"a largest difference of {float((ours.detach().double() - theirs.double()).abs().max()):.4g}"


def hooks_left(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules()
            for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
            if getattr(m, attr, None)]


def expect_value_error(call: Callable[[], object], what: str) -> None:
    try:
        call()
    except ValueError:
        return
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001  (the wrong kind of error is a failed check)
        raise Failed(f"ValueError for {what}", f"{type(error).__name__}: {one_line(error, 120)}",
                     "raise ValueError (utils.resolve_target does it for targets)") from None
    raise Failed(f"ValueError for {what}", "no error", "check the argument before using it")


def side_effect_check(method: Callable, model: nn.Module, x: torch.Tensor) -> None:
    """Nothing of the caller's changes: inputs, requires_grad, training mode, .grad, hooks."""
    before = x.clone()
    x_grad = x.clone().requires_grad_(True)
    method(model, x_grad)
    if not x_grad.requires_grad or x_grad.grad is not None:
        raise Failed("inputs keep requires_grad=True and get no .grad", "they changed",
                     "work on inputs.detach() (or a clone); take no .backward() on the caller's tensor")
    model.train()
    method(model, x)
    if not model.training:
        raise Failed("a model in training mode stays in training mode", "it was switched to eval",
                     "never call model.eval() inside a method; the caller decides")
    model.eval()
    with torch.no_grad():
        out = method(model, x)
    if not torch.isfinite(out).all():
        raise Failed("finite values under the caller's torch.no_grad()", show(out),
                     "use torch.enable_grad() where you need gradients")
    if not torch.equal(x, before):
        raise Failed("inputs unchanged", "your method wrote into them", "clone before you edit")
    if any(p.grad is not None for p in model.parameters()):
        raise Failed("no .grad on the model's parameters", "some .grad were set",
                     "use torch.autograd.grad, or torch.no_grad() for forward passes only")
    if hooks_left(model):
        raise Failed("no hooks left on the model", ", ".join(hooks_left(model)), "remove hooks in finally")


class GradingCNN(nn.Module):
    """A small random CNN for any image size: conv, ReLU, conv, ReLU, 2x2 average pool, linear (5 classes)."""

    def __init__(self, channels: int = 3, classes: int = 5, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 2).flatten(1))


class SumModel(nn.Module):
    """Logits (sum of all pixels, 0): the drop of a patch is the sum of what it hides."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(1)
        return torch.stack([total, torch.zeros_like(total)], dim=1)


# %% Exercise 1: occlusion ------------------------------------------------------------------------


def reference_occlusion(model: nn.Module, x: torch.Tensor, target, window: int, stride: int,
                        baseline: float) -> tuple[torch.Tensor, str]:
    """Captum's Occlusion when it is installed; otherwise the same placement, written out here."""
    n, c, h, w = x.shape
    try:
        from captum.attr import Occlusion
    except ImportError:
        pass
    else:  # Captum's target=None means "the model returns one score per example", not the prediction
        with torch.no_grad():
            classes = utils.resolve_target(model(x), target)
        result = Occlusion(model).attribute(x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                                            baselines=baseline, target=classes)
        return result.detach(), "Captum's Occlusion"
    with torch.no_grad():
        logits = model(x)
        classes = utils.resolve_target(logits, target)
        scores = logits.gather(1, classes[:, None])[:, 0]
        total, count = torch.zeros_like(x), torch.zeros(h, w, dtype=x.dtype)
        for i in range(math.ceil((h - window) / stride) + 1):
            for j in range(math.ceil((w - window) / stride) + 1):
                hidden = x.clone()
                hidden[:, :, i * stride:i * stride + window, j * stride:j * stride + window] = baseline
                drop = scores - model(hidden).gather(1, classes[:, None])[:, 0]
                total[:, :, i * stride:i * stride + window, j * stride:j * stride + window] += drop.view(n, 1, 1, 1)
                count[i * stride:i * stride + window, j * stride:j * stride + window] += 1
    return total / count, "the grader's reference (Captum is not installed)"


def diagnose_occlusion(got: torch.Tensor, expected: torch.Tensor, covered: torch.Tensor) -> str:
    """A hint that names the classic mistake when the answer has its signature."""
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return "return a tensor shaped like inputs"
    got = got.detach().double()
    if close(got, -expected):
        return "the sign is flipped: the drop is S_c(x) - S_c(x with the patch hidden)"
    if close(got, expected * covered):
        return "you summed the drops: divide by the number of patches that covered each pixel"
    if close(got[..., :-1, :-1], expected[..., :-1, :-1]) or bool((got[..., -1, :] == 0).all()):
        return ("the last row or column is wrong: the last patch starts at k * stride and may hang over the "
                "edge, where it is cut off (patch_corners)")
    return "compare your loops with the formula in the file's header"


def grade_occlusion(student: ModuleType | None) -> list[Check]:
    occlusion = (lambda *a, **k: need(student, "occlusion")(*a, **k)) if student else None
    corners = (lambda *a: need(student, "patch_corners")(*a)) if student else None

    def check_corners() -> None:
        cases = {(5, 2, 2): [0, 2, 4], (10, 4, 4): [0, 4, 8], (11, 4, 3): [0, 3, 6, 9], (10, 4, 3): [0, 3, 6],
                 (6, 6, 1): [0], (4, 1, 1): [0, 1, 2, 3], (9, 5, 2): [0, 2, 4]}
        for (size, window, stride), want in cases.items():
            got = corners(size, window, stride)
            if list(got) != want:
                fit = list(range(0, size - window + 1, stride))
                hint = ("patches must reach the last pixel: when stride does not divide size - window, one more "
                        "patch starts at k * stride and hangs over the edge") if list(got) == fit else \
                    "there are ceil((size - window) / stride) + 1 corners, k * stride for k = 0, 1, ..."
                raise Failed(f"patch_corners({size}, {window}, {stride}) == {want}", list(got), hint)

    def check_shape() -> None:
        model, x = GradingCNN(), torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
        out = occlusion(model, x, None, window=3, stride=2)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
            raise Failed("a float32 tensor of shape (2, 3, 8, 8)", show(out) if isinstance(out, torch.Tensor)
                         else type(out).__name__, "return one value per input element")
        if out.requires_grad:
            raise Failed("a detached result", "requires_grad=True", "return .detach() or compute under no_grad")
        if not torch.equal(out[:, 0], out[:, 1]) or not torch.equal(out[:, 0], out[:, 2]):
            raise Failed("the same value in every channel of a pixel", "channels differ",
                         "the patch hides all channels at once")

    def hand_case(h: int, w: int, window: int, stride: int, want: torch.Tensor, covered: torch.Tensor) -> None:
        x = torch.ones(1, 1, h, w, dtype=torch.float64)
        got = occlusion(SumModel(), x, 0, window=window, stride=stride, baseline=0.0)
        if not close(got, want.view(1, 1, h, w).double(), 1e-6, 1e-9):
            raise Failed(show(want), show(got), diagnose_occlusion(got, want.view(1, 1, h, w).double(),
                                                                  covered.view(1, 1, h, w).double()))

    def check_mean() -> None:
        # 3x3 ones, f = sum of pixels, 2x2 patches at stride 1: every patch hides 4 ones, so every
        # drop is 4, and the mean of 4s is 4 whether a pixel is covered once (corner) or 4 times (centre).
        covered = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]])
        hand_case(3, 3, 2, 1, torch.full((3, 3), 4.0), covered)

    def check_edges() -> None:
        # 5x5 ones, 2x2 patches at stride 2: corners 0, 2, 4; the patches at 4 hang over the edge and
        # hide 2 pixels (1 in the corner), so the last row and column get 2 and the corner 1.
        want = torch.full((5, 5), 4.0)
        want[4, :], want[:, 4] = 2.0, 2.0
        want[4, 4] = 1.0
        hand_case(5, 5, 2, 2, want, torch.ones(5, 5))

    def check_linear() -> None:
        # f = (sum of w * x, 0): drop(P) = sum over P of w (x - baseline), averaged per pixel by hand.
        g = torch.Generator().manual_seed(3)
        weights = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
        x = torch.rand(1, 2, 4, 5, generator=g, dtype=torch.float64)
        baseline = 0.5

        class Linear(nn.Module):
            def forward(self, inp):
                s = (inp * weights).flatten(1).sum(1)
                return torch.stack([s, -s], 1)

        contribution = (weights * (x[0] - baseline)).sum(0)  # (4, 5)
        total, count = torch.zeros(4, 5, dtype=torch.float64), torch.zeros(4, 5, dtype=torch.float64)
        for top in (0, 1, 2):  # window 3, stride 1: corners 0, 1 down; 0, 1, 2 across
            for left in (0, 1, 2):
                if top > 1:
                    continue
                total[top:top + 3, left:left + 3] += contribution[top:top + 3, left:left + 3].sum()
                count[top:top + 3, left:left + 3] += 1
        want = (total / count).expand(1, 2, 4, 5)
        got = occlusion(Linear(), x, 0, window=3, stride=1, baseline=baseline)
        if not close(got, want, 1e-6, 1e-9):
            raise Failed(f"on f(x) = w . x with baseline 0.5: {show(want[0, 0])} in each channel",
                         show(got[0, 0]) if isinstance(got, torch.Tensor) and got.dim() == 4 else show(got),
                         diagnose_occlusion(got, want, count.expand(1, 2, 4, 5)) + "; hide with `baseline`, "
                         "not with zeros")

    def reference_case(n: int, c: int, h: int, w: int, window: int, stride: int, target, baseline: float):
        def check() -> None:
            model = GradingCNN(channels=c, seed=h * 10 + w)
            x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(h + w))
            want, source = reference_occlusion(model, x, target, window, stride, baseline)
            got = occlusion(model, x, target, window=window, stride=stride, baseline=baseline)
            if not close(got, want):
                covered = torch.zeros(h, w)
                for i in range(math.ceil((h - window) / stride) + 1):
                    for j in range(math.ceil((w - window) / stride) + 1):
                        covered[i * stride:i * stride + window, j * stride:j * stride + window] += 1
                raise Failed(f"equal to {source}", worst(got, want),
                             diagnose_occlusion(got, want, covered.expand_as(want)))
        return (f"equals Captum's Occlusion on {n}x{c}x{h}x{w}, window {window}, stride {stride}, "
                f"target {target!r}, baseline {baseline}", check)

    def check_target_forms() -> None:
        model, x = GradingCNN(), torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(5))
        predicted = model(x).argmax(1)
        by_none = occlusion(model, x, None, window=3, stride=3)
        for form, target in (("a list", predicted.tolist()), ("a tensor", predicted)):
            got = occlusion(model, x, target, window=3, stride=3)
            if not close(got, by_none):
                raise Failed(f"target=None and target as {form} of the predictions give the same map",
                             worst(got, by_none), "use utils.target_scores(logits, target)")
        by_int, by_list = (occlusion(model, x, t, window=3, stride=3) for t in (3, [3, 3]))
        if not close(by_int, by_list) or close(by_int, by_none):
            raise Failed("target=3 explains class 3 for every example", worst(by_int, by_list),
                         "an int is one class for all examples")

    def check_target_errors() -> None:
        model, x = GradingCNN(), torch.rand(2, 3, 6, 6)
        expect_value_error(lambda: occlusion(model, x, 5, window=3, stride=3), "target=5 with 5 classes (0 to 4)")
        expect_value_error(lambda: occlusion(model, x, torch.tensor([0, 9]), window=3, stride=3),
                           "target=tensor([0, 9])")
        expect_value_error(lambda: occlusion(model, x, [0, 1, 2], window=3, stride=3), "3 targets for 2 examples")

    def check_window_errors() -> None:
        model, x = GradingCNN(), torch.rand(1, 3, 6, 6)
        expect_value_error(lambda: occlusion(model, x, window=7, stride=2), "window=7 on a 6x6 image")
        expect_value_error(lambda: occlusion(model, x, window=3, stride=0), "stride=0")
        expect_value_error(lambda: occlusion(model, x, window=3, stride=4), "stride=4 > window=3")

    def check_side_effects() -> None:
        side_effect_check(lambda m, x: occlusion(m, x, [1, 2], window=3, stride=2), GradingCNN(),
                          torch.rand(2, 3, 7, 7, generator=torch.Generator().manual_seed(6)))

    return [
        ("patch_corners: hand-derived corners, including a last patch over the edge", check_corners),
        ("occlusion returns a detached tensor shaped like inputs, equal across channels", check_shape),
        ("hand-derived: the mean over covering patches, not the sum (3x3, window 2, stride 1)", check_mean),
        ("hand-derived: patches cut off at the right and bottom edges (5x5, window 2, stride 2)", check_edges),
        ("hand-derived: f(x) = w . x, two channels, baseline 0.5 (4x5, window 3, stride 1)", check_linear),
        reference_case(2, 3, 8, 8, 3, 2, None, 0.0),
        reference_case(2, 3, 9, 7, 4, 3, [1, 4], 0.0),
        reference_case(1, 1, 10, 10, 4, 4, 2, 0.3),
        reference_case(2, 3, 6, 6, 6, 1, torch.tensor([0, 3]), -1.0),
        ("every target form: None, an int, a list, a tensor", check_target_forms),
        ("ValueError for a class out of range or a list of the wrong length", check_target_errors),
        ("ValueError for a window larger than the image or a stride outside 1..window", check_window_errors),
        ("no side effects: inputs, requires_grad, training mode, .grad, hooks; works under no_grad",
         check_side_effects),
    ]


# %% Exercise 2: the digit CNN's mistakes ---------------------------------------------------------


def cached(function: Callable[[], object]) -> Callable[[], object]:
    """Compute once per grading run (a failure is re-raised each time it is asked for)."""
    store: dict[str, object] = {}

    def get() -> object:
        if "value" not in store:
            try:
                store["value"] = function()
            except BaseException as error:  # remembered, so every check that needs it fails alike
                store["error"] = error
                store["value"] = None
        if "error" in store:
            raise store["error"]
        return store["value"]

    return get


def grade_misclassified(student: ModuleType | None) -> list[Check]:
    vanilla = utils.load_lecture("01_vanilla_gradient_saliency")
    ig = utils.load_lecture("04_integrated_gradients")
    gradcam = utils.load_lecture("05_gradcam")
    methods = ("vanilla_gradient", "integrated_gradients", "grad_cam")
    steps = 32  # the exercise's IG_STEPS

    @cached
    def setting():
        model = utils.load_mnist_cnn()  # whatever weights ship now: nothing below is hard-coded
        images, labels = tasks.heldout_digits()
        with torch.no_grad():
            predicted = model(images).argmax(1)
        wrong = torch.nonzero(predicted != labels).flatten()
        return model, images, labels, wrong, predicted[wrong]

    def reference_maps(model, x, target) -> dict[str, torch.Tensor]:
        return {"vanilla_gradient": vanilla.vanilla_gradient(model, x, target, absolute=False),
                "integrated_gradients": ig.integrated_gradients(model, x, target, steps=steps),
                "grad_cam": gradcam.grad_cam(model, x, target, relu=False)}

    @cached
    def reference_answers() -> dict:
        model, images, labels, wrong, predicted = setting()
        x, true = images[wrong], labels[wrong]
        with torch.no_grad():
            chosen = model(x).softmax(1).gather(1, predicted[:, None])[:, 0]
        k = int(chosen.argmax())
        for_p, for_t = reference_maps(model, x, predicted), reference_maps(model, x, true)
        diff = {m: for_p[m] - for_t[m] for m in methods}
        with torch.no_grad():
            margin = lambda z: model(z)[0, int(predicted[k])] - model(z)[0, int(true[k])]  # noqa: E731
            change = float(margin(x[k:k + 1]) - margin(torch.zeros_like(x[k:k + 1])))
        unlike = {m: float(1 - F.cosine_similarity(for_p[m].flatten(1), for_t[m].flatten(1), dim=1).mean())
                  for m in methods}
        share = {m: float((diff[m].clamp(min=0) * (x > 0)).sum() / diff[m].clamp(min=0).sum()) for m in methods}
        return {"n_mistakes": len(wrong), "most_confident_mistake": int(wrong[k]),
                "ig_contrast_sum": float(diff["integrated_gradients"][k].sum()), "margin_change": change,
                "most_class_discriminative": max(unlike, key=unlike.get), "share_on_ink": share,
                "_unlike": unlike}

    @cached
    def student_answers() -> dict:
        model, images, labels, _, _ = setting()
        answers = need(student, "answer_questions")(model, images.clone(), labels.clone())
        if not isinstance(answers, dict):
            raise Failed("a dict from answer_questions", type(answers).__name__, "return the dict of answers")
        return answers

    def answer(key: str) -> object:
        answers = student_answers()
        if key not in answers:
            raise Failed(f"a key {key!r} in answer_questions' dict", sorted(answers), "see TODO 4 for the keys")
        return answers[key]

    def check_mistakes() -> None:
        model, images, labels, wrong, predicted = setting()
        result = need(student, "find_mistakes")(model, images.clone(), labels.clone())
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Failed("(indices, predicted classes)", show(result), "return two tensors")
        got_wrong, got_predicted = (torch.as_tensor(r).flatten().long() for r in result)
        if not torch.equal(got_wrong, wrong):
            raise Failed(f"{len(wrong)} mistakes at {show(wrong)}", show(got_wrong),
                         "a mistake is predicted != label; return the indices in ascending order")
        if not torch.equal(got_predicted, predicted):
            raise Failed(f"predictions {show(predicted)}", show(got_predicted), "the argmax of each mistake's logits")

    def method_check(method: str):
        def check() -> None:
            model, images, labels, wrong, predicted = setting()
            x = images[wrong[:4]]
            maps = need(student, "explain")(model, x.clone(), predicted[:4])
            if not isinstance(maps, dict) or method not in maps:
                raise Failed(f"a dict with the key {method!r}", show(maps) if not isinstance(maps, dict)
                             else sorted(maps), "one entry per name in METHODS")
            want = reference_maps(model, x, predicted[:4])[method]
            got = maps[method]
            if not close(got, want, 1e-3, 1e-4):
                hint = {"vanilla_gradient": "absolute=False: keep the sign",
                        "integrated_gradients": f"steps={steps} (IG_STEPS) from a black image (baseline None)",
                        "grad_cam": "relu=False: keep the sign; the default layer (None)"}[method]
                if isinstance(got, torch.Tensor) and close(got.abs(), want.abs(), 1e-3, 1e-4):
                    hint = "the sign was dropped: keep the signed map"
                raise Failed(f"lecture's {method} for the predicted classes", worst(got, want), hint)
        return f"explain: {method} equals the lecture's function (signed)", check

    def check_contrast() -> None:
        model, images, labels, wrong, predicted = setting()
        x, true = images[wrong[:3]], labels[wrong[:3]]
        got = need(student, "contrast")(model, x.clone(), predicted[:3], true)
        for_p, for_t = reference_maps(model, x, predicted[:3]), reference_maps(model, x, true)
        for m in methods:
            if not isinstance(got, dict) or m not in got or not close(got[m], for_p[m] - for_t[m], 1e-3, 1e-4):
                raise Failed(f"contrast[{m!r}] = map(predicted) - map(true)",
                             worst(got[m], for_p[m] - for_t[m]) if isinstance(got, dict) and m in got else show(got),
                             "predicted minus true, in that order")

    def exact(key: str, hint: str):
        def check() -> None:
            got = answer(key)  # the student's first: an unfinished answer costs no reference work
            want = reference_answers()[key]
            if got != want:
                raise Failed(f"{key} = {want!r}", repr(got), hint)
        return check

    def check_completeness() -> None:
        answer("ig_contrast_sum")
        ref = reference_answers()
        for key in ("ig_contrast_sum", "margin_change"):
            got = answer(key)
            if not isinstance(got, (int, float)) or not math.isclose(got, ref[key], rel_tol=2e-3, abs_tol=1e-3):
                raise Failed(f"{key} = {ref[key]:.4f}", repr(got),
                             "for the most confident mistake; the margin is S_predicted - S_true, black = zeros")

    def check_discriminative() -> None:
        got = answer("most_class_discriminative")
        ref = reference_answers()
        if got != ref["most_class_discriminative"]:
            scores = ", ".join(f"{m} {v:.3f}" for m, v in ref["_unlike"].items())
            raise Failed(f"{ref['most_class_discriminative']!r} (1 - mean cosine: {scores})", repr(got),
                         "compare each method's map for the predicted class with its map for the true class")

    def check_share() -> None:
        got = answer("share_on_ink")
        ref = reference_answers()["share_on_ink"]
        if not isinstance(got, dict) or any(not isinstance(got.get(m), (int, float))
                                            or not math.isclose(got[m], ref[m], abs_tol=1e-3) for m in methods):
            raise Failed({m: round(v, 4) for m, v in ref.items()}, got,
                         "sum the positive part of each contrast map over all mistakes, on pixels with x > 0, "
                         "divided by its sum everywhere")

    return [
        ("find_mistakes: the misclassified digits and their predictions", check_mistakes),
        *(method_check(m) for m in methods),
        ("contrast: map(predicted) - map(true) for each method", check_contrast),
        ("Q1 n_mistakes", exact("n_mistakes", "count the mistakes find_mistakes finds on all digits")),
        ("Q2 most_confident_mistake", exact("most_confident_mistake",
                                            "the highest softmax probability of the predicted class; "
                                            "an index into images, not into the mistakes")),
        ("Q3 completeness: ig_contrast_sum and margin_change", check_completeness),
        ("Q4 most_class_discriminative", check_discriminative),
        ("Q5 share_on_ink of the evidence for the wrong class", check_share),
        ("written answers present (your teacher reads them)",
         written_check(student, ("what_argues_for_the_wrong_class", "what_each_method_shows"))),
    ]


# %% Exercise 3: an evaluation protocol ----------------------------------------------------------


def reference_blur(x: torch.Tensor) -> torch.Tensor:
    """The exercise's substrate: per channel, an 11x11 Gaussian of sigma 5, zero-padded."""
    t = torch.arange(11, dtype=x.dtype) - 5
    g = torch.exp(-t ** 2 / 50)
    kernel = g[:, None] * g[None, :] / g.sum() ** 2
    return F.conv2d(x, kernel.expand(x.shape[1], 1, 11, 11), padding=5, groups=x.shape[1])


def reference_curve(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target, steps: int) -> torch.Tensor:
    heat = saliency.abs().sum(1) if saliency.dim() == 4 else saliency  # (N, H, W)
    n, h, w = heat.shape
    substrate = reference_blur(x)
    with torch.no_grad():
        classes = utils.resolve_target(model(x), target)
        rows = []
        for k in range(steps + 1):
            current = x.clone()
            for i in range(n):
                top = torch.argsort(heat[i].flatten(), descending=True, stable=True)[:round(k * h * w / steps)]
                r, c = top // w, top % w  # the removed pixels' rows and columns
                current[i][:, r, c] = substrate[i][:, r, c]
            rows.append(model(current).softmax(1).gather(1, classes[:, None])[:, 0])
    return torch.stack(rows, 1)


def reference_gap(model, x, saliency, target, steps) -> torch.Tensor:
    heat = saliency.abs().sum(1) if saliency.dim() == 4 else saliency
    auc = lambda c: (c[:, 1:] + c[:, :-1]).sum(1) / (2 * (c.shape[1] - 1))  # noqa: E731
    return auc(reference_curve(model, x, -heat, target, steps)) - auc(reference_curve(model, x, heat, target, steps))


class LinearTwoClass(nn.Module):
    """Logits (sum of w * x, 0): p_0 = sigmoid(w . x), by hand."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.weights).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


class ConstantModel(nn.Module):
    """Logits (2, 0, -1) whatever the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([2.0, 0.0, -1.0], dtype=x.dtype).expand(x.shape[0], 3)


def grade_protocol(student: ModuleType | None) -> list[Check]:
    curve_of = (lambda *a, **k: need(student, "deletion_curve_blurred")(*a, **k)) if student else None
    vanilla = utils.load_lecture("01_vanilla_gradient_saliency")
    smooth = utils.load_lecture("03_smoothgrad")
    gradcam = utils.load_lecture("05_gradcam")
    rank_steps, sg_samples = 10, 16

    def compare_curve(got, want, what: str, hint: str) -> None:
        if not close(got, want, 1e-4, 1e-6):
            raise Failed(f"{what}: {show(want)}", show(got) if isinstance(got, torch.Tensor) and got.numel() <= 30
                         else worst(got, want), hint)

    def check_auc() -> None:
        curves = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.3, 0.3, 0.3]]), torch.tensor([[0.0, 1.0, 0.0]]),
                  torch.tensor([[1.0, 1.0, 0.0, 0.0]])]
        for curve, want in zip(curves, (0.5, 0.3, 0.5, 0.5)):
            got = need(student, "area_under_curve")(curve)
            if not isinstance(got, torch.Tensor) or got.shape != (1,) or abs(float(got[0]) - want) > 1e-6:
                raise Failed(f"area_under_curve({curve.tolist()}) = tensor([{want}])", show(got),
                             "trapezoids over an x axis from 0 to 1: spacing 1 / (points - 1)")

    def check_probabilities() -> None:
        x = torch.rand(2, 1, 4, 4)
        got = curve_of(ConstantModel(), x, torch.rand(2, 1, 4, 4), None, steps=4)
        p = float(torch.tensor([2.0, 0.0, -1.0]).softmax(0)[0])
        compare_curve(got, torch.full((2, 5), p), "a model that ignores its input: p_0 at every point",
                      "softmax probabilities of the class (not logits), steps + 1 points per example")

    def check_ends() -> None:
        model = GradingCNN(channels=3, seed=4)
        x = torch.rand(2, 3, 9, 9, generator=torch.Generator().manual_seed(8))
        got = curve_of(model, x, torch.rand(2, 3, 9, 9), [1, 3], steps=5)
        with torch.no_grad():
            start = model(x).softmax(1)[[0, 1], [1, 3]]
            end = model(reference_blur(x)).softmax(1)[[0, 1], [1, 3]]
        if not isinstance(got, torch.Tensor) or got.shape != (2, 6):
            raise Failed("shape (2, 6)", show(got), "steps + 1 points per example")
        compare_curve(got[:, [0, -1]], torch.stack([start, end], 1), "point 0 = p(x), last point = p(blurred(x))",
                      "deleted pixels take the values of blurred(x), not zeros")

    def check_linear() -> None:
        w = torch.tensor([[[[1.0, -2.0], [0.5, 3.0]]]])
        x = torch.tensor([[[[0.9, 0.2], [0.4, 0.7]]]])
        b = reference_blur(x)
        order = [(0, 1), (1, 1), (0, 0), (1, 0)]  # the ranking of the map below
        want, current = [], x.clone()
        for k in range(5):
            if k:
                r, c = order[k - 1]
                current[0, 0, r, c] = b[0, 0, r, c]
            want.append(torch.sigmoid((w * current).sum()))
        got = curve_of(LinearTwoClass(w), x, torch.tensor([[[0.5, 4.0], [-0.1, 2.0]]]), 0, steps=4)
        compare_curve(got, torch.stack(want)[None], "on f = w . x (2x2, steps 4), each point by hand",
                      "a (N, H, W) map is ranked as it is (signed), largest first")

    def check_ties_and_channels() -> None:
        w = torch.arange(1.0, 7.0).view(1, 1, 2, 3) / 4
        x = torch.rand(1, 2, 2, 3, generator=torch.Generator().manual_seed(2))
        saliency = torch.zeros(1, 2, 2, 3)
        saliency[0, 0, 1, 2], saliency[0, 1, 1, 2] = 5.0, -5.0  # sums to 0 signed: only |.| ranks it first
        model = LinearTwoClass(w.expand(1, 2, 2, 3))
        want = reference_curve(model, x, saliency, 0, 6)
        compare_curve(curve_of(model, x, saliency, 0, steps=6), want,
                      "ties ranked in flattened order (stable sort), channels summed in |.|",
                      "torch.argsort(..., descending=True, stable=True) on the (N, H, W) map of summed |values|")

    def check_reference() -> None:
        model = GradingCNN(channels=3, seed=5)
        x = torch.rand(3, 3, 6, 5, generator=torch.Generator().manual_seed(9))
        saliency = torch.randn(3, 3, 6, 5, generator=torch.Generator().manual_seed(10))
        compare_curve(curve_of(model, x, saliency, None, steps=7), reference_curve(model, x, saliency, None, 7),
                      "the grader's curve (6x5 image, steps 7)",
                      "point k removes round(k * H * W / steps) pixels; the class is fixed at x")

    def check_gap() -> None:
        model = GradingCNN(channels=1, seed=6)
        x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(11))
        heat = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(12))
        want = reference_gap(model, x, heat, None, 8)
        got = need(student, "morf_lerf_gap")(model, x, heat, None, steps=8)
        if not close(got, want, 1e-4, 1e-6):
            raise Failed(f"gap {show(want)}", show(got), "AUC(curve of -map) - AUC(curve of map), per example")
        flipped = need(student, "morf_lerf_gap")(model, x, -heat, None, steps=8)
        if not close(flipped, -want, 1e-4, 1e-6):
            raise Failed(f"negating a map negates its gap: {show(-want)}", show(flipped),
                         "reduce the map first, then negate the reduced map for LeRF")
        x4 = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(13))
        s4 = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(14))
        model3 = GradingCNN(channels=3, seed=7)
        if not close(need(student, "morf_lerf_gap")(model3, x4, s4, None, steps=6),
                     reference_gap(model3, x4, s4, None, 6), 1e-4, 1e-6):
            raise Failed("on a (1, 3, 6, 6) map: the gap of its |.|-sum over channels", "a different gap",
                         "negating a (N, C, H, W) map does not reverse the order of |values|: reduce first")

    def check_side_effects() -> None:
        side_effect_check(lambda m, x: curve_of(m, x, torch.rand(2, 3, 7, 7), [0, 2], steps=4), GradingCNN(),
                          torch.rand(2, 3, 7, 7, generator=torch.Generator().manual_seed(6)))

    @cached
    def digits():
        model = utils.load_mnist_cnn()
        images, _ = tasks.heldout_digits()
        return model, images[::30]  # one of each class

    @cached
    def reference_ranking() -> list[tuple[str, float]]:
        model, x = digits()
        maps = {"vanilla_gradient": vanilla.vanilla_gradient(model, x),
                "smoothgrad": smooth.smoothgrad(model, x, n_samples=sg_samples, generator=torch.Generator().manual_seed(0)),
                "grad_cam": gradcam.grad_cam(model, x),
                "chance": F.interpolate(torch.rand(10, 1, 7, 7, generator=torch.Generator().manual_seed(0)),
                                        size=(28, 28), mode="bilinear", align_corners=False)}
        gaps = {m: float(reference_gap(model, x, s, None, rank_steps).mean()) for m, s in maps.items()}
        return sorted(gaps.items(), key=lambda item: -item[1])

    @cached
    def student_ranking():
        model, x = digits()
        rank = need(student, "rank_methods")
        first = rank(model, x.clone(), None, seed=0, steps=rank_steps)
        pairs = [(str(m), float(v)) for m, v in first]
        return pairs, rank

    def check_ranking() -> None:
        got, _ = student_ranking()
        want = reference_ranking()
        if [m for m, _ in got] != [m for m, _ in want] or any(abs(a[1] - b[1]) > 1e-4 for a, b in zip(got, want)):
            raise Failed("seed 0: " + ", ".join(f"{m} {v:+.4f}" for m, v in want),
                         ", ".join(f"{m} {v:+.4f}" for m, v in got),
                         "the maps as TODO 4 says (SmoothGrad's generator seeded with `seed`), best gap first")

    def check_reproducible() -> None:
        model, x = digits()
        first, rank = student_ranking()
        again = [(str(m), float(v)) for m, v in rank(model, x.clone(), None, seed=0, steps=rank_steps)]
        if again != first:
            raise Failed("the same ranking and scores for the same seed", f"{first} then {again}",
                         "draw every random number from generators seeded with `seed`, not the global one")
        other = dict((str(m), float(v)) for m, v in rank(model, x.clone(), None, seed=1, steps=rank_steps))
        if other.get("chance") == dict(first).get("chance"):
            raise Failed("another seed gives another chance map", "the same chance score for seeds 0 and 1",
                         "chance_map(inputs, seed): use the seed you are given")

    return [
        ("area_under_curve: hand-derived areas", check_auc),
        ("deletion curve: softmax probabilities, steps + 1 points (a model that ignores its input)",
         check_probabilities),
        ("deletion curve: starts at p(x), ends at p(blurred(x))", check_ends),
        ("deletion curve: hand-derived on f = w . x", check_linear),
        ("deletion curve: stable ranking of ties, channels summed in absolute value", check_ties_and_channels),
        ("deletion curve: equals the grader's on a random CNN (round(k H W / steps) pixels)", check_reference),
        ("morf_lerf_gap: known values, antisymmetric under negation, reduced before negating", check_gap),
        ("deletion curve: no side effects", check_side_effects),
        ("rank_methods: the ranking and gaps on ten digits (seed 0)", check_ranking),
        ("rank_methods: reproducible with the seed, and the seed is used", check_reproducible),
    ]


# %% Exercise 4: the lesion model -----------------------------------------------------------------

LESION_GRADER_SEED = 4104  # scans no exercise file draws
LESION_PASS_RATE = 0.85  # the gradient hits ~99%, SmoothGrad ~97%, Grad-CAM ~70%, centre ~10%, random ~6%
MODEL_DEPENDENCE = 0.9  # a map must change (correlation below this) when the model's weights are random


def reference_pointing(saliency: torch.Tensor, mask: torch.Tensor, tolerance: float) -> torch.Tensor:
    heat = saliency.abs().sum(1) if saliency.dim() == 4 else saliency
    hits = []
    for i in range(heat.shape[0]):
        r, c = divmod(int(heat[i].flatten().argmax()), heat.shape[-1])
        pixels = torch.nonzero(mask[i]).double()
        hits.append(bool(len(pixels)) and bool((((pixels - torch.tensor([r, c])) ** 2).sum(1) < tolerance ** 2).any()))
    return torch.tensor(hits)


def grade_lesions(student: ModuleType | None) -> list[Check]:
    gradcam = utils.load_lecture("05_gradcam")

    @cached
    def setting():
        model = tasks.load_lesion_cnn()
        scans, labels, masks = tasks.lesion_dataset(300, seed=LESION_GRADER_SEED)
        positive = labels == 1
        return model, scans, masks, scans[positive], masks[positive]

    @cached
    def student_maps() -> torch.Tensor:
        model, _, _, x, _ = setting()
        maps = need(student, "lesion_saliency")(model, x.clone())
        if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[0] != len(x) \
                or tuple(maps.shape[-2:]) != (32, 32):
            raise Failed(f"a tensor ({len(x)}, 1, 32, 32)", show(maps), "one map per scan, shaped like the scans")
        if not torch.isfinite(maps).all():
            raise Failed("finite values", show(maps), "check for divisions by zero")
        return maps.detach()

    def check_pointing() -> None:
        heat = torch.zeros(6, 7, 7)
        peaks = [(3, 3), (3, 6), (5, 5), (3, 3), (0, 0), (2, 2)]
        for i, (r, c) in enumerate(peaks):
            heat[i, r, c] = 1.0
        heat[4, 3, 3] = 1.0  # a tie: the first maximum in flattened order, (0, 0), counts
        mask = torch.zeros(6, 7, 7, dtype=torch.bool)
        mask[:, 3, 3] = True
        mask[3] = False  # an empty mask: a miss
        saliency = heat[:, None].repeat(1, 2, 1, 1)
        saliency[5, 0, 6, 6], saliency[5, 1, 6, 6] = 1.2, -1.2  # |.| summed over channels: (6, 6) wins, a miss
        want = [True, False, True, False, False, False]
        got = need(student, "pointing_game")(saliency, mask, 3)
        if not isinstance(got, torch.Tensor) or [bool(v) for v in got.flatten()] != want:
            raise Failed(f"{want} (on the mask; at distance 3; at 2.83; empty mask; a tie; channels in |.|)",
                         show(got), "strictly less than the tolerance; the first maximum; sum |.| over channels")

    def check_centre() -> None:
        for n, h, w in ((2, 32, 32), (1, 7, 10)):
            got = need(student, "centre_map")(n, h, w)
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != (n, 1, h, w):
                raise Failed(f"shape ({n}, 1, {h}, {w})", show(got), "one map per example")
            peak = divmod(int(got[0].abs().sum(0).flatten().argmax()), w)
            if peak != ((h - 1) // 2, (w - 1) // 2):
                raise Failed(f"the first maximum of |map| at {((h - 1) // 2, (w - 1) // 2)} for {h}x{w}", peak,
                             "the pointing game sums absolute values: keep the map positive")

    def check_shape_and_side_effects() -> None:
        student_maps()
        model, scans = setting()[:2]
        side_effect_check(lambda m, x: need(student, "lesion_saliency")(m, x), model, scans[:4].clone())

    @cached
    def rates() -> dict[str, float]:
        model, _, _, x, m = setting()
        generator = torch.Generator().manual_seed(0)
        return {"Grad-CAM": float(reference_pointing(gradcam.grad_cam(model, x, 1), m, 3).float().mean()),
                "random": float(reference_pointing(torch.rand(len(x), 32, 32, generator=generator), m, 3)
                                .float().mean())}

    def check_rate() -> None:
        _, _, _, x, m = setting()
        rate = float(reference_pointing(student_maps(), m, 3).float().mean())
        if rate < LESION_PASS_RATE:
            baselines = ", ".join(f"{k} {v:.0%}" for k, v in rates().items())
            raise Failed(f"a hit rate of at least {LESION_PASS_RATE:.0%} on {len(x)} new lesions", f"{rate:.0%}",
                         f"for scale: {baselines}; a coarse map, or one that is zero everywhere, misses small lesions")

    def check_model_dependence() -> None:
        _, _, _, x, _ = setting()
        torch.manual_seed(0)
        random_model = tasks.SmallCNN(width=tasks.LESION_WIDTH).eval()
        ours = student_maps()
        theirs = need(student, "lesion_saliency")(random_model, x.clone()).detach()
        a, b = ours.flatten(1).double(), torch.as_tensor(theirs).flatten(1).double()
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        correlation = float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)).mean())
        if correlation >= MODEL_DEPENDENCE:
            raise Failed(f"maps that change when the weights are random (correlation < {MODEL_DEPENDENCE})",
                         f"a mean correlation of {correlation:.3f}",
                         "your map does not depend on the model: explain the model, not the image "
                         "(Adebayo et al., 2018, Sanity Checks for Saliency Maps)")

    def check_hit_rate() -> None:
        model, scans, masks, _, m = setting()
        want = float(reference_pointing(student_maps(), m, 3).float().mean())
        got = need(student, "hit_rate")(model, scans.clone(), masks.clone())
        if not isinstance(got, (int, float)) or abs(got - want) > 1e-6:
            raise Failed(f"{want:.4f}: the share of the scans with a lesion where your map hits", repr(got),
                         "leave out the scans whose mask is empty; a float, not a tensor")

    return [
        ("pointing_game: hand-derived hits and misses (strict tolerance, ties, channels, empty mask)",
         check_pointing),
        ("centre_map: its first maximum (of |map|) at the centre pixel", check_centre),
        ("lesion_saliency: one finite map per scan, no side effects", check_shape_and_side_effects),
        (f"lesion_saliency finds the lesion: pointing game >= {LESION_PASS_RATE:.0%} on scans you never saw",
         check_rate),
        ("lesion_saliency depends on the model (sanity check with random weights)", check_model_dependence),
        ("hit_rate: the pointing game's rate over the scans with a lesion", check_hit_rate),
        ("written answers present (your teacher reads them)",
         written_check(student, ("why_this_method", "what_the_baselines_say"))),
    ]


# %% Exercise 5: the shortcut detector ------------------------------------------------------------

# The grader's own models: seeds and corners that no exercise file uses. Measured with the
# solution's |gradient| maps: shortcut models put 28% to 41% of the map on the marker, models
# trained without the shortcut 3% to 6% (the marker's area is 3.5%).
HIDDEN_MODELS = ((9001, "top_right", True), (9002, "bottom_left", False),
                 (9003, "bottom_right", True), (9004, "top_left", False))


def as_bool(value: object) -> bool:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return bool(value)
    if type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    raise Failed("True or False", repr(value), "return a bool (bool(...) of a comparison)")


def grade_shortcut(student: ModuleType | None) -> list[Check]:
    share_of = (lambda *a: need(student, "marker_share")(*a)) if student else None

    def check_share() -> None:
        mask = tasks.marker_mask("top_left")
        maps = torch.ones(3, 1, 16, 16)
        maps[1] = 0.0
        maps[1, 0, mask] = 2.0  # all of it on the marker
        maps[2, 0, mask] = -3.0  # negative on the marker: |.| counts; 9 * 3 of 9 * 3 + 247
        want = torch.tensor([9 / 256, 1.0, 27 / (27 + 247)])
        got = share_of(maps, mask)
        if not close(got, want, 1e-5, 1e-7):
            raise Failed(show(want), show(got), "|map| summed inside the mask over |map| summed everywhere, per map")
        colour = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) - 0.5
        heat = colour.abs().sum(1)
        want = (heat * mask).flatten(1).sum(1) / heat.flatten(1).sum(1)
        if not close(share_of(colour, mask), want, 1e-5, 1e-7):
            raise Failed(f"for (2, 3, 16, 16) maps: {show(want)}", show(share_of(colour, mask)),
                         "sum |.| over channels first")

    def check_decision() -> None:
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

    def check_explain() -> None:
        detector_runs()
        model = tasks.train_bars_cnn(True, seed=1, corner="top_right", n=200, epochs=1)
        images, _ = tasks.bars_dataset(6, seed=2, marker="all", corner="top_right")
        maps = need(student, "explain")(model, images.clone())
        if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[0] != 6 \
                or tuple(maps.shape[-2:]) != (16, 16) or not torch.isfinite(maps).all():
            raise Failed("finite maps (6, 1, 16, 16)", show(maps), "one map per image")
        side_effect_check(lambda m, x: need(student, "explain")(m, x), model, images)

    @cached
    def detector_runs() -> None:
        """Try the detector on an untrained model first: an unfinished one costs no training."""
        torch.manual_seed(0)
        images, _ = tasks.bars_dataset(2, seed=3, marker="all")
        maps = need(student, "explain")(tasks.SmallCNN(width=tasks.BARS_WIDTH).eval(), images)
        need(student, "relies_on_marker")(maps, tasks.marker_mask("top_left"))

    def hidden(seed: int, corner: str, shortcut: bool):
        def check() -> None:
            detector_runs()
            model = tasks.train_bars_cnn(shortcut, seed=seed, corner=corner)
            images, _ = tasks.bars_dataset(200, seed=seed + 50, marker="all", corner=corner)
            mask = tasks.marker_mask(corner)
            maps = need(student, "explain")(model, images.clone())
            got = as_bool(need(student, "relies_on_marker")(maps, mask.clone()))
            if got != shortcut:
                heat = maps.detach().abs().sum(1) if maps.dim() == 4 else maps.detach().abs()
                share = float(((heat * mask).flatten(1).sum(1) / heat.flatten(1).sum(1).clamp(min=1e-30)).mean())
                raise Failed(str(shortcut), str(got), f"your maps put {share:.1%} of their mass on the marker "
                             "(its area is 3.5%); train more models of both kinds to place your rule")
        kind = "trained with the shortcut" if shortcut else "trained without it"
        return f"a hidden model {kind}, marker {corner.replace('_', ' ')}: detected correctly", check

    return [
        ("marker_share: hand-derived shares (|.|, channels)", check_share),
        ("relies_on_marker: True for maps on the marker, False for maps spread evenly", check_decision),
        ("explain: finite maps, one per image, no side effects", check_explain),
        *(hidden(*spec) for spec in HIDDEN_MODELS),
    ]


# %% The command line -------------------------------------------------------------------------------

GRADERS: dict[int, Callable[[ModuleType | None], list[Check]]] = {1: grade_occlusion, 2: grade_misclassified,
                                                                    3: grade_protocol, 4: grade_lesions,
                                                                    5: grade_shortcut}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = "usage: python exercises/grade.py N [FILE]   (N is 1 to 5; FILE defaults to the starter)"
    if not 1 <= len(argv) <= 2 or argv[0] not in {str(n) for n in FILES}:
        print(f"error: {'N must be 1, 2, 3, 4 or 5' if argv else 'which exercise?'}\n{usage}", file=sys.stderr)
        return 2
    exercise = int(argv[0])
    path = Path(argv[1]) if len(argv) == 2 else EXERCISES / FILES[exercise]
    if not path.is_file() or path.suffix != ".py":
        print(f"error: {path} is not a Python file\n{usage}", file=sys.stderr)
        return 2
    if exercise not in GRADERS:
        print(f"error: exercise {exercise} has no grader yet", file=sys.stderr)
        return 2
    passed, total = grade(exercise, path.resolve())
    return 0 if passed == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
