"""Part 9 of 9: LRP and DeepLIFT on real networks, DeepSHAP and SHAP's global view, transformers,
and saliency maps that can be manipulated.
Previous: 08_comparative_analysis.py         (the last lecture)

Intuition: hand the class score back layer by layer so that the shares still add up (LRP), or
compare every neuron with its value at a baseline (DeepLIFT); then see how little it takes to
move a map while the prediction stays put.

    LRP-eps    R_j = a_j sum_k w_jk R_k / (z_k + eps sign z_k),  z_k = sum_j a_j w_jk + b_k
               (as a gradient: R = x * g, each layer's backward rescaled by z / (z + eps sign z))
    DeepLIFT   C_i = (x_i - x'_i) m_i; through a ReLU m = (y - y') / (x - x'); sum_i C_i = f(x) - f(x')
    DeepSHAP   mean over baselines x'_b drawn from the data of DeepLIFT(x, x'_b)
    rollout    A~_l = rows_normalised((A_l + I) / 2),  map = (A~_L ... A~_1)[class token, patches]
    top-k attack   max over x_adv in the data, |x_adv - x| <= eps, of how many of |dS/dx|'s top k leave

Papers: Bach et al. 2015, https://doi.org/10.1371/journal.pone.0130140 (LRP); Shrikumar et al.
2017, https://arxiv.org/abs/1704.02685 (DeepLIFT); Lundberg and Lee 2017,
https://arxiv.org/abs/1705.07874 (SHAP); Abnar and Zuidema 2020, https://arxiv.org/abs/2005.00928
(rollout); Ghorbani et al. 2019, https://arxiv.org/abs/1710.10547 (the attack).

Run:          python 09_advanced_techniques.py --model efficientnet_lite0   (offline)
In seconds:   python 09_advanced_techniques.py --quick
Digits:       python 09_advanced_techniques.py --model mnist   (the digit CNN and the digit ViT)
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import demos
import utils
from demos import lecture9 as show
from plumbing import relevance
from plumbing.networks import NETWORKS, load_digit_mlp, load_digit_vit

vanilla = utils.load_lecture("01_vanilla_gradient_saliency")  # dS_c/dx
gxi = utils.load_lecture("02_gradient_input_saliency")  # x * dS_c/dx
smooth = utils.load_lecture("03_smoothgrad")  # SmoothGrad
ig = utils.load_lecture("04_integrated_gradients")  # integrated gradients
cam = utils.load_lecture("05_gradcam")  # Grad-CAM, with a reshape_transform for tokens
shapley = utils.load_lecture("08_comparative_analysis")  # KernelSHAP, exact for M <= 16 features

EPSILON = 0.25  # the LRP-eps panel's stabiliser, in logit units (the method's default, 1e-6, is LRP-0)
GAMMA = 0.25  # Montavon et al. use gamma around 0.25 in lower layers
TINY_EPSILON = 1e-9  # "no epsilon": LRP-0
HEAD_FUSION, DISCARD_RATIO = "max", 0.9  # jacobgil/vit-explain's example settings; the paper: mean, 0
PHOTOS = ["cat_chelsea.png", "coffee.png", "astronaut.png"]
QUICK_PHOTOS, DIGITS, QUICK_DIGITS, ATTACK_DIGITS = 2, 6, 4, 20


# %% Rules as gradients: the whole of LRP and DeepLIFT is a backward pass with chosen steps ------
#
# Every rule below keeps one invariant: the relevance (or contribution) held by a tensor t is
# t * g, with g the gradient that reaches t. Then a layer's rule is only a change to the gradient
# it hands back, and x * dS_c/dx of the changed backward pass is the method's map (Ancona et al.,
# ICLR 2018, https://arxiv.org/abs/1711.06104). Two layers need a word more:
#   BatchNorm  merged into the conv before it: W' = W gamma / sqrt(var + eps), b' = (b - mean) ...
#   residual   out = identity + branch: each summand s gets s * R_out / (out + eps sign out)
# and the gamma rule (Montavon et al. 2019) uses W + gamma W+ in conv and linear layers.

# plumbing/relevance.py runs the network with hooks that check it is a chain of layers these rules
# know (conv, linear, pooling, ReLU, ReLU6, dropout, flatten, a BatchNorm right after a conv, and
# torchvision's and EfficientNet's residual blocks) and let each rule replace a layer's backward.
forward_with_rules, why_lrp_refuses = relevance.forward_with_rules, relevance.why_lrp_refuses
RULES = ("epsilon", "gamma")


class Backward(torch.autograd.Function):
    """Forward: `value`, exactly. Backward: `rule(grad)`, handed to `a`, whose graph leads on."""

    @staticmethod
    def forward(ctx, a, value, rule):  # value comes detached: the layer's own graph is dropped
        ctx.rule = rule
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        return ctx.rule(grad), None, None


# %% LRP: relevance handed back, layer by layer ------------------------------------------


def stabilise(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """z + epsilon * sign(z), with sign(0) = +1, so no denominator is zero."""
    return z + epsilon * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def lrp_rule(rule: str, epsilon: float, gamma: float, trace: list | None):
    """The backward step of each layer under LRP, as `forward_with_rules` asks for it."""

    def rescaled(name, z, value, bias, kind):  # R_in = a * W^T (R_out / (z + eps sign z)), R_out = value * g
        # z / (z + eps sign z); the gamma rule's z' is another sum, so there it is value / (z' + ...)
        m = (z.detach() if rule == "epsilon" else value.detach()) / stabilise(z.detach(), epsilon)  # like z

        def backward(g):
            if trace is not None:
                s, zd = g * m, z.detach()  # s_k = R_k / (z_k + eps sign z_k)
                b = 0 if bias is None else bias.detach().view(1, -1, *[1] * (zd.dim() - 2))
                trace.append({"layer": name, "kind": kind, "out": (value.detach() * g).flatten(1).sum(1),
                              "in": (s * (zd - b)).flatten(1).sum(1), "bias": (s * b).flatten(1).sum(1)
                              if bias is not None else zd.new_zeros(len(zd))})
            return g * m

        return Backward.apply(z, value.detach(), backward)

    def rule_for(kind, module, name, a, out, params):
        if kind == "linear":  # z = a W' + b, W' = W (epsilon) or W + gamma W+ (gamma)
            W, b = params
            if rule == "gamma":
                W = W + gamma * W.clamp(min=0)
            params = {"weight": W} if b is None else {"weight": W, "bias": b}
            z = torch.func.functional_call(module, params, (a,))  # the layer itself, with W' and b
            return rescaled(name, z, out, b, "conv+BatchNorm" if "+" in name else "conv or linear")
        if kind in ("pool", "sum"):  # the epsilon rule with z the output (a sum has no weights)
            return rescaled(name, out, out, None, kind)
        if kind == "activation":  # relevance passes: g_in = g * y / x keeps x * g_in = y * g
            ratio = torch.where(a != 0, out.detach() / a.detach(), 0.0)
            return Backward.apply(a, out.detach(), lambda g: g * ratio)
        return None

    return rule_for


def lrp(model: nn.Module, inputs: torch.Tensor, target=None, rule: str = "epsilon",
        epsilon: float = 1e-6, gamma: float = 0.25, trace: list | None = None) -> torch.Tensor:
    """Layer-wise relevance propagation (Bach et al., 2015) with the epsilon or gamma rule.

    Relevance starts as the target logit f_c(x) and is handed back layer by layer, each conv or
    linear layer (a BatchNorm right after a conv merged into it) sharing it in proportion to the
    contributions a_j w_jk; pooling and residual sums by the epsilon rule; ReLU, ReLU6 and dropout
    pass it on. rule "gamma": W + gamma W+ in conv and linear layers. trace: a list to which each
    layer appends its relevance sums (what it receives, hands on, and what its bias takes).
    Raises ValueError naming the first layer it cannot handle. Returns R shaped like `inputs`.

        R = lrp(model, x, target=281, rule="gamma")   # (N, C, H, W); R.sum() ~ f_c(x)
    """
    if rule not in RULES:
        raise utils.InputError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if not (epsilon > 0 and gamma >= 0):
        raise utils.InputError(f"epsilon must be > 0 and gamma >= 0, got {epsilon} and {gamma}")
    x = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = forward_with_rules(model, x, lrp_rule(rule, epsilon, gamma, trace))  # (N, K)
        scores, _ = utils.target_scores(logits, target)  # (N,) f_c(x): R starts as f_c at class c
        (g,) = torch.autograd.grad(scores.sum(), x)  # (N, ...) like x
    return (x * g).detach().to(inputs.dtype)  # R = x * g, the invariant at the input


# %% DeepLIFT and DeepSHAP: differences from a baseline ------------------------------------------
#   m = (y - y') / (x - x') through each activation (the gradient where x = x'), the max-pool rule
#   below through max pooling, the plain gradient through linear layers: C = (x - x') * m


def maxpool_multiplier(module, a, a0, y, y0):
    """DeepLIFT's backward step through max pooling (Captum's rule): the pool's output difference
    y - y' is handed to the winners at x and at x', split at max(y, y'), then divided by a - a'."""
    args = (module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode, True)
    win, win0 = F.max_pool2d(a, *args)[1].flatten(2), F.max_pool2d(a0, *args)[1].flatten(2)  # (N, C, hw)
    top, delta = torch.maximum(y, y0), (a - a0).detach()

    def backward(g):  # g: (N, C, h, w) at the output
        def to_winners(values, where):  # the unpooling, summed where windows overlap
            return torch.zeros_like(a).flatten(2).scatter_add(2, where, values.flatten(2)).view_as(a)
        moved = to_winners(g * (top - y0), win) + to_winners(g * (y - top), win0)  # (N, C, H, W)
        return torch.where(delta.abs() < 1e-10, to_winners(g, win), moved / delta)

    return backward


def deeplift_rule(at_baseline: list, record: bool):
    """Record each activation's and max pool's (input, output) at the baseline, or use them."""
    calls = iter(at_baseline)

    def rule_for(kind, module, name, a, out, params):
        if kind != "activation" and not isinstance(module, nn.MaxPool2d):
            return None  # linear layers, BatchNorm, sums: the gradient is the exact multiplier
        if record:
            return at_baseline.append((a.detach().clone(), out.detach().clone()))
        a0, y0 = next(calls)
        if isinstance(module, nn.MaxPool2d):
            return Backward.apply(a, out.detach(), maxpool_multiplier(module, a, a0, out, y0))
        dx, dy = (a - a0).detach(), (out - y0).detach()
        slope = ((a > 0) & ((a < 6) if isinstance(module, nn.ReLU6) else True)).to(a.dtype).detach()
        m = torch.where(dx.abs() < 1e-10, slope, dy / dx)  # the rescale rule, the gradient at x = x'
        return Backward.apply(a, out.detach(), lambda g: g * m)

    return rule_for


def deeplift(model: nn.Module, inputs: torch.Tensor, target=None, baseline=None) -> torch.Tensor:
    """DeepLIFT with the rescale rule (Shrikumar et al., 2017), for the networks `lrp` handles.

    Each neuron's difference from its value at the baseline x' is shared back in proportion to
    the input differences, so per example sum C = f_c(x) - f_c(x'). baseline: None (zeros), a
    number, or a tensor broadcastable to `inputs`. Returns C shaped like `inputs`.

        C = deeplift(model, x, target=3)   # C.flatten(1).sum(1) == f_3(x) - f_3(0)
    """
    x = inputs.detach().clone()
    x_baseline = utils.as_baseline(baseline, x)  # (N, ...)
    at_baseline: list = []
    with torch.no_grad():
        forward_with_rules(model, x_baseline, deeplift_rule(at_baseline, record=True))
    x.requires_grad_(True)
    with torch.enable_grad():
        logits = forward_with_rules(model, x, deeplift_rule(at_baseline, record=False))  # (N, K)
        scores, _ = utils.target_scores(logits, target)  # (N,) f_c(x)
        (m,) = torch.autograd.grad(scores.sum(), x)  # (N, ...) the multipliers
    return ((x - x_baseline) * m).detach().to(inputs.dtype)


def deep_shap(model: nn.Module, inputs: torch.Tensor, baselines: torch.Tensor, target=None) -> torch.Tensor:
    """DeepSHAP (Lundberg and Lee, 2017): DeepLIFT averaged over B baselines `(B, C, H, W)` drawn
    from the data, so that per example sum C = f_c(x) - mean_b f_c(x'_b).

        C = deep_shap(model, x, baselines=background)   # (N, C, H, W)
    """
    x = inputs.detach()
    with torch.no_grad():
        classes = utils.resolve_target(model(x), target)  # (N,) fixed at x, for every baseline
    n, b = len(x), len(baselines)
    pairs = x.repeat_interleave(b, dim=0)  # (N * B, ...): example i with baseline j at row i * B + j
    tiled = baselines.to(x).repeat(n, *[1] * (x.dim() - 1))  # (N * B, ...) baseline j at row i * B + j
    contributions = deeplift(model, pairs, classes.repeat_interleave(b), tiled)
    return contributions.view(n, b, *x.shape[1:]).mean(1)  # (N, ...)


# %% SHAP's global view: mean |phi_j| over a data set ---------------------------------------------


def shap_importance(model: nn.Module, data: torch.Tensor, target=None, baseline=0.0) -> torch.Tensor:
    """I_j = mean over the rows of |phi_j(x)|, phi lecture 8's Shapley values of each column of
    `data` (N, M) (exact by enumeration for M <= 16). Returns (M,)."""
    mask = torch.arange(data.shape[1]).expand_as(data)  # feature j = column j
    phi = shapley.kernel_shap(model, data, target, feature_mask=mask, baseline=baseline)  # (N, M)
    return phi.abs().mean(0)


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
    # Rows, not columns: jacobgil/vit-explain divides by a.sum(dim=-1) without keepdim, which
    # broadcasts over columns; the paper's rollout mixes rows (what each token reads).
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




def patch_grid(model: nn.Module):
    """Lecture 5's `reshape_transform` for a torchvision ViT block: drop the class token and lay
    the patch tokens (N, 1 + h*w, D) back on their grid (N, D, h, w), as pytorch-grad-cam does."""
    check_vit(model)
    side = model.image_size // model.patch_size
    return lambda tokens: tokens[:, 1:].reshape(len(tokens), side, side, -1).permute(0, 3, 1, 2)


# %% Saliency maps can be manipulated: the top-k attack --------------------------------------------
#   find x_adv, |x_adv - x| <= eps per element, same predicted class, whose map |dS_c/dx| puts as
#   little as possible on the k pixels that were its top k at x (Ghorbani et al., 2019). x_adv stays
#   in the data: an image the network could be shown, every value inside its valid input range.
#   Second derivatives through ReLUs are 0: softplus(beta x) / beta stands in for them during the
#   attack only (Dombrowski et al., NeurIPS 2019, https://arxiv.org/abs/1906.07983). Where the
#   class leads the runner-up by little, each step also widens that lead, or it would lose the class.

ATTACK_CHUNK = 2 ** 16  # input values per chunk of second derivatives: one photo (150,528) or 83 digits


def pixel_map(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, create_graph: bool = False):
    """|dS_c/dx| as one value per pixel (max over channels): (N, H * W)."""
    with torch.enable_grad():
        return pixel_map_of(model(x), x, classes, create_graph)


def pixel_map_of(logits: torch.Tensor, x: torch.Tensor, classes: torch.Tensor, create_graph: bool = False):
    """pixel_map from logits = model(x) already computed (x requires grad)."""
    scores, _ = utils.target_scores(logits, classes)
    (grads,) = torch.autograd.grad(scores.sum(), x, create_graph=create_graph)  # (N, C, H, W)
    return grads.abs().amax(1).flatten(1)


def top_k_overlap(map_a: torch.Tensor, map_b: torch.Tensor, k: int) -> torch.Tensor:
    """(N,): the share of map_a's k highest pixels that are among map_b's k highest."""
    reduce = lambda m: (m.abs().amax(1) if m.dim() == 4 else m).flatten(1)  # noqa: E731
    top_a, top_b = reduce(map_a).topk(k, dim=1).indices, reduce(map_b).topk(k, dim=1).indices
    hits = torch.zeros_like(reduce(map_a), dtype=torch.bool).scatter(1, top_a, True).gather(1, top_b)
    return hits.float().mean(1)


def valid_range(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high), each (1, C, 1, 1): the values this network's inputs can take, the image of [0, 1]
    pixels under its preprocessing, read from its row in plumbing/networks.py (the row whose weights
    it holds, for C channels): digits [0, 1]; EfficientNet-Lite0 [-1, 1]; torchvision's networks
    (0 - mean) / std to (1 - mean) / std. A network the table does not know: no bound but epsilon's."""
    keys, channels = model.state_dict().keys(), x.shape[1] if x.dim() == 4 else 0
    row = next((r for r in NETWORKS.values() if r.state_key in keys and r.channels == channels), None)
    if row is None:
        low, high = torch.full((channels or 1,), -math.inf), torch.full((channels or 1,), math.inf)
    elif row.track == "mnist":
        low, high = torch.zeros(channels), torch.ones(channels)
    else:
        preprocess = row.weights().transforms()  # what makes its inputs: x = (pixel - mean) / std
        mean, std = torch.tensor(preprocess.mean), torch.tensor(preprocess.std)
        low, high = (0 - mean) / std, (1 - mean) / std
    shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
    return low.view(shape).to(x), high.view(shape).to(x)


def into_box(v: torch.Tensor, x: torch.Tensor, epsilon: float, low: torch.Tensor, high: torch.Tensor):
    """v clipped into the data (low <= v <= high), then to |v - x| <= epsilon (which wins if x is not)."""
    return torch.clamp(torch.clamp(v, low, high), x - epsilon, x + epsilon)


class GroupedConv(torch.autograd.Function):
    """A grouped convolution (groups > 1: EfficientNet's depthwise convs) whose backward is one
    conv_transpose2d, which autograd differentiates again in one call. PyTorch's own second derivative
    of a grouped convolution runs one small convolution per group: thousands per step on
    EfficientNet-Lite0, minutes per photo. Only the input gets a gradient (the attack's need)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(weight)
        ctx.size, ctx.settings = x.shape[-2:], (stride, padding, dilation, groups)
        return torch.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, g):
        (weight,) = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.settings
        extra = [ctx.size[d] - ((g.shape[2 + d] - 1) * stride[d] - 2 * padding[d]  # rows a stride drops
                                + dilation[d] * (weight.shape[2 + d] - 1) + 1) for d in (0, 1)]
        grad_x = F.conv_transpose2d(g, weight, None, stride, padding, extra, groups, dilation)  # like x
        return grad_x, None, None, None, None, None, None


@contextlib.contextmanager
def grouped_convs_as_one_transpose():
    """F.conv2d with groups > 1 goes through GroupedConv inside the block; restored on exit."""
    original = F.conv2d

    def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        if groups == 1 or isinstance(padding, str):
            return original(x, weight, bias, stride, padding, dilation, groups)
        pair = torch.nn.modules.utils._pair
        return GroupedConv.apply(x, weight, bias, pair(stride), pair(padding), pair(dilation), groups)

    F.conv2d = conv2d  # modules call F.conv2d at run time (nn.Conv2d and EfficientNet's own convs)
    try:
        yield
    finally:
        F.conv2d = original


GUARD_MARGIN = 1.0  # logits: below this lead of the class over the runner-up, a step also guards the class


def attack_steps(model, x, start, classes, k, epsilon, steps, beta, low, high) -> torch.Tensor:
    """The attack on one chunk of the batch: signed steps of epsilon / 4 on the map's share on the top k,
    and, where the class leads the runner-up by less than GUARD_MARGIN, on that lead as well."""
    top = torch.zeros_like(x[:, 0].flatten(1), dtype=torch.bool)  # (n, H * W)
    top.scatter_(1, pixel_map(model, x.clone().requires_grad_(True), classes).topk(k, dim=1).indices, True)
    best, best_overlap = x.clone(), torch.ones(len(x), device=x.device)
    size = torch.full((len(x), *[1] * (x.dim() - 1)), epsilon / 4, device=x.device, dtype=x.dtype)  # (n, 1, ...)
    x_adv = start
    for _ in range(steps):
        with torch.no_grad():  # near a tie between two classes (Grace Hopper: 'military uniform' 0.26,
            # 'academic gown' 0.21) almost every step on the share alone loses the class
            thin = (lead(model(x_adv), classes) < GUARD_MARGIN).view(size.shape)  # judged by the true network
        x_adv = x_adv.detach().requires_grad_(True)
        with relevance.softplus_relus(model, beta), grouped_convs_as_one_transpose(), torch.enable_grad():
            logits = model(x_adv)  # (n, classes): the lead below needs them too
            saliency = pixel_map_of(logits, x_adv, classes, create_graph=True)  # (n, H * W), differentiable
            share = (saliency * top).sum(1) / saliency.sum(1)  # the map's mass on the old top k
            (away,) = torch.autograd.grad(share.sum(), x_adv, retain_graph=True)  # a second derivative
            (keep,) = torch.autograd.grad(lead(logits, classes).sum(), x_adv)
        # Where the lead is thin, the step lowers the share and raises the lead with equal weight.
        step = unit(away) - thin * unit(keep)
        x_adv = into_box(x_adv.detach() - size * step.sign(), x, epsilon, low, high)
        with torch.no_grad():
            kept = model(x_adv).argmax(1) == classes  # (n,) judged by the true network
        # A step that still loses the class is undone, and that example's steps halve.
        lost = ~kept.view(size.shape)
        x_adv, size = torch.where(lost, best, x_adv), torch.where(lost, size / 2, size)
        now = pixel_map(model, x_adv.clone().requires_grad_(True), classes).topk(k, dim=1).indices  # (n, k)
        overlap = top.gather(1, now).float().mean(1)  # (n,) of the top k now, the share that was top k at x
        better = kept & (overlap < best_overlap)
        best[better], best_overlap[better] = x_adv[better], overlap[better]
    return best


def lead(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(N,): each example's logit of its class minus the largest other logit."""
    scores, _ = utils.target_scores(logits, classes)
    return scores - logits.scatter(1, classes[:, None], -math.inf).amax(1)


def unit(g: torch.Tensor) -> torch.Tensor:
    """Each example's gradient scaled to length 1 (a zero gradient stays zero)."""
    norms = g.flatten(1).norm(dim=1).view(-1, *[1] * (g.dim() - 1))
    return g / norms.clamp_min(torch.finfo(g.dtype).tiny)


def saliency_attack(model: nn.Module, inputs: torch.Tensor, target=None, k: int = 100, epsilon: float = 0.1,
                    steps: int = 50, beta: float = 10.0, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """Ghorbani et al.'s top-k attack on the vanilla gradient map, returning x_adv like `inputs`.

    Each step lowers the share of the (softplus) map on the top k pixels of |dS_c/dx| at x by a
    signed gradient step of epsilon / 4 (from a random start in the box when `generator` is given;
    where the class leads the runner-up by less than GUARD_MARGIN logits, the step raises that lead
    too), then clips back into the network's valid input range and |x_adv - x| <= epsilon. Of the steps
    that keep every class, the one whose true map overlaps least with the top k at x is returned;
    steps=0 returns a copy of x. Second derivatives are taken a chunk of the batch at a time.

        x_adv = saliency_attack(cnn, digits, k=78, epsilon=0.1)
    """
    x = inputs.detach().clone()
    with torch.no_grad():
        classes = utils.resolve_target(model(x), target)  # (N,) the labels to keep
    if steps == 0:
        return x
    k = utils.check_count(k, "k")
    low, high = valid_range(model, x)  # (1, C, 1, 1) each
    start = x.clone()
    if generator is not None:  # a random start inside the box, drawn for the whole batch at once
        start += torch.empty(x.shape, dtype=x.dtype).uniform_(-epsilon, epsilon, generator=generator).to(x.device)
    start = into_box(start, x, epsilon, low, high)
    n = max(1, ATTACK_CHUNK // x[0].numel())  # examples per chunk: one photo, or all 20 digits
    chunks = [attack_steps(model, x[i: i + n], start[i: i + n], classes[i: i + n], k, epsilon, steps, beta,
                           low, high) for i in range(0, len(x), n)]
    return torch.cat(chunks).to(inputs.dtype)


# %% The demo, part 1: LRP on the network, and what its rules do to conservation -------------------


def run_lrp(args, on: demos.Demo, target) -> torch.Tensor:
    model, x = on.model, on.x
    with torch.no_grad():
        classes = utils.resolve_target(model(x), target if on is not None else None)  # (N,)
    maps = {"gradient x input (lecture 2)": gxi.gradient_x_input(model, x, classes),
            f"LRP-0 (eps = {TINY_EPSILON:g})": lrp(model, x, classes, epsilon=TINY_EPSILON),
            f"LRP-eps (eps = {args.epsilon:g})": lrp(model, x, classes, epsilon=args.epsilon),
            f"LRP-gamma (gamma = {args.gamma:g})":  # with eps = --epsilon too: many small z' when deep
                lrp(model, x, classes, rule="gamma", epsilon=args.epsilon, gamma=args.gamma)}
    trace: list = []
    R = lrp(model, x[:1], classes[:1], epsilon=args.epsilon, trace=trace)
    with torch.no_grad():
        logit = float(model(x[:1])[0, classes[0]])
    show.print_conservation(on.model_name, trace, float(R.sum()), logit, args.epsilon)
    bare = show.without_shifts(model)  # biases and BatchNorm shifts set to 0, in a copy
    R0 = lrp(bare, x[:1].double(), classes[:1], epsilon=1e-12)
    with torch.no_grad():
        logit0 = float(bare(x[:1].double())[0, classes[0]])
    print(f"  The same network with every bias and BatchNorm shift set to 0 (float64, eps = 1e-12): sum of R "
          f"= {float(R0.sum()):.9f}, f_c(x) = {logit0:.9f}: "
          f"{show.verdict(float(R0.sum()), logit0, 'conserved')}")
    titles = [f"{n}\nclass '{utils.shorten(on.class_name(int(c)))}'" for n, c in zip(on.names, classes)]
    figure = show.plot_maps(on.display(), titles, maps, f"LRP and gradient x input, {on.model_name}")
    utils.save_figure(figure, args.out_dir, f"09_lrp_{on.track}.png")
    return classes


# %% The demo, part 2: DeepLIFT and DeepSHAP beside gradient x input, IG and LRP -------------------


PER_PASS = 8  # images in one forward and backward pass: memory, not results (64 path points of two photos
#               at once held 10 GB of EfficientNet-Lite0's activations)


def run_deeplift(args, on: demos.Demo, classes: torch.Tensor | None = None) -> None:
    model, x = on.model, on.x
    with torch.no_grad():
        classes = utils.resolve_target(model(x), classes)  # (N,) the prediction when None
    # DeepSHAP's background: three plain images (the batch's darkest value, the midpoint, its brightest).
    # Other photos as background would imprint their own edges on every map, through x - x'.
    low, high = float(x.min()), float(x.max())
    baselines = torch.stack([torch.full_like(x[0], v) for v in (low, (low + high) / 2, high)])  # (3, C, H, W)
    maps = {"gradient x input": gxi.gradient_x_input(model, x, classes),  # IG: no node at 0 (lecture 4)
            "IG (zero)": ig.integrated_gradients(model, x, classes, 0.0, 64, "riemann_middle",
                                                 batch_size=PER_PASS),
            "DeepLIFT (zero)": deeplift(model, x, classes),
            f"DeepSHAP ({len(baselines)} plain)": deep_shap(model, x, baselines, classes),
            "LRP-0": lrp(model, x, classes, epsilon=TINY_EPSILON),
            f"LRP-eps (eps = {args.epsilon:g})": lrp(model, x, classes, epsilon=args.epsilon)}
    with torch.no_grad():
        f_x, f_0 = (model(v).gather(1, classes[:, None])[:, 0] for v in (x, torch.zeros_like(x)))
    gap = float((maps["DeepLIFT (zero)"].flatten(1).sum(1) - (f_x - f_0)).abs().max())
    print(f"\nDeepLIFT on {on.model_name}: sum C - (f_c(x) - f_c(0)) is at most {gap:.1e} over the batch "
          "(completeness)")
    print(f"  DeepSHAP explains x against {len(baselines)} plain images (values {low:.2g}, {(low + high) / 2:.2g}, "
          f"{high:.2g}): wherever x differs from them, even on a plain background, x - x' is not 0, so "
          "relevance can land there; against the zero image alone it is DeepLIFT's map.")
    show.print_relations(model, x, maps)
    titles = [f"{n}\nclass '{utils.shorten(on.class_name(int(c)))}'" for n, c in zip(on.names, classes)]
    figure = show.plot_maps(on.display(), titles, maps, f"DeepLIFT beside its relatives, {on.model_name}")
    utils.save_figure(figure, args.out_dir, f"09_deeplift_{on.track}.png")


# %% The demo, part 3: a map moved while the class stays ---------------------------------------------

ATTACK_STEPS, QUICK_ATTACK_STEPS = 50, 8  # digits; each step is a second derivative of the network
PHOTO_ATTACK_STEPS = 8  # EfficientNet-Lite0 at 224 x 224: steps of epsilon / 4 reach the box's corners in 4
ATTACK_STARTS, PHOTO_STARTS = 3, 2  # random starts in the box (each a whole attack)
ATTACK_BETA = 10.0  # softplus sharpness during the attack: Dombrowski et al. use beta around 10
ATTACK_SHARE = 0.10  # k = 10% of the pixels, the top-k set the attack pushes out
EPSILON_DIGITS, EPSILON_PHOTOS = 0.1, 2 * 8 / 255  # the photos' inputs span [-1, 1]: 8/255 of a [0, 1] image


def run_attack(args, on: demos.Demo, epsilon: float) -> None:
    model, x = on.model, on.x
    k = round(ATTACK_SHARE * x.shape[-2] * x.shape[-1])
    photos = on.track == "imagenet"
    steps = PHOTO_ATTACK_STEPS if photos else QUICK_ATTACK_STEPS if args.quick else ATTACK_STEPS
    low, high = valid_range(model, x)
    with torch.no_grad():
        classes = model(x).argmax(1)
    at_x = vanilla.vanilla_gradient(model, x, classes)
    runs = []  # per random start: x_adv and the random-sign image with the same seed
    for start in range(PHOTO_STARTS if photos else ATTACK_STARTS):
        seed = args.seed + start
        x_adv = saliency_attack(model, x, k=k, epsilon=epsilon, steps=steps, beta=ATTACK_BETA,
                                generator=torch.Generator().manual_seed(seed))
        signs = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 1000)).sign().to(x)
        x_random = into_box(x + epsilon * signs, x, epsilon, low, high)  # the same size, random directions
        runs.append((x_adv, x_random))
    overlaps = [[top_k_overlap(at_x, vanilla.vanilla_gradient(model, v, classes), k) for v in run] for run in runs]
    samples = 16 if args.quick else 32  # the other methods, on the first start only
    methods = {"SmoothGrad": lambda v: smooth.smoothgrad(model, v, classes, n_samples=samples, batch_size=PER_PASS,
                                                         generator=torch.Generator().manual_seed(args.seed)),
               "IG": lambda v: ig.integrated_gradients(model, v, classes, steps=16 if args.quick else 32,
                                                       batch_size=PER_PASS)}
    others = {}
    for name, method in methods.items():
        m_x = method(x)
        others[name] = [float(top_k_overlap(m_x, method(v), k).mean()) for v in runs[0]]
    show.print_attack(on, model, x, runs, (low, high), epsilon, k, steps, overlaps, others)
    x_adv = runs[0][0]
    maps = [at_x, vanilla.vanilla_gradient(model, x_adv, classes)]
    attack, random = (float(torch.stack([o[i] for o in overlaps]).mean()) for i in (0, 1))
    summary = (f"x_adv kept in [{float(low.min()):g}, {float(high.max()):g}]; mean top-k overlap over {len(x)} inputs "
               f"x {len(runs)} starts: {attack:.2f} (random signs {random:.2f}, chance {k / x[0, 0].numel():.2f})")
    utils.save_figure(show.plot_attack(on, model, x, x_adv, maps, epsilon, k, summary), args.out_dir,
                      f"09_attack_{on.track}.png")


# %% The demo, part 4: a Vision Transformer -------------------------------------------------------


def run_vit(args, demo: demos.Demo, target) -> None:
    on = show.vit_demo(args, demo, PHOTOS, QUICK_DIGITS if args.quick else DIGITS)
    model, x = on.model, on.x
    side = model.image_size // model.patch_size
    with torch.no_grad():
        classes = utils.resolve_target(model(x), target if on.categories == demo.categories else None)
    maps = attention_maps(model, x)  # per block (N, heads, T, T)
    print(f"\n{on.model_name}: {len(maps)} blocks of {maps[0].shape[1]} heads, T = {maps[0].shape[-1]} "
          f"tokens (the class token and a {side}x{side} grid of patches)")
    plain = attention_rollout(model, x, "mean", 0.0)  # (N, h, w): the paper's setting
    tuned = attention_rollout(model, x, args.head_fusion, args.discard_ratio)
    rows = torch.stack([rollout_layer(m, args.head_fusion, args.discard_ratio).sum(-1) for m in maps])
    print(f"  every row of every rollout step sums to 1 ({float(rows.min()):.6f} to {float(rows.max()):.6f}); the"
          f" first example's class token draws {float(plain[0].sum()):.3f} from the patches (mean fusion)")
    grid = patch_grid(model)
    grad_cam = cam.grad_cam(model, x, classes, layer=model.encoder.layers[-2], reshape_transform=grid)
    dead = cam.grad_cam(model, x, classes, layer=model.encoder.layers[-1], relu=False, upsample=False,
                        reshape_transform=grid)
    print(f"  Grad-CAM (lecture 5's, with a reshape_transform) on the next-to-last block's {side}x{side} "
          f"tokens; at the LAST block the map is {float(dead.abs().max()):.1g} everywhere: only the class token "
          "reaches the head from there.")
    last = maps[-1].mean(1)[:, 0, 1:].reshape(-1, side, side)  # (N, h, w) the class token's row
    titles = [f"{n}\nclass '{utils.shorten(on.class_name(int(c)))}'" for n, c in zip(on.names, classes)]
    columns = [("last block:\nclass token", last),  # its attention row, mean of the heads
               ("rollout\n(mean)", plain),
               (f"rollout\n({args.head_fusion}, {args.discard_ratio:g})", tuned),  # fusion, discard ratio
               ("Grad-CAM\non tokens", grad_cam[:, 0])]  # the next-to-last block's tokens
    utils.save_figure(show.plot_vit(on.display(), titles, columns, on.model_name), args.out_dir,
                      f"09_vit_{on.track}.png")


# %% The demo, part 5: beyond images --------------------------------------------------------------


def run_tabular(args) -> None:
    table = show.wine_table(args.seed)
    if table is None:
        print("\nThe tabular example is skipped: it needs scikit-learn (pip install -r requirements.txt).")
        return
    models = show.tabular_models(table, args.seed)
    mlp = models["MLP 13-32-3"]
    scores = ", ".join(f"{n} {show.accuracy(m, table.x_test, table.y_test):.1%}" for n, m in models.items())
    print(f"\nWine (13 standardised measurements, 3 cultivars), {len(table.x_test)} test wines correct: {scores}")
    show.run_one_wine(models, table, ig, vanilla, args.out_dir)
    x, y = show.all_wines(table)
    shap = shap_importance(mlp, x, y).numpy()  # (13,) mean |phi_j|, exact
    permutation, spread = show.permutation_importance(mlp, table, args.seed)  # (13,) accuracy lost
    show.print_global(mlp, table, shap, permutation)
    utils.save_figure(show.plot_global(table.features, shap, permutation, spread), args.out_dir,
                      "09_shap_global.png")


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    parser = utils.make_parser(__doc__, default_model="efficientnet_lite0")
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
    load_digit_vit(), load_digit_mlp()  # fail now, in one line, if data/ lost their weights
    demo = demos.setup_demo(args, n_images=QUICK_PHOTOS if args.quick else len(PHOTOS),
                            n_digits=QUICK_DIGITS if args.quick else DIGITS, images=PHOTOS)
    target = demos.demo_target(args, demo)
    on = show.lrp_demo(demo, why_lrp_refuses(demo.model), QUICK_DIGITS if args.quick else DIGITS)
    classes = run_lrp(args, on, target if on is demo else None)
    run_deeplift(args, on, classes)
    digits = show.digit_demo(demo, utils.load_mnist_cnn(), ATTACK_DIGITS)
    if on.track == "imagenet":
        run_deeplift(args, show.digit_demo(demo, utils.load_mnist_cnn(), QUICK_DIGITS))
        run_attack(args, show.first(on, QUICK_PHOTOS), EPSILON_PHOTOS)
    run_attack(args, digits, EPSILON_DIGITS)
    run_vit(args, demo, target)
    show.run_flat_digits(args, load_digit_mlp(), utils.load_mnist_cnn(), vanilla, ig)
    run_tabular(args)


if __name__ == "__main__":
    main()
