"""What a saliency method must leave alone, checked in one place: the tests and the exercises' grader use it.

A method may not change the caller's inputs (values, requires_grad, .grad), the model's
mode (training stays training), the parameters' .grad, or the hooks on the model, also
after an error, and it must work under the caller's torch.no_grad().
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

HOOK_KINDS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def hooks_left(model: nn.Module) -> list[str]:
    """'module.kind' for every hook still registered on `model` or its submodules."""
    return [f"{name}.{attr}" for name, m in model.named_modules() for attr in HOOK_KINDS if getattr(m, attr, None)]


def _raises_value_error(call: Callable[[], object]) -> bool:
    try:
        call()
    except ValueError:
        return True
    return False


def observe(method: Callable, model: nn.Module, x: torch.Tensor, *args, **kwargs) -> dict:
    """Call `method(model, x, *args, **kwargs)` three ways; report the state it left, unjudged.

    Keys: requires_grad_after and grad_after (of a copy of x that required grad),
    training_after (of the model, put in training mode before the call), under_no_grad (the
    output under torch.no_grad()), inputs_after (x itself, after the three calls),
    parameter_grads (names of parameters with a .grad), hooks_left. The exercises' grader
    runs this beside the student's code and judges the report against its own copies of
    x and the model (harness.side_effect_check), so no verdict is made here.
    """
    facts = {}
    x_grad = x.clone().requires_grad_(True)
    method(model, x_grad, *args, **kwargs)
    facts["requires_grad_after"], facts["grad_after"] = bool(x_grad.requires_grad), x_grad.grad
    model.train()
    method(model, x, *args, **kwargs)
    facts["training_after"] = bool(model.training)
    model.eval()
    with torch.no_grad():
        facts["under_no_grad"] = method(model, x, *args, **kwargs)
    facts["inputs_after"] = x
    facts["parameter_grads"] = [name for name, p in model.named_parameters() if p.grad is not None]
    facts["hooks_left"] = hooks_left(model)
    return facts


def assert_no_side_effects(method: Callable, model: nn.Module, **kwargs) -> None:
    """Run `method(model, x, target, **kwargs)` on good and bad targets; nothing of the caller's may change."""
    x = torch.rand(2, 3, 8, 8)
    before = x.clone()
    out = method(model, x, None, **kwargs)
    assert out.shape == x.shape and out.dtype == x.dtype and not out.requires_grad
    for bad in (5, -1, [0, 1, 2]):
        assert _raises_value_error(lambda: method(model, x, bad, **kwargs)), f"no ValueError for target={bad!r}"
    x_grad = torch.rand(2, 3, 8, 8, requires_grad=True)
    method(model, x_grad, [1, 2], **kwargs)
    assert x_grad.requires_grad and x_grad.grad is None
    assert torch.equal(x, before) and not x.requires_grad
    assert not model.training and not hooks_left(model)
    assert all(p.grad is None for p in model.parameters())
    model.train()  # a model in training mode stays there, also after an error
    method(model, x, [0, 4], **kwargs)
    assert _raises_value_error(lambda: method(model, x, 7, **kwargs)), "no ValueError for target=7"
    assert model.training and not hooks_left(model)
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():  # works under the caller's no_grad
        assert torch.isfinite(method(model.eval(), x, 0, **kwargs)).all()
