"""Part 9 of 9: layer-wise relevance propagation, Vision Transformers, saliency beyond images.
Previous: 08_comparative_analysis.py         (the last lecture)

Intuition: hand the class score back through the network layer by layer, each layer sharing
what it received among its inputs, so that the shares still add up to the score (LRP); in a
transformer, follow how much the class token draws on each patch, block after block (rollout).

    LRP-eps    R_j = sum_k a_j w_jk / (z_k + eps sign z_k) R_k,   z_k = sum_j a_j w_jk + b_k
    LRP-gamma  the same with w_jk + gamma max(0, w_jk) for w_jk: positive evidence first
    conserved  sum_j R_j = sum_k R_k, less what the biases b_k and eps take (zero without them)
    LRP-0      eps -> 0 on a ReLU network: R = x * dS_c/dx, lecture 2's gradient x input
    rollout    A~_l = rows_normalised((A_l + I) / 2),  map = (A~_L ... A~_1)[class token, patches]
    Grad-CAM   lecture 5's formula on a block's patch tokens, laid back on their h x w grid

Papers: S. Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
Layer-Wise Relevance Propagation", PLOS ONE 2015, https://doi.org/10.1371/journal.pone.0130140;
G. Montavon et al., "Layer-Wise Relevance Propagation: An Overview", 2019 (the gamma rule);
M. Ancona et al., ICLR 2018, https://arxiv.org/abs/1711.06104 (LRP-0 = gradient x input);
S. Abnar, W. Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020,
https://arxiv.org/abs/2005.00928.

Run:          python 09_advanced_techniques.py                (VGG-16 for LRP, ViT-B/16 for rollout)
In seconds:   python 09_advanced_techniques.py --quick
Digits:       python 09_advanced_techniques.py --model mnist   (the digit CNN and the digit ViT)
Options:      --epsilon 0.25  --gamma 0.25  --head-fusion max  --discard-ratio 0.9
Offline, LRP explains the digit CNN (EfficientNet-Lite0 has BatchNorm) and rollout the digit ViT.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import utils

vanilla = utils.load_lecture("01_vanilla_gradient_saliency")  # dS_c/dx
gxi = utils.load_lecture("02_gradient_input_saliency")  # x * dS_c/dx
ig = utils.load_lecture("04_integrated_gradients")  # integrated gradients

EPSILON = 0.25  # the epsilon panel's stabiliser, in logit units (the method's default, 1e-6, is LRP-0)
GAMMA = 0.25  # Montavon et al. use gamma around 0.25 in lower layers
TINY_EPSILON = 1e-9  # "no epsilon": LRP-0, and the gamma rule's stabiliser (Captum's default)
DISCARD_RATIO = 0.9  # Abnar and Zuidema's public code drops 90% with max fusion
HEAD_FUSION = "max"
PHOTOS = ["cat_chelsea.png", "coffee.png", "astronaut.png"]
QUICK_PHOTOS = 2
DIGITS = 6
QUICK_DIGITS = 4
TABULAR_STEPS = 200  # full-batch Adam steps for the two wine models: well under a second


# %% Layer-wise relevance propagation: which layers, in which order ----------------------

RULE_LAYERS = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
PASS_LAYERS = (nn.ReLU, nn.Dropout)  # relevance goes through unchanged
LRP_LAYERS = RULE_LAYERS + PASS_LAYERS + (nn.Flatten,)
RULES = ("epsilon", "gamma")


@dataclass
class Step:
    """One module call of the forward pass, as LRP will walk it back."""

    name: str
    module: nn.Module
    a: torch.Tensor | None  # the layer's input (rule layers only), detached
    in_shape: torch.Size
    out_shape: torch.Size


def why_lrp_refuses(model: nn.Module) -> str | None:
    """The first module LRP has no rule for, and why; None if every module is one it knows."""
    modules = list(model.named_modules())
    for name, m in modules:  # the two a student meets first, named for what they are
        if isinstance(m, nn.MultiheadAttention):
            return (f"layer {name} is attention ({type(m).__name__}): it multiplies two activations "
                    "(queries by keys), which no rule here divides; transformers need rules of their own")
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return (f"layer {name} is {type(m).__name__}, which these rules do not cover; "
                    "fold it into the convolution before it first")
    for name, m in modules:
        label = f"layer {name or type(m).__name__ + ' itself'} is {type(m).__name__}"
        own = [p for p, _ in m.named_parameters(recurse=False)]
        if not isinstance(m, LRP_LAYERS) and (own or not list(m.children())):
            reason = f"which uses parameters of its own ({', '.join(own)})" if own else \
                "which has no LRP rule"
            return f"{label}, {reason}; the rules cover {', '.join(t.__name__ for t in LRP_LAYERS)}"
        if isinstance(m, nn.MaxPool2d) and m.return_indices:
            return f"{label} with return_indices=True: it returns indices as well as its output"
    return None


def same_tensor(received: torch.Tensor, given: torch.Tensor) -> bool:
    """Does a layer receive exactly what the one before gave (or its torch.flatten(_, 1))?"""
    if received.shape != given.shape and given.dim() > 2:
        given = given.flatten(1)  # torch.flatten(x, 1) in forward(), as torchvision's VGG does
    return received.shape == given.shape and torch.equal(received, given)


def record_steps(model: nn.Module, x: torch.Tensor) -> tuple[list[Step], torch.Tensor]:
    """Run the model once, recording every module call in order: (steps, logits).

    LRP needs the network as a chain of known layers. Hooks see module calls but not
    what forward() does between them (a residual addition, an F.relu), so each
    layer's input is checked to be exactly the previous layer's output, and the
    logits the last layer's: anything else is refused, naming the layer.
    """
    reason = why_lrp_refuses(model)
    if reason:
        raise utils.InputError(f"LRP cannot explain {type(model).__name__}: {reason}")
    steps: list[Step] = []
    last = {"name": "the model's input", "output": x}

    def before(module, args):
        name = names[module]
        if not same_tensor(args[0], last["output"]):
            raise utils.InputError(
                f"LRP cannot explain {type(model).__name__}: the input of layer {name} is not the output of "
                f"{last['name']}; forward() computes something between them (a residual addition, a "
                "function call such as F.relu) that has no LRP rule here")
        a = args[0].detach().clone() if isinstance(module, RULE_LAYERS) else None
        steps.append(Step(name, module, a, args[0].shape, args[0].shape))

    def after(module, args, output):
        steps[-1].out_shape = output.shape
        last.update(name=f"layer {names[module]}", output=output.detach().clone())  # before an in-place ReLU

    names = {m: name for name, m in model.named_modules() if not list(m.children())}
    handles = []
    try:
        for m in names:
            handles += [m.register_forward_pre_hook(before), m.register_forward_hook(after)]
        with torch.no_grad():
            logits = model(x)  # (N, K)
    finally:
        for handle in handles:
            handle.remove()
    if not steps or not same_tensor(logits, last["output"]):
        raise utils.InputError(f"LRP cannot explain {type(model).__name__}: its output is not the output of "
                               f"{last['name']}; forward() changes it afterwards")
    return steps, logits


# %% The rules --------------------------------------------------------------------------


def stabilise(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """z + epsilon * sign(z), with sign(0) = +1, so no denominator is zero."""
    return z + epsilon * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def relevance_through(step: Step, R: torch.Tensor, rule: str, epsilon: float, gamma: float,
                      trace: list | None = None) -> torch.Tensor:
    """R_j = a_j * sum_k w'_jk R_k / (z_k + eps sign z_k), through one conv, linear or pooling layer.

    The sum over k is a backward pass: with s_k = R_k / (z_k + eps sign z_k) as the
    output's gradient, autograd gives c_j = sum_k w'_jk s_k, and R_j = a_j c_j.
    """
    module = step.module
    a = step.a.clone().requires_grad_(True)  # (N, ...) the layer's input
    with torch.enable_grad():
        if rule == "gamma" and isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight + gamma * module.weight.clamp(min=0)  # W + gamma W+, bias unchanged
            z = torch.func.functional_call(module, {"weight": w, "bias": module.bias}, (a,))
        else:
            z = module(a)  # pooling has no weights: the epsilon rule
        s = R / stabilise(z.detach(), epsilon)  # (N, ...) like z
        (c,) = torch.autograd.grad(z, a, grad_outputs=s)  # (N, ...) like a
    R_in = (a * c).detach()
    if trace is not None:
        bias = getattr(module, "bias", None)
        shape = (1, -1) + (1,) * (s.dim() - 2)
        taken = (s * bias.view(shape)).flatten(1).sum(1) if bias is not None else s.new_zeros(len(s))
        trace.append({"layer": step.name, "out": R.flatten(1).sum(1), "in": R_in.flatten(1).sum(1),
                      "bias": taken.detach()})
    return R_in


# %% The method ---------------------------------------------------------------------


def lrp(model: nn.Module, inputs: torch.Tensor, target=None, rule: str = "epsilon",
        epsilon: float = 1e-6, gamma: float = 0.25, trace: list | None = None) -> torch.Tensor:
    """Layer-wise relevance propagation (Bach et al., 2015) with the epsilon or gamma rule.

    Relevance starts as the target logit f_c(x) and is handed back layer by layer,
    each layer splitting what it received among its inputs in proportion to their
    contributions a_j w_jk to z_k. ReLU and dropout pass it through unchanged.
    rule     "epsilon" everywhere, or "gamma": W + gamma W+ in conv and linear layers
             (the epsilon rule in pooling); epsilon stabilises every denominator
    trace    a list: each conv, linear and pooling layer appends its relevance sums
    Raises ValueError naming the first layer it cannot handle (BatchNorm, attention,
    a residual addition, ...). Returns relevance shaped like `inputs`, detached.

        R = lrp(model, x, target=281, rule="gamma")   # (N, C, H, W); R.sum() ~ f_c(x)
    """
    if rule not in RULES:
        raise utils.InputError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if not (epsilon > 0 and gamma >= 0):
        raise utils.InputError(f"epsilon must be > 0 and gamma >= 0, got {epsilon} and {gamma}")
    x = inputs.detach().clone()  # even an in-place first layer cannot touch the caller's tensor
    steps, logits = record_steps(model, x)  # the chain of layers, checked
    scores, classes = utils.target_scores(logits, target)  # (N,) f_c(x)
    R = torch.zeros_like(logits).scatter(1, classes[:, None], scores[:, None])  # (N, K): f_c at c, else 0
    for step in reversed(steps):
        R = R.reshape(step.out_shape)  # undoes a torch.flatten between two layers
        if isinstance(step.module, RULE_LAYERS):
            R = relevance_through(step, R, rule, epsilon, gamma, trace)
        # ReLU, dropout and Flatten hand R back as it is (reshaped to their input)
        R = R.reshape(step.in_shape)
    return R.reshape(x.shape).detach().to(inputs.dtype)


# %% Vision Transformers: attention rollout ------------------------------------------------

HEAD_FUSIONS = ("mean", "max", "min")


def check_vit(model: nn.Module) -> None:
    from torchvision.models import VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise utils.InputError("attention rollout reads torchvision's VisionTransformer; "
                               f"got {type(model).__name__}")


def attention_maps(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Every encoder block's attention weights, one (N, heads, T, T) tensor per block.

    torchvision calls its attention with need_weights=False, so the weights are
    never formed; they are recomputed here from what each block's attention
    receives (its ln_1 output) with the block's own projections:
        q, k = x W_q^T + b_q, x W_k^T + b_k      A = softmax(q k^T / sqrt(d)) per head
    """
    check_vit(model)
    received: list[torch.Tensor] = []
    blocks = list(model.encoder.layers)
    handles = [b.self_attention.register_forward_pre_hook(lambda m, args: received.append(args[0]))
               for b in blocks]
    maps = []
    try:
        with torch.no_grad():
            model(inputs.detach())
            for block, x in zip(blocks, received):  # x: (N, T, D), the tokens after ln_1
                attention = block.self_attention
                heads = attention.num_heads
                q, k, _ = F.linear(x, attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
                n, t, d = q.shape  # q, k: (N, T, D)
                q = q.view(n, t, heads, d // heads).transpose(1, 2)  # (N, heads, T, d/heads)
                k = k.view(n, t, heads, d // heads).transpose(1, 2)
                scores = q @ k.transpose(-2, -1) / math.sqrt(d // heads)  # (N, heads, T, T)
                maps.append(scores.softmax(dim=-1))
    finally:
        for handle in handles:
            handle.remove()
    return maps


def rollout_layer(attention: torch.Tensor, head_fusion: str, discard_ratio: float) -> torch.Tensor:
    """One block's step of the rollout: (N, heads, T, T) -> a row-stochastic (N, T, T).

    Fuse the heads; zero the smallest int(T*T*discard_ratio) entries, but never the
    class token's own [0, 0]; add the identity for the residual connection, halve,
    and make each ROW sum to 1 (token i's output is a mix of the tokens it reads).
    """
    fused = {"mean": attention.mean(1), "max": attention.amax(1), "min": attention.amin(1)}[head_fusion]
    n, t, _ = fused.shape  # (N, T, T)
    k = int(t * t * discard_ratio)
    if k:
        flat = fused.reshape(n, t * t).clone()  # (N, T*T)
        smallest = flat.topk(k, dim=-1, largest=False).indices  # (N, k)
        kept = flat[:, 0].clone()  # [0, 0]: the class token attending to itself
        flat.scatter_(1, smallest, 0.0)
        flat[:, 0] = kept
        fused = flat.view(n, t, t)
    a = (fused + torch.eye(t, dtype=fused.dtype, device=fused.device)) / 2  # (N, T, T)
    # Rows, not columns: the well-known public implementation divides by a.sum(dim=-1)
    # without keepdim, which broadcasts over columns (a known bug).
    return a / a.sum(dim=-1, keepdim=True)


def attention_rollout(model: nn.Module, inputs: torch.Tensor, head_fusion: str = "mean",
                      discard_ratio: float = 0.0) -> torch.Tensor:
    """Attention rollout (Abnar and Zuidema, 2020) for torchvision's VisionTransformer.

        A~_l    = rows_normalised( (fuse_heads(A_l) with the smallest entries dropped + I) / 2 )
        rollout = A~_L ... A~_2 A~_1          how much each output token draws on each input token
        map     = rollout[class token, patch tokens], reshaped to the patch grid

    head_fusion    "mean", "max" or "min" over the heads of each block
    discard_ratio  the fraction of each fused T x T matrix zeroed, smallest first
    Returns (N, h, w), unnormalised: the share of the class token drawn from each patch.

        heat = attention_rollout(vit, x, head_fusion="max", discard_ratio=0.9)   # (N, 14, 14)
    """
    check_vit(model)
    if head_fusion not in HEAD_FUSIONS:
        raise utils.InputError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
    if not 0.0 <= discard_ratio < 1.0:
        raise utils.InputError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    maps = attention_maps(model, inputs)  # per block (N, heads, T, T)
    n, _, t, _ = maps[0].shape
    rollout = torch.eye(t, dtype=maps[0].dtype, device=maps[0].device).expand(n, t, t)  # (N, T, T)
    for attention in maps:
        rollout = rollout_layer(attention, head_fusion, discard_ratio) @ rollout  # later blocks on the left
    side = model.image_size // model.patch_size  # the patch grid is side x side
    return rollout[:, 0, 1:].reshape(n, side, side).detach().to(inputs.dtype)  # (N, h, w)


# %% Vision Transformers: Grad-CAM on the patch tokens ----------------------------------------


def token_layer(model: nn.Module, layer) -> nn.Module:
    """The module whose token output (N, 1 + h*w, D) Grad-CAM reads; None: the next-to-last block.

    Not the last block: after it, only the class token reaches the head, so the
    patch tokens' gradients there are exactly zero.
    """
    check_vit(model)
    blocks = list(model.encoder.layers)
    if layer is None:
        return blocks[-2] if len(blocks) > 1 else model.encoder.dropout
    if isinstance(layer, nn.Module):
        if not any(layer is m for m in model.modules()):
            raise utils.InputError(f"the layer {type(layer).__name__} is not inside the model")
        return layer
    names = dict(model.named_modules())
    if layer not in names or not layer:
        block_names = [n for n, m in names.items() if m in blocks]
        raise utils.InputError(f"no layer named {layer!r}; the encoder blocks are: {', '.join(block_names)}")
    return names[layer]


def token_grad_cam(model: nn.Module, inputs: torch.Tensor, target=None, layer=None,
                   relu: bool = True, upsample: bool = True) -> torch.Tensor:
    """Grad-CAM (lecture 5's formula) on a Vision Transformer's patch tokens.

    The patch tokens keep their positions through every block, so once the class
    token is dropped and the rest is laid back on the h x w patch grid, a block's
    output is a feature map A_k[i, j] like a convolution's, and
        L_c = ReLU( sum_k alpha_k A_k ),  alpha_k = mean over (i, j) of dS_c / dA_k[i, j]
    Returns (N, 1, H, W) (bilinear), or the grid's (N, 1, h, w) with upsample=False.
    """
    module = token_layer(model, layer)
    side = model.image_size // model.patch_size
    x = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad(), utils.capture_activation(module) as captured:
        scores, _ = utils.target_scores(model(x), target)  # (N,) S_c
        tokens = captured.activation  # (N, 1 + h*w, D)
        if tokens is None or tokens.dim() != 3 or tokens.shape[1] != 1 + side * side:
            raise utils.InputError(f"layer {type(module).__name__} does not output the "
                                   f"{1 + side * side} tokens")
        (grads,) = torch.autograd.grad(scores.sum(), tokens)  # (N, 1 + h*w, D)

    def as_grid(t: torch.Tensor) -> torch.Tensor:  # drop the class token; (N, h*w, D) -> (N, D, h, w)
        return t[:, 1:].reshape(t.shape[0], side, side, -1).permute(0, 3, 1, 2)

    A, dS_dA = as_grid(tokens), as_grid(grads)  # (N, D, h, w) each
    alpha = dS_dA.mean(dim=(2, 3), keepdim=True)  # (N, D, 1, 1)
    cam = (alpha * A).sum(dim=1, keepdim=True)  # (N, 1, h, w)
    if relu:
        cam = F.relu(cam)
    if upsample:
        cam = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
    return cam.detach().to(inputs.dtype)


# %% The two digit networks this lecture adds (weights in data/, from tools/train_digit_vit.py) ----

DIGIT_VIT_WEIGHTS = utils.DATA_DIR / "digit_vit.pt"
DIGIT_MLP_WEIGHTS = utils.DATA_DIR / "digit_mlp.pt"
DIGIT_VIT = dict(image_size=28, patch_size=4, num_layers=4, num_heads=4, hidden_dim=64, mlp_dim=128,
                 num_classes=10)  # 7x7 patches of 4x4 pixels: the digit CNN's 7x7 grid, 50 tokens


def digit_vit() -> nn.Module:
    """torchvision's VisionTransformer for 28x28 grey digits in [0, 1], untrained.

    The class is torchvision's own; only its patch embedding takes one input
    channel instead of three, so it reads the same tensors as the digit CNN.
    """
    from torchvision.models import VisionTransformer

    model = VisionTransformer(**DIGIT_VIT)
    p, hidden = DIGIT_VIT["patch_size"], DIGIT_VIT["hidden_dim"]
    model.conv_proj = nn.Conv2d(1, hidden, kernel_size=p, stride=p)
    nn.init.trunc_normal_(model.conv_proj.weight, std=(1 / (p * p)) ** 0.5)  # torchvision's own init
    nn.init.zeros_(model.conv_proj.bias)
    return model


def digit_mlp() -> nn.Module:
    """784 -> 128 -> 10 on a flattened digit: no convolution, no idea of neighbours.

    It takes (N, 784) or (N, 1, 28, 28) (flattened first, which changes nothing for (N, 784)).
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 128), nn.ReLU(), nn.Linear(128, 10))


def load_digit_network(build, path: Path) -> nn.Module:
    """`build()` with the trained weights in `path`, in eval mode; one line if they are missing."""
    if not Path(path).is_file():
        raise utils.InputError(f"{path}: weights missing; run tools/train_digit_vit.py, or restore data/")
    model = build()
    try:
        model.load_state_dict(utils.read_state_dict(path))
    except RuntimeError as error:
        raise utils.InputError(f"{path} does not hold {build.__name__}'s weights "
                               f"({str(error).splitlines()[-1].strip()})") from None
    return model.eval()


def load_digit_vit(weights_file: Path | None = None) -> nn.Module:
    return load_digit_network(digit_vit, weights_file or DIGIT_VIT_WEIGHTS)


def load_digit_mlp(weights_file: Path | None = None) -> nn.Module:
    return load_digit_network(digit_mlp, weights_file or DIGIT_MLP_WEIGHTS)


# %% Beyond images: a multilayer perceptron over flattened digits, and a table ----------------


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> nn.Module:
    """Full-batch Adam on cross-entropy, the plainest training loop; the model in eval mode."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@dataclass
class Table:
    """A small tabular data set, standardised with the training half's mean and spread."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    features: list[str]
    classes: list[str]


def wine_table(seed: int) -> Table | None:
    """scikit-learn's wine data (178 wines, 13 measurements, 3 cultivars), or None without it."""
    try:
        from sklearn.datasets import load_wine
    except ImportError:
        return None
    data = load_wine()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = order[: len(x) * 2 // 3], order[len(x) * 2 // 3:]
    mean, std = x[train].mean(0), x[train].std(0)
    x = (x - mean) / std  # 0 now means "the average wine", which is IG's zero baseline here
    names = [n.replace("od280/od315_of_diluted_wines", "OD280/OD315").replace("_", " ")
             for n in data.feature_names]
    return Table(x[train], y[train], x[test], y[test], names, [f"cultivar {c}" for c in range(3)])


def tabular_models(table: Table, seed: int) -> dict[str, nn.Module]:
    """A logistic (softmax) regression and a small MLP, each trained in well under a second."""
    torch.manual_seed(seed)
    d, k = table.x_train.shape[1], len(table.classes)
    models = {"logistic regression": nn.Sequential(nn.Linear(d, k)),
              "MLP 13-32-3": nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, k))}
    for model in models.values():
        fit(model, table.x_train, table.y_train, TABULAR_STEPS, 0.02)
    return models


# %% Figures --------------------------------------------------------------------------


def short(name: str, width: int = 20) -> str:
    """A class name short enough for a panel title ("American Staffordshire terrier" is not)."""
    return name if len(name) <= width else name[: width - 3].rstrip() + "..."


def upsampled(maps: torch.Tensor, size: Sequence[int]) -> np.ndarray:
    """(N, h, w) patch-grid maps -> (N, H, W) bilinear, each divided by its maximum, for display."""
    big = F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return utils.scale_for_display(big.cpu().numpy(), percentile=100.0)


def plot_lrp(images: np.ndarray, titles: list[str], columns: list[tuple[str, torch.Tensor]], network: str):
    """One row per example: the input, then each signed map (red: relevance for the class)."""
    fig, axes = utils.figure_grid(len(images), 1 + len(columns), title=f"LRP and gradient x input, {network}")
    for row, (image, title) in enumerate(zip(images, titles)):
        utils.show_image(axes[row, 0], image, title)
        for col, (label, maps) in enumerate(columns, start=1):
            utils.show_signed_map(axes[row, col], maps[row: row + 1], label)
    return fig


def plot_vit(images: np.ndarray, titles: list[str], columns: list[tuple[str, np.ndarray]], network: str):
    """One row per example: the input, then each map over it (each divided by its maximum)."""
    fig, axes = utils.figure_grid(len(images), 1 + len(columns),
                                  title=f"Where a Vision Transformer looks, {network}")
    for row, (image, title) in enumerate(zip(images, titles)):
        utils.show_image(axes[row, 0], image, title)
        for col, (label, maps) in enumerate(columns, start=1):
            if not maps[row].any():  # e.g. Grad-CAM when no patch raises S_c
                label += "\n(all zero)"
            utils.show_heatmap(axes[row, col], maps[row], label, image=image, label="/ max")
    return fig


def plot_flat_digits(images: np.ndarray, titles: list[str], columns: list[tuple[str, torch.Tensor]]):
    """One row per digit: the digit, then signed maps reshaped to 28 x 28."""
    fig, axes = utils.figure_grid(len(images), 1 + len(columns), panel=2.3,
                                  title="The same methods on an MLP over 784 flattened pixels, "
                                        "and on the CNN")
    for row, (image, title) in enumerate(zip(images, titles)):
        utils.show_image(axes[row, 0], image, title)
        for col, (label, maps) in enumerate(columns, start=1):
            utils.show_signed_map(axes[row, col], maps[row: row + 1].reshape(1, 1, 28, 28), label)
    return fig


def plot_tabular(features: list[str], panels: list[tuple[str, list[tuple[str, np.ndarray]]]], title: str):
    """Horizontal grouped bars, one group per feature, one panel per model."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 0.32 * len(features) + 1.6),
                             sharey=True, layout="constrained", squeeze=False)
    fig.suptitle(title, fontsize=11)
    rows = np.arange(len(features))
    for ax, (panel_title, bars) in zip(axes[0], panels):
        height = 0.8 / len(bars)
        for b, (label, values) in enumerate(bars):
            ax.barh(rows + (b - (len(bars) - 1) / 2) * height, values, height, label=label)
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("contribution to the class logit (or coefficient)", fontsize=8)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncols=2)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_yticks(rows, features)
    axes[0, 0].invert_yaxis()
    return fig


# %% The demo, part 1: LRP ---------------------------------------------------------------


def digit_demo(demo: utils.Demo, model: nn.Module, count: int) -> utils.Demo:
    """The digit track's batch for `model` (the digit CNN or the digit ViT)."""
    x, labels, _ = utils.load_digits(count)
    return utils.Demo("mnist", "mnist", model.to(demo.device).eval(), x.to(demo.device),
                      [f"digit {label}" for label in labels], utils.MNIST_CLASSES, demo.device)


def photo_demo(demo: utils.Demo, name: str) -> utils.Demo | None:
    """The demo's photos through another pretrained ImageNet network, or None without its weights."""
    try:
        model, categories, transform = utils.load_imagenet_model(name)
    except utils.WeightsUnavailable as error:
        print(f"No pretrained {name} weights ({error}).")
        return None
    images, stems = utils.load_images([utils.DATA_DIR / f for f in PHOTOS[: len(demo.names)]])
    x = utils.preprocess(images, transform).to(demo.device)
    return utils.Demo("imagenet", name, model.to(demo.device).eval(), x, stems, categories, demo.device,
                      tuple(transform.mean), tuple(transform.std))


def lrp_demo(args, demo: utils.Demo) -> tuple[utils.Demo, str]:
    """The network LRP explains: the demo's, else VGG-16 (not with --quick), else the digit CNN."""
    reason = why_lrp_refuses(demo.model)
    if reason is None:
        return demo, demo.network
    print(f"LRP cannot explain {demo.model_name}: {reason}.")
    if demo.track == "imagenet" and not args.quick and (args.model or args.default_model) != "vgg16":
        vgg = photo_demo(demo, "vgg16")  # (setup_demo has already tried it when it was the one asked for)
        if vgg is not None:
            print("LRP explains VGG-16 instead, a plain chain of convolutions, ReLUs and pooling.")
            return vgg, "vgg16"
    print("LRP explains the digit CNN instead (convolutions, ReLUs, pooling, linear layers).")
    return digit_demo(demo, utils.load_mnist_cnn(), QUICK_DIGITS if args.quick else DIGITS), "digit CNN"


def without_biases(model: nn.Module) -> nn.Module:
    """A copy of `model` with every bias set to zero (the caller's model is untouched)."""
    bare = copy.deepcopy(model)
    with torch.no_grad():
        for m in bare.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    return bare


def print_conservation(model: nn.Module, x: torch.Tensor, c: int, epsilon: float) -> None:
    """Layer by layer: the relevance each layer receives, hands on, and loses to biases and eps."""
    trace: list = []
    R = lrp(model, x, c, rule="epsilon", epsilon=epsilon, trace=trace)
    with torch.no_grad():
        logit = float(model(x)[0, c])
    print(f"\nConservation, LRP-eps (eps = {epsilon:g}), first example, class {c}: f_c(x) = {logit:.4f}")
    print(f"  {'layer':>14} {'receives':>10} {'hands on':>10} {'biases take':>12} {'eps takes':>10}")
    for t in trace:
        received, given, bias = float(t["out"][0]), float(t["in"][0]), float(t["bias"][0])
        eps_took = received - given - bias
        print(f"  {t['layer']:>14} {received:10.4f} {given:10.4f} {bias:12.4f} {eps_took:10.4f}")
    total = float(R.sum())
    print(f"  sum of R over the input: {total:.4f} = {total / logit:.0%} of f_c(x); "
          "the rest went to biases and eps")
    bare = without_biases(model)
    R0 = lrp(bare, x, c, rule="epsilon", epsilon=TINY_EPSILON)
    with torch.no_grad():
        logit0 = float(bare(x)[0, c])
    print(f"  the same network with every bias set to 0, eps = {TINY_EPSILON:g}: "
          f"sum of R = {float(R0.sum()):.6f}, "
          f"f_c(x) = {logit0:.6f}: conserved")


def run_lrp(args, demo: utils.Demo, target) -> None:
    lrp_on, network = lrp_demo(args, demo)
    model, x = lrp_on.model, lrp_on.x
    with torch.no_grad():
        same_classes = lrp_on.categories == demo.categories  # --target names the demo's classes
        classes = utils.resolve_target(model(x), target if same_classes else None)  # (N,)
    lrp_0 = lrp(model, x, classes, rule="epsilon", epsilon=TINY_EPSILON)  # (N, C, H, W)
    grad_x_input = gxi.gradient_x_input(model, x, classes)  # lecture 2
    lrp_eps = lrp(model, x, classes, rule="epsilon", epsilon=args.epsilon)
    lrp_gamma = lrp(model, x, classes, rule="gamma", epsilon=TINY_EPSILON, gamma=args.gamma)
    gap = float((lrp_0 - grad_x_input).abs().max() / grad_x_input.abs().max())
    print(f"\nLRP-0 (eps = {TINY_EPSILON:g}) against gradient x input on {network}: largest difference "
          f"{gap:.1e} of the map's largest value: on a ReLU network they are the same map")
    print_conservation(model, x[:1], int(classes[0]), args.epsilon)
    print("A ResNet adds its input to its output (x + f(x)): the relevance must be split between "
          "the two branches, and its BatchNorm folded into the conv before it; these rules do "
          "neither, so ResNets need rules of their own.")
    titles = [f"{n}\nclass '{short(lrp_on.class_name(int(c)))}'" for n, c in zip(lrp_on.names, classes)]
    columns = [("gradient x input (lecture 2)", grad_x_input), (f"LRP-0 (eps = {TINY_EPSILON:g})", lrp_0),
               (f"LRP-eps (eps = {args.epsilon:g})", lrp_eps),
               (f"LRP-gamma (gamma = {args.gamma:g})", lrp_gamma)]
    utils.save_figure(plot_lrp(lrp_on.display(), titles, columns, network), args.out_dir,
                      f"09_lrp_{lrp_on.track}.png")


# %% The demo, part 2: a Vision Transformer ---------------------------------------------------


def vit_demo(args, demo: utils.Demo) -> tuple[utils.Demo, str]:
    """ViT-B/16 on the photos (the demo's own, or loaded when not --quick), else the digit ViT."""
    if demo.model_name == "vit_b_16":
        return demo, "vit_b_16"
    if demo.track == "imagenet" and not args.quick:
        vit = photo_demo(demo, "vit_b_16")
        if vit is not None:
            return vit, "vit_b_16"
        print("Attention rollout explains the digit ViT instead (data/digit_vit.pt).")
    return digit_demo(demo, load_digit_vit(), QUICK_DIGITS if args.quick else DIGITS), "digit ViT"


def run_vit(args, demo: utils.Demo, target) -> None:
    vit_on, network = vit_demo(args, demo)
    model, x = vit_on.model, vit_on.x
    side = model.image_size // model.patch_size
    with torch.no_grad():
        same_classes = vit_on.categories == demo.categories  # --target names the demo's classes
        classes = utils.resolve_target(model(x), target if same_classes else None)  # (N,)
    maps = attention_maps(model, x)  # per block (N, heads, T, T)
    T = maps[0].shape[-1]
    print(f"\n{network}: {len(maps)} blocks of {maps[0].shape[1]} heads, T = {T} tokens "
          f"(the class token and a {side}x{side} grid of patches)")
    last = maps[-1].mean(1)[:, 0, 1:].reshape(-1, side, side)  # (N, h, w) the class token's row, last block
    rollout_plain = attention_rollout(model, x, "mean", 0.0)  # (N, h, w)
    rollout_tuned = attention_rollout(model, x, args.head_fusion, args.discard_ratio)
    rows = torch.stack([rollout_layer(m, args.head_fusion, args.discard_ratio).sum(-1) for m in maps])
    print(f"  every row of every block's rollout step sums to 1 ({float(rows.min()):.6f} to "
          f"{float(rows.max()):.6f}); the first example's class token draws "
          f"{float(rollout_plain[0].sum()):.3f} "
          "from the patches (mean fusion), the rest from itself")
    cam = token_grad_cam(model, x, classes)  # (N, 1, H, W) from the next-to-last block
    small = token_grad_cam(model, x, classes, upsample=False)
    dead = token_grad_cam(model, x, classes, layer=model.encoder.layers[-1], relu=False, upsample=False)
    print(f"  Grad-CAM on tokens: the next-to-last block's patch tokens on their {small.shape[-2]}x"
          f"{small.shape[-1]} grid, upsampled to {x.shape[-2]}x{x.shape[-1]}. At the LAST block the map "
          f"is {float(dead.abs().max()):.1g} everywhere: only the class token reaches the head from there.")
    images = vit_on.display()
    titles = [f"{n}\nclass '{short(vit_on.class_name(int(c)))}'" for n, c in zip(vit_on.names, classes)]
    columns = [("last block's attention\n(class token, mean of heads)", upsampled(last, x.shape[-2:])),
               ("rollout (mean, no discard)", upsampled(rollout_plain, x.shape[-2:])),
               (f"rollout ({args.head_fusion}, discard {args.discard_ratio:g})",
                upsampled(rollout_tuned, x.shape[-2:])),
               ("Grad-CAM on tokens\n(next-to-last block)",
                utils.scale_for_display(cam[:, 0].cpu().numpy(), 100.0))]
    utils.save_figure(plot_vit(images, titles, columns, network), args.out_dir, f"09_vit_{vit_on.track}.png")


# %% The demo, part 3: beyond images -----------------------------------------------------------


def run_flat_digits(args, demo: utils.Demo) -> None:
    mlp, cnn = load_digit_mlp().to(demo.device), utils.load_mnist_cnn().to(demo.device)
    x, labels, _ = utils.load_digits(3)
    x = x.to(demo.device)
    flat = x.flatten(1)  # (N, 784): the MLP sees a list of numbers, not a picture
    print("\nThe digit MLP (784-128-10, data/digit_mlp.pt) and the digit CNN on the same digits:")
    columns = [("MLP: dS/dx", vanilla.vanilla_gradient(mlp, flat, labels, absolute=False)),  # (N, 784)
               ("MLP: integrated gradients", ig.integrated_gradients(mlp, flat, target=labels, baseline=0.0)),
               ("CNN: dS/dx", vanilla.vanilla_gradient(cnn, x, labels, absolute=False)),  # (N, 1, 28, 28)
               ("CNN: integrated gradients", ig.integrated_gradients(cnn, x, target=labels, baseline=0.0))]
    print("  The MLP's gradient is a mix of its first layer's 784-pixel templates: no pixel knows its "
          "neighbours, so the map is speckled and spreads over empty background where ink could be. "
          "IG multiplies by (x - 0): both networks' IG lives on the ink.")
    images = utils.denormalize(x, (0.0,), (1.0,))
    utils.save_figure(plot_flat_digits(images, [f"digit {label}" for label in labels], columns),
                      args.out_dir, "09_flat_digits.png")


def run_tabular(args) -> None:
    table = wine_table(args.seed)
    if table is None:
        print("\nThe tabular example is skipped: it needs scikit-learn "
              "(pip install -r requirements-dev.txt).")
        return
    models = tabular_models(table, args.seed)
    print(f"\nWine (13 standardised measurements, 3 cultivars), {len(table.x_test)} test wines:")
    for name, model in models.items():
        print(f"  {name}: {accuracy(model, table.x_test, table.y_test):.1%} correct")
    x = table.x_test[:1]  # one wine
    logistic, mlp = models["logistic regression"], models["MLP 13-32-3"]
    c = int(logistic(x).argmax(1))
    w = logistic[0].weight[c].detach()  # (13,) the model's own coefficients for class c
    ig_logistic = ig.integrated_gradients(logistic, x, target=c, baseline=0.0, steps=8)[0]
    print(f"  A linear model from a zero baseline (the average wine): IG = w_c * x exactly, at any "
          f"step count: largest |IG - w_c * x| = {float((ig_logistic - w * x[0]).abs().max()):.1e}")
    ig_mlp = ig.integrated_gradients(mlp, x, target=c, baseline=0.0, steps=64)[0]
    grad_mlp = vanilla.vanilla_gradient(mlp, x, c, absolute=False)[0]
    delta = float(ig.completeness_delta(mlp, x, ig_mlp[None], baseline=0.0, target=c)[0])
    print(f"  The MLP: IG's completeness gap {delta:+.1e}; its gradient is local and ignores "
          "how far x is from 0.")
    panels = [("logistic regression", [("coefficient w_c", w.numpy()),
                                       ("IG = w_c * x", ig_logistic.numpy())]),
              ("MLP 13-32-3", [("gradient dS/dx", grad_mlp.numpy()), ("IG", ig_mlp.numpy())])]
    title = (f"Attributions per feature for one test wine, class '{table.classes[c]}' "
             "(baseline: the average wine)")
    labels = [f"{name} (x = {v:+.1f} sd)" for name, v in zip(table.features, x[0].tolist())]
    utils.save_figure(plot_tabular(labels, panels, title), args.out_dir, "09_tabular.png")


def check_model(args) -> None:
    """An explicit --model that neither LRP nor attention rollout can explain: one line, now.

    Only the architecture is built, on PyTorch's "meta" device (no memory, no weights).
    Without --model, the demo's network may be one LRP refuses: it says so and moves on.
    """
    if args.model is None or args.model == "mnist":
        return
    with torch.device("meta"):
        architecture = utils.IMAGENET_MODELS[args.model][0](weights=None)
    reason = why_lrp_refuses(architecture)
    if reason and not any(isinstance(m, nn.MultiheadAttention) for m in architecture.modules()):
        raise utils.InputError(f"--model {args.model}: LRP cannot explain it ({reason}) and attention "
                               "rollout needs a Vision Transformer: try --model vgg16, vit_b_16 or mnist")


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    parser = utils.make_parser(__doc__, default_model="vgg16")
    parser.add_argument("--epsilon", type=utils.float_in_range(1e-9, 1e6), default=EPSILON,
                        help=f"LRP-eps's stabiliser, in logit units (default {EPSILON})")
    parser.add_argument("--gamma", type=utils.float_in_range(0.0, 1e6), default=GAMMA,
                        help=f"LRP-gamma's weight on positive weights (default {GAMMA})")
    parser.add_argument("--head-fusion", choices=HEAD_FUSIONS, default=HEAD_FUSION,
                        help=f"how attention rollout fuses heads (default {HEAD_FUSION})")
    parser.add_argument("--discard-ratio", type=utils.float_in_range(0.0, 0.99), default=DISCARD_RATIO,
                        help="fraction of each attention matrix rollout drops, smallest first "
                             f"(default {DISCARD_RATIO})")
    args = parser.parse_args(argv)
    check_model(args)
    load_digit_vit(), load_digit_mlp()  # fail now, in one line, if data/ lost their weights
    demo = utils.setup_demo(args, n_images=QUICK_PHOTOS if args.quick else len(PHOTOS),
                            n_digits=QUICK_DIGITS if args.quick else DIGITS, images=PHOTOS)
    target = utils.demo_target(args, demo)
    run_lrp(args, demo, target)
    run_vit(args, demo, target)
    run_flat_digits(args, demo)
    run_tabular(args)


if __name__ == "__main__":
    main()
