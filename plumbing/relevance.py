"""The hooks under lecture 9's LRP, DeepLIFT and top-k attack: run a network once, check that it is a chain of
layers the rules know (residual blocks included), and let a rule replace each layer's output, so
that its backward pass is the rule's. The rules themselves are in 09_advanced_techniques.py."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plumbing.errors import InputError

LINEAR = (nn.Conv2d, nn.Linear)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
ACTIVATIONS = (nn.ReLU, nn.ReLU6)  # ReLU6 = a ReLU then a clamp at 6: relevance passes through both
PASS = (nn.Dropout, nn.Flatten, nn.Identity)
UNITS = LINEAR + POOLS + ACTIVATIONS + PASS + (nn.BatchNorm2d,)


def summed_block(m: nn.Module) -> bool:
    """Does m end in out = identity + branch: torchvision's BasicBlock, Bottleneck, or an
    EfficientNet MBConvBlock whose skip applies (the condition its own forward() tests)?"""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if isinstance(m, (BasicBlock, Bottleneck)):
        return True
    args = getattr(m, "_block_args", None)
    return (type(m).__name__ == "MBConvBlock" and bool(m.id_skip) and args.stride == 1
            and args.input_filters == args.output_filters)


def why_lrp_refuses(model: nn.Module) -> str | None:
    """The first module the rules do not cover, and why; None if every module is one they know."""
    modules = list(model.named_modules())
    for name, m in modules:  # the two a student meets first, named for what they are
        if isinstance(m, nn.MultiheadAttention):
            return (f"layer {name} is attention ({type(m).__name__}): it multiplies two activations "
                    "(queries by keys), which no rule here divides; transformers need rules of their own")
        if type(m).__name__ == "MBConvBlock" and m.has_se:
            return f"layer {name} has squeeze-and-excitation, a product of two activations"
    inside_conv = {id(c) for m in model.modules() if isinstance(m, nn.Conv2d)
                   for c in m.modules() if c is not m}
    for name, m in modules:  # a Conv2d is one unit, even with a padding module inside (TensorFlow's "same")
        own = [p for p, _ in m.named_parameters(recurse=False)]
        if id(m) in inside_conv or isinstance(m, UNITS) or (not own and list(m.children())):
            continue
        reason = f"which uses parameters of its own ({', '.join(own)})" if own else "which has no LRP rule"
        return (f"layer {name or type(m).__name__ + ' itself'} is {type(m).__name__}, {reason}; the rules "
                f"cover {', '.join(t.__name__ for t in UNITS)} and residual blocks")
    return None


def merged(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(W', b') of conv then bn: W' = W gamma / sqrt(var + eps), b' = (b - mean) gamma / sqrt(...) + beta."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return conv.weight * scale.view(-1, 1, 1, 1), (b - bn.running_mean) * scale + bn.bias


def forward_with_rules(model: nn.Module, x: torch.Tensor, rule_for) -> torch.Tensor:
    """model(x), with hooks that check it is a chain of known layers and residual blocks, and that
    let `rule_for(kind, module, name, a, out, params)` replace each layer's output (its backward).

    kind is "linear" (a conv or linear layer; params = (W, b), with a BatchNorm right after a
    conv merged in), "pool", "activation" (a: its input, kept before an in-place op), "sum" (a
    residual block's output) or "pass". Hooks see module calls, not what forward() does between
    them (an F.relu, a `+`), so each layer's input must be the previous one's output: else ValueError.
    """
    reason = why_lrp_refuses(model)
    if reason:
        raise InputError(f"LRP cannot explain {type(model).__name__}: {reason}")
    blocks = {m for m in model.modules() if summed_block(m)}
    inside = {id(c) for b in blocks for c in b.modules() if c is not b}  # their sums are known: not checked
    padding = {id(c) for m in model.modules() if isinstance(m, nn.Conv2d) for c in m.modules() if c is not m}
    names = {m: n for n, m in model.named_modules() if id(m) not in padding and (
        m in blocks or isinstance(m, nn.Conv2d) or (isinstance(m, UNITS) and not list(m.children())))}
    state = {"current": x.detach().clone(), "from": "the model's input", "last": (None, None, None), "a": {},
             "busy": False}

    def refuse(text):
        raise InputError(f"LRP cannot explain {type(model).__name__}: {text}")

    def before(module, args):
        if state["busy"]:  # a rule recomputing a layer (with other weights) calls it again
            return None
        a, name = args[0], names[module]
        if id(module) not in inside and not same_tensor(a, state["current"]):
            refuse(f"the input of layer {name} is not the output of {state['from']}; forward() computes "
                   "something between them (a residual addition, a call such as F.relu) with no rule here")
        if isinstance(module, nn.BatchNorm2d) and not (isinstance(state["last"][0], nn.Conv2d)
                                                        and same_tensor(a, state["last"][2])):
            refuse(f"layer {name} is BatchNorm2d and does not directly follow a Conv2d, so it cannot be "
                   "merged into one")
        state["a"][module] = a  # kept before an in-place module overwrites it
        return (a.clone(),) if isinstance(module, ACTIVATIONS) else None

    def after(module, args, out):
        if state["busy"]:
            return None
        a, name = state["a"].pop(module), names[module]
        state["busy"] = True
        if isinstance(module, nn.BatchNorm2d):  # the conv's own replacement is dropped: only bn reads it
            conv, a, _ = state["last"]
            new = rule_for("linear", conv, f"{names[conv]}+{name}", a, out, merged(conv, module))
        elif isinstance(module, LINEAR):
            new = rule_for("linear", module, name, a, out, (module.weight, module.bias))
        else:
            kind = ("sum" if module in blocks else "pool" if isinstance(module, POOLS)
                    else "activation" if isinstance(module, ACTIVATIONS) else "pass")
            new = rule_for(kind, module, name, a, out, None)
        state["busy"] = False
        new = out if new is None else new
        state["last"] = (module, a, new.detach().clone())
        if id(module) not in inside:
            state.update(current=new.detach().clone(), **{"from": f"layer {name}"})
        return new

    handles = []
    try:
        for m in names:
            handles += [m.register_forward_pre_hook(before), m.register_forward_hook(after)]
        logits = model(x)  # (N, K)
    finally:
        for handle in handles:
            handle.remove()
    if not same_tensor(logits, state["current"]):
        refuse(f"its output is not the output of {state['from']}; forward() changes it afterwards")
    return logits


def same_tensor(received: torch.Tensor, given: torch.Tensor) -> bool:
    """Does a layer receive exactly what the one before gave (or its flatten(_, 1))?"""
    if given is None:
        return False
    if received.shape != given.shape and given.dim() > 2:
        given = given.flatten(1)  # torch.flatten(x, 1) or x.view(N, -1) in forward(), as in VGG
    return received.shape == given.shape and torch.equal(received, given)


class softplus_relus:  # noqa: N801 (a context manager, used as `with softplus_relus(model, beta):`)
    """ReLU -> softplus(beta x) / beta and ReLU6 -> that minus its shift by 6, through hooks removed
    on exit: smooth enough for the map's own gradient, which ReLUs make zero almost everywhere."""

    def __init__(self, model: nn.Module, beta: float):
        self.modules = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
        self.beta, self.handles, self.inputs = beta, [], {}

    def smooth(self, module, args, out):
        a = self.inputs.pop(module)
        y = F.softplus(a, self.beta)
        return y - F.softplus(a - 6, self.beta) if isinstance(module, nn.ReLU6) else y

    def keep(self, module, args):  # an in-place ReLU would overwrite what softplus needs
        self.inputs[module] = args[0]
        return (args[0].clone(),)

    def __enter__(self):
        for m in self.modules:
            self.handles += [m.register_forward_pre_hook(self.keep), m.register_forward_hook(self.smooth)]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        return False
