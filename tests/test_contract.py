"""The course's contract: every method function keeps its signature and leaves no trace.

Every numbered script is a lecture and a library: the tests, the exercises and the later
lectures import its methods, so each keeps the parameters below, with these names, in this
order, and these defaults (extra keyword parameters may follow). Every method that takes a
model follows the same rules, checked here on small random networks:

- the result is a tensor of the promised shape, detached, with the inputs' dtype and device;
- `target` is None (the prediction), an int, a sequence or a 1-D integer tensor of length N,
  and a class outside [0, K) or a sequence of the wrong length is a ValueError that names
  the range or the length;
- nothing of the caller's changes, also when an exception is raised inside: the inputs (their
  values and their requires_grad), model.training in eval and in training mode, no hook, no
  patched function or module, no .grad on the parameters, the parameters themselves;
- it works under the caller's `torch.no_grad()` and gives the same numbers there.

The numbers themselves (against the trusted references) are each lecture's own tests.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VisionTransformer

from conftest import lecture
from plumbing.lectures import lectures
from plumbing.methods import METHODS

LECTURES = lectures()
N, C, H, W, K = 2, 3, 16, 16, 5  # two examples, RGB, 16 x 16 pixels, five classes


@dataclass(frozen=True)
class Method:
    """One function of the contract: where it lives, its parameters, how a small call looks."""

    lecture: str  # the script's two-digit number
    name: str
    params: tuple[str, ...]  # the contract's parameters, in order
    defaults: dict = field(default_factory=dict)  # the contract's defaults of some of them
    net: str | None = "cnn"  # "cnn", "sequential" (the layers LRP handles), "vit", or None: no model
    result: str = "pixel"  # pixel: shaped like inputs; cam: (N, 1, H, W); curve; per_example; patches
    quick: dict = field(default_factory=dict)  # small settings, so that every call takes milliseconds

    @property
    def id(self) -> str:
        return f"{self.lecture}.{self.name}"

    @property
    def takes_target(self) -> bool:
        return "target" in self.params

    @property
    def random(self) -> bool:
        return "generator" in self.params


SEEDED = {"generator": None}  # a fresh seeded generator is put in for every call

NETS = {"any": "cnn", "conv": "cnn", "relu": "sequential"}  # the table's kinds of network -> a small one here


def table_methods() -> list[Method]:
    """The saliency methods of the course's table (plumbing/methods.py), as contract entries: a new row
    is checked here without a line of this file."""
    return [Method(row.lecture[:2], row.function, ("model", "inputs", "target", *row.settings),
                   {"target": None, **{name: s.default for name, s in row.settings.items()}},
                   net=NETS[row.networks], result=row.output,
                   quick={**row.quick, **({"generator": None} if "generator" in row.settings else {})})
            for row in METHODS.values()]


OTHERS = [  # the contract's other functions: measures, and methods with their own signatures
    Method("04", "completeness_delta", ("model", "inputs", "attributions", "baseline", "target"),
           {"baseline": None, "target": None}, result="per_example"),
    Method("08", "deletion_curve", ("model", "inputs", "saliency", "target", "steps", "baseline", "batch_size"),
           {"target": None, "steps": 50, "baseline": 0.0, "batch_size": None}, result="curve", quick={"steps": 4}),
    Method("08", "insertion_curve", ("model", "inputs", "saliency", "target", "steps", "baseline", "batch_size"),
           {"target": None, "steps": 50, "baseline": "blur", "batch_size": None}, result="curve",
           quick={"steps": 4}),
    Method("08", "area_under_curve", ("curve",), net=None, result="per_example"),
    Method("08", "pointing_game", ("saliency", "mask", "tolerance"), {"tolerance": 15}, net=None,
           result="per_example"),
    Method("08", "sensitivity_n", ("model", "inputs", "attributions", "target", "n", "n_subsets", "baseline",
                                   "batch_size", "generator"),
           {"target": None, "n": 0.1, "n_subsets": 100, "baseline": 0.0, "batch_size": None, "generator": None},
           result="per_example", quick={"n_subsets": 6, **SEEDED}),
    Method("08", "max_sensitivity", ("method", "model", "inputs", "target", "radius", "n_samples", "batch_size",
                                     "generator"),
           {"target": None, "radius": 0.02, "n_samples": 10, "batch_size": None, "generator": None},
           result="per_example", quick={"n_samples": 3, **SEEDED}),
    Method("08", "infidelity", ("model", "inputs", "attributions", "target", "n_samples", "noise_std",
                                "batch_size", "generator"),
           {"target": None, "n_samples": 10, "noise_std": 0.1, "batch_size": None, "generator": None},
           result="per_example", quick={"n_samples": 3, **SEEDED}),
    Method("08", "relevance_mass", ("saliency", "mask"), net=None, result="per_example"),
    Method("08", "relevance_rank", ("saliency", "mask"), net=None, result="per_example"),
    Method("08", "human_agreement", ("saliency", "attention"), net=None, result="per_example"),
    Method("09", "attention_rollout", ("model", "inputs", "head_fusion", "discard_ratio"),
           {"head_fusion": "mean", "discard_ratio": 0.0}, net="vit", result="patches"),
    Method("09", "deep_shap", ("model", "inputs", "baselines", "target"), {"target": None}, net="sequential"),
    Method("09", "saliency_attack", ("model", "inputs", "target", "k", "epsilon", "steps", "beta", "generator"),
           {"target": None, "k": 100, "epsilon": 0.1, "steps": 50, "beta": 10.0, "generator": None},
           quick={"k": 10, "steps": 2, **SEEDED}),

]
CONTRACT = table_methods() + OTHERS
WITH_MODEL = [m for m in CONTRACT if m.net]
WITH_TARGET = [m for m in CONTRACT if m.takes_target]
IDS = {"ids": lambda m: m.id}


def method_of(spec: Method) -> Callable:
    """The lecture's function; a missing one fails, by name."""
    assert spec.lecture in LECTURES, f"no script {spec.lecture}_*.py for {spec.name}()"
    function = getattr(lecture(LECTURES[spec.lecture]), spec.name, None)
    assert function is not None, f"{LECTURES[spec.lecture]}.py has no function {spec.name}()"
    return function


# %% Small random networks ----------------------------------------------------------------------


class Tripwire(nn.Flatten):
    """A flatten that raises from call number `fail_at` on (0: never), after the layers before it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_at, self.calls = 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_at and self.calls >= self.fail_at:
            raise RuntimeError("tripwire: the forward pass fails here")
        return super().forward(x)


class SmallCNN(nn.Module):
    """An in-place ReLU module used twice, a functional relu and a max pool: K classes, any image size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(C, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.flatten = Tripwire()
        self.fc = nn.Linear(8 * 2 * 2, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.relu(self.conv1(x)), 2)
        x = self.relu(self.conv2(x))
        return self.fc(self.flatten(F.relu(self.pool(x))))


class TripwireViT(VisionTransformer):
    """torchvision's ViT, two layers of two heads on 8 x 8 patches, whose head can trip."""

    def __init__(self) -> None:
        super().__init__(image_size=H, patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
                         num_classes=K)
        self.flatten = Tripwire()
        self.heads = nn.Sequential(self.flatten, self.heads)


def network(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "cnn":
        return SmallCNN().eval()
    if kind == "sequential":
        return nn.Sequential(nn.Conv2d(C, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                             Tripwire(), nn.Linear(8 * 2 * 2, K)).eval()
    return TripwireViT().eval()


def tripwire(model: nn.Module) -> Tripwire:
    return next(m for m in model.modules() if isinstance(m, Tripwire))


def arguments(spec: Method, x: torch.Tensor, model: nn.Module | None) -> dict:
    """The contract's required arguments of one call: random but fixed, like x."""
    g = torch.Generator().manual_seed(7)
    mask = torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.bool)
    mask[:, 4:9, 5:11] = True
    values = {
        "model": model, "inputs": x,
        "saliency": torch.rand(x.shape, generator=g, dtype=x.dtype),
        "attributions": torch.randn(x.shape, generator=g, dtype=x.dtype),
        "baselines": torch.rand((3, *x.shape[1:]), generator=g, dtype=x.dtype),
        "curve": torch.rand((x.shape[0], 5), generator=g, dtype=x.dtype),
        "mask": mask,
        "attention": torch.rand((x.shape[0], *x.shape[2:]), generator=g, dtype=x.dtype),
        "method": lecture(LECTURES["01"]).vanilla_gradient,
    }
    required = spec.params[:spec.params.index("target")] if spec.takes_target else spec.params
    return {name: values[name] for name in required if name in values}


def call(spec: Method, function: Callable, args: dict, target: object = "unset", **extra) -> torch.Tensor:
    """Required arguments by position, the target and the quick settings by name."""
    settings = {k: (torch.Generator().manual_seed(0) if k == "generator" else v) for k, v in spec.quick.items()}
    if target != "unset":
        settings["target"] = target
    return function(*args.values(), **settings, **extra)


def expected_shape(spec: Method, x: torch.Tensor) -> tuple[int, ...]:
    n = x.shape[0]
    return {"pixel": tuple(x.shape), "cam": (n, 1, *x.shape[2:]), "per_example": (n,),
            "curve": (n, spec.quick.get("steps", 50) + 1), "patches": (n, H // 8, W // 8)}[spec.result]


def inputs(dtype=torch.float32, requires_grad: bool = False) -> torch.Tensor:
    x = torch.rand(N, C, H, W, generator=torch.Generator().manual_seed(3), dtype=dtype)
    return x.requires_grad_(requires_grad)


# %% What a method may not change -----------------------------------------------------------------


def patchable() -> dict[str, object]:
    """Every function and forward a method might patch, to compare before and after."""
    found = {f"F.{name}": getattr(F, name) for name in dir(F) if not name.startswith("__")}
    found |= {f"Tensor.{name}": getattr(torch.Tensor, name) for name in dir(torch.Tensor)
              if not name.startswith("__") or name in ("__add__", "__iadd__", "__mul__")}
    found |= {f"torch.{name}": getattr(torch, name) for name in
              ("relu", "relu_", "flatten", "sigmoid", "softmax", "softplus", "clamp", "add", "matmul", "bmm")
              if hasattr(torch, name)}
    found |= {f"nn.{name}.forward": getattr(nn, name).forward for name in
              ("ReLU", "ReLU6", "Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten",
               "Dropout", "MultiheadAttention", "LayerNorm", "BatchNorm2d", "Softmax")}
    return found


def global_hooks() -> int:
    from torch.nn.modules import module

    return sum(len(getattr(module, name, {})) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks", "_global_module_registration_hooks"))


def state(model: nn.Module) -> dict:
    """What the caller owns in a model: structure, modes, hooks, parameters and their gradients."""
    hooks = {f"{name}.{kind}": len(getattr(m, kind)) for name, m in model.named_modules()
             for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                          "_state_dict_hooks", "_load_state_dict_pre_hooks")
             if getattr(m, kind, None)}
    return {
        "modules": [(name, type(m), id(m), m.training, sorted(vars(m).get("_forward_hooks", {})))
                    for name, m in model.named_modules()],
        "hooks": hooks,
        "grads": [p.grad is None for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "tensors": {k: v.clone() for k, v in model.state_dict().items()},
        "tensor_hooks": [bool(getattr(p, "_backward_hooks", None)) for p in model.parameters()],
    }


def assert_unchanged(before: dict, model: nn.Module, patched_before: dict, what: str) -> None:
    after = state(model)
    for key in ("modules", "hooks", "grads", "requires_grad", "tensor_hooks"):
        assert after[key] == before[key], f"{what}: the model's {key} changed"
    for key, value in before["tensors"].items():
        assert torch.equal(after["tensors"][key], value), f"{what}: {key} changed"
    changed = [name for name, f in patchable().items() if patched_before.get(name) != f]
    assert not changed, f"{what}: left patched: {changed[:5]}"


# %% Signatures ---------------------------------------------------------------------------------


def test_every_lecture_has_a_contract_and_every_contract_a_lecture():
    assert sorted(LECTURES) == [f"{n:02d}" for n in range(1, 10)], sorted(LECTURES)
    assert {m.lecture for m in CONTRACT} == set(LECTURES)


@pytest.mark.parametrize("spec", CONTRACT, **IDS)
def test_signature_names_order_and_defaults(spec):
    import inspect

    parameters = inspect.signature(method_of(spec)).parameters
    names = list(parameters)
    assert names[:len(spec.params)] == list(spec.params), f"{spec.name}{tuple(names)}: expected {spec.params} first"
    for name, default in spec.defaults.items():
        assert parameters[name].default == default and type(parameters[name].default) is type(default), \
            f"{spec.name}({name}={parameters[name].default!r}): expected {default!r}"
    extra = [p for p in names[len(spec.params):] if parameters[p].default is inspect.Parameter.empty]
    assert not extra, f"{spec.name}: parameters after the contract's must be optional: {extra}"


# %% Results and side effects -------------------------------------------------------------------


@pytest.mark.parametrize("requires_grad", [False, True], ids=["plain", "requires_grad"])
@pytest.mark.parametrize("spec", CONTRACT, **IDS)
def test_result_and_no_side_effects(spec, requires_grad):
    function = method_of(spec)
    model = network(spec.net) if spec.net else None
    x = inputs(requires_grad=requires_grad)
    args = arguments(spec, x, model)
    given = {name: value.clone() for name, value in args.items() if isinstance(value, torch.Tensor)}
    before, patched = (state(model) if model else None), patchable()
    hooks = global_hooks()

    out = call(spec, function, args)

    assert isinstance(out, torch.Tensor), f"{spec.name} returned {type(out).__name__}"
    assert tuple(out.shape) == expected_shape(spec, x)
    assert not out.requires_grad and out.grad_fn is None, "the result is not detached"
    assert out.device == x.device
    if spec.result != "per_example" or spec.net:
        assert out.dtype == x.dtype, out.dtype
    if spec.name != "pointing_game":
        assert torch.isfinite(out).all(), out
    for name, value in given.items():
        assert torch.equal(args[name], value), f"{spec.name} changed its argument {name}"
    assert x.requires_grad == requires_grad and x.grad is None and x.is_leaf
    assert global_hooks() == hooks, "a global hook was left behind"
    if model is not None:
        assert_unchanged(before, model, patched, spec.name)


@pytest.mark.parametrize("spec", WITH_MODEL, **IDS)
def test_float64_in_float64_out(spec):
    function = method_of(spec)
    model = network(spec.net).double()
    x = inputs(torch.float64)
    out = call(spec, function, arguments(spec, x, model))
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


@pytest.mark.parametrize("spec", WITH_MODEL, **IDS)
def test_a_model_in_training_mode_stays_in_it(spec):
    function = method_of(spec)
    model = network(spec.net).train()
    x = inputs()
    before, patched = state(model), patchable()
    target = {"target": [0, 4]} if spec.takes_target else {}
    out = call(spec, function, arguments(spec, x, model), **target)
    assert tuple(out.shape) == expected_shape(spec, x)
    assert all(m.training for m in model.modules()), "a model in training mode was switched to eval mode"
    assert_unchanged(before, model, patched, spec.name)
    if spec.takes_target:
        with pytest.raises(ValueError):
            call(spec, function, arguments(spec, x, model), target=K)
        assert all(m.training for m in model.modules()), "an error switched the model to eval mode"
        assert_unchanged(before, model, patched, f"{spec.name} after an error")


@pytest.mark.parametrize("spec", WITH_MODEL, **IDS)
def test_the_same_numbers_under_the_callers_no_grad(spec):
    function = method_of(spec)
    model, x = network(spec.net), inputs()
    expected = call(spec, function, arguments(spec, x, model))
    with torch.no_grad():
        got = call(spec, function, arguments(spec, x, model))
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fail_at", [1, 2], ids=["first pass", "second pass"])
@pytest.mark.parametrize("spec", WITH_MODEL, **IDS)
def test_an_exception_inside_leaves_nothing_behind(spec, fail_at):
    """The forward pass fails after the convolutions ran (their hooks fired): the error comes out as it
    was, and every hook, patch and gradient is gone."""
    function = method_of(spec)
    model, x = network(spec.net), inputs()
    args = arguments(spec, x, model)
    before, patched, hooks = state(model), patchable(), global_hooks()
    tripwire(model).fail_at = fail_at
    try:
        call(spec, function, args)
    except RuntimeError as error:
        assert "tripwire" in str(error), f"{spec.name} replaced the model's error: {error}"
    else:  # one pass, or a method that does not need the head: nothing to fail
        assert fail_at == 2 or spec.net == "vit", f"{spec.name} ran through a failing forward pass"
    tripwire(model).fail_at = 0
    assert global_hooks() == hooks, "a global hook was left behind"
    assert_unchanged(before, model, patched, f"{spec.name} after an exception")
    assert torch.equal(x, inputs()) and not x.requires_grad


# %% Targets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", WITH_TARGET, **IDS)
def test_bad_targets_are_value_errors_that_name_the_range_or_length(spec):
    function = method_of(spec)
    model, x = network(spec.net), inputs()
    args = arguments(spec, x, model)
    before, patched = state(model), patchable()
    for bad, says in [(K, f"0 to {K - 1}"), (-1, f"0 to {K - 1}"), (torch.tensor([0, 9]), f"0 to {K - 1}"),
                      ([0, 1, 2], str(N)), (torch.tensor([1, 2, 3]), str(N))]:
        with pytest.raises(ValueError) as error:
            call(spec, function, args, target=bad)
        assert re.search(rf"\b{says}\b", str(error.value)), f"{spec.name}(target={bad!r}): {error.value}"
        assert_unchanged(before, model, patched, f"{spec.name}(target={bad!r})")


@pytest.mark.parametrize("spec", WITH_TARGET, **IDS)
def test_every_form_of_target_names_the_same_classes(spec):
    function = method_of(spec)
    model, x = network(spec.net), inputs()
    args = arguments(spec, x, model)
    predicted = model(x).argmax(1)
    by_none = call(spec, function, args)
    for same in (predicted.tolist(), predicted):
        assert torch.allclose(call(spec, function, args, target=same), by_none, rtol=1e-5, atol=1e-7)
    by_int = call(spec, function, args, target=3)
    assert torch.allclose(call(spec, function, args, target=[3, 3]), by_int, rtol=1e-5, atol=1e-7)


# %% Rules of some methods ------------------------------------------------------------------------

GRADIENT_METHODS = [m for m in CONTRACT if m.lecture in ("01", "02", "03", "04") and m.result == "pixel"]


@pytest.mark.parametrize("spec", GRADIENT_METHODS, **IDS)
def test_gradient_methods_take_any_shape(spec):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, K)).eval()
    x = torch.rand(N, 2, 3)
    out = call(spec, method_of(spec), {"model": model, "inputs": x})
    assert out.shape == x.shape and not out.requires_grad


CAM_METHODS = [m for m in CONTRACT if "layer" in m.params]


@pytest.mark.parametrize("spec", CAM_METHODS, **IDS)
def test_a_layer_that_does_not_exist_lists_the_convolutions(spec):
    function = method_of(spec)
    model, x = network("cnn"), inputs()
    before, patched = state(model), patchable()
    with pytest.raises(ValueError, match="conv1.*conv2|conv2.*conv1"):
        function(model, x, None, layer="no.such.layer")
    with pytest.raises(ValueError):
        function(nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, K)).eval(), x, None)
    assert_unchanged(before, model, patched, spec.name)
    assert function(model, x, None, layer="conv1").shape == expected_shape(spec, x)
    assert torch.equal(function(model, x, None, layer=model.conv1), function(model, x, None, layer="conv1"))
    assert torch.equal(function(model, x, None), function(model, x, None, layer="conv2"))  # None: the last conv


def test_grad_cam_without_upsampling_keeps_the_layers_size():
    function = method_of(next(m for m in CONTRACT if m.name == "grad_cam"))
    model, x = network("cnn"), inputs()
    assert function(model, x, None, layer="conv2", upsample=False).shape == (N, 1, H // 2, W // 2)


BATCHED = [m for m in WITH_MODEL if "batch_size" in m.params]


@pytest.mark.parametrize("spec", BATCHED, **IDS)
def test_batch_size_changes_nothing_but_rounding(spec):
    function = method_of(spec)
    model, x = network(spec.net), inputs()
    args = arguments(spec, x, model)
    whole = call(spec, function, args)
    for batch_size in (1, 3):
        assert torch.allclose(call(spec, function, args, batch_size=batch_size), whole, rtol=1e-4, atol=1e-6), \
            f"{spec.name}(batch_size={batch_size})"


def test_lrp_names_a_layer_it_cannot_handle():
    function = method_of(next(m for m in CONTRACT if m.name == "lrp"))
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, 8), nn.LayerNorm(8), nn.Linear(8, K)).eval()
    with pytest.raises(ValueError, match="LayerNorm"):
        function(model, inputs())


@pytest.mark.parametrize("name", ["relevance_mass", "relevance_rank"])
def test_a_mask_with_no_pixel_is_a_value_error(name):
    spec = next(m for m in CONTRACT if m.name == name)
    function = method_of(spec)
    with pytest.raises(ValueError):
        function(torch.rand(N, 1, H, W), torch.zeros(N, H, W, dtype=torch.bool))


@pytest.mark.parametrize("name", ["lime", "kernel_shap"])
def test_solvers_refuse_inputs_that_are_not_finite(name):
    spec = next(m for m in CONTRACT if m.name == name)
    function = method_of(spec)
    x = inputs()
    x[1, 0, 3, 4] = float("nan")
    with pytest.raises(ValueError):
        call(spec, function, {"model": network("cnn"), "inputs": x})
