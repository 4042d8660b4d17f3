"""Lecture 2, gradient x input: a hand-derived answer, Captum, the contract, the script."""
from __future__ import annotations

import pytest
import torch
from captum.attr import InputXGradient

import demos
import plumbing.weights
import utils
from conftest import lecture, random_resnet18
from helpers import (assert_close, assert_no_side_effects, assert_target_errors,
                     assert_target_forms, linear_model, tiny_cnn)

gxi = lecture("02_gradient_input_saliency")


# %% Lecture 2 ----------------------------------------------------------------------------


def test_linear_model_gives_w_times_x_and_adds_up_to_the_logit():
    model = linear_model(2 * 3 * 4)
    x = torch.randn(2, 2, 3, 4, dtype=torch.float64)
    w, b = model[1].weight.detach(), model[1].bias.detach()
    a = gxi.gradient_x_input(model, x, [0, 2])
    assert torch.allclose(a[0], w[0].view(2, 3, 4) * x[0]) and torch.allclose(a[1], w[2].view(2, 3, 4) * x[1])
    assert torch.allclose(a.flatten(1).sum(1) + b[[0, 2]], model(x)[[0, 1], [0, 2]].detach())


def relu_cnn(bias: bool) -> torch.nn.Module:
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, padding=1, bias=bias), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(6, 3)).double().eval()


def test_without_biases_before_the_last_layer_the_sum_is_exact_by_eulers_theorem():
    """S_c(x) - b_c is positively homogeneous, so sum_i x_i dS_c/dx_i = S_c(x) - S_c(0) exactly."""
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    for bias in (False, True):
        model = relu_cnn(bias)
        total = gxi.gradient_x_input(model, x, 1).flatten(1).sum(1)
        change = (model(x) - model(torch.zeros_like(x)))[:, 1].detach()
        assert gxi.biasless_convolutions(model) == (not bias)
        if bias:
            assert not torch.allclose(total, change, rtol=1e-3)  # biases break it: a first-order estimate
        else:
            torch.testing.assert_close(total, change, rtol=1e-12, atol=1e-12)


def test_linear_check_printed_by_the_script_holds():
    total_plus_bias, logit = gxi.linear_check(torch.rand(3, 1, 28, 28))
    assert torch.allclose(total_plus_bias, logit, atol=1e-5)


def test_a_black_pixel_gets_zero_attribution_whatever_its_gradient():
    model = tiny_cnn()
    x = torch.rand(1, 3, 8, 8)
    x[..., :4] = 0.0  # the left half is black
    grads = lecture("01_vanilla_gradient_saliency").vanilla_gradient(model, x, 0, absolute=False)
    a = gxi.gradient_x_input(model, x, 0)
    assert grads[..., :4].abs().sum() > 0 and torch.all(a[..., :4] == 0)


@pytest.mark.parametrize("target", [None, 3, [1, 4]])
def test_equals_captum_on_a_small_cnn(target):
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    t = model(x).argmax(1) if target is None else target
    ours = gxi.gradient_x_input(model, x, target)
    theirs = InputXGradient(model).attribute(x, target=t)
    assert_close(ours, theirs)


def test_equals_captum_on_resnet18():
    model = random_resnet18()
    x = torch.randn(2, 3, 32, 32)
    ours = gxi.gradient_x_input(model, x, [7, 300])
    theirs = InputXGradient(model).attribute(x, target=[7, 300])
    assert_close(ours, theirs)


def test_target_forms_and_errors():
    assert_target_forms(gxi.gradient_x_input)
    assert_target_errors(gxi.gradient_x_input)


def test_no_side_effects():
    assert_no_side_effects(gxi.gradient_x_input)


def test_main_quick_imagenet(cached_resnet18, tmp_path):
    gxi.main(["--quick", "--out-dir", str(tmp_path)])
    assert (tmp_path / "02_gradient_x_input_imagenet.png").stat().st_size > 10_000


def test_main_quick_mnist(tmp_path, capsys):
    gxi.main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path)])
    assert (tmp_path / "02_gradient_x_input_mnist.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "of the pixels are black" in out and "0.0% of |x * dS/dx|" in out
    # The verdict is measured, not assumed: exact when the digit CNN has no conv biases.
    assert ("Exactly" in out) == gxi.biasless_convolutions(utils.MnistCNN())


def test_share_on_counts_a_pixel_once_over_its_channels():
    grads = torch.tensor([[[[1.0, 3.0]], [[-1.0, 0.0]]]], dtype=torch.float64)  # pixel amounts 2 and 3
    x = torch.tensor([[[[0.0, 1.0]], [[0.0, 2.0]]]], dtype=torch.float64)  # (1, 2, 1, 2): pixel 0 is black
    fraction, grad_share, attribution_share = gxi.share_on(x.abs().amax(1) == 0, grads, x * grads)
    assert fraction.tolist() == [0.5] and grad_share.tolist() == [0.4] and attribution_share.tolist() == [0.0]


@pytest.mark.skipif(not plumbing.weights.lite0_installed(), reason="needs efficientnet-lite0 (requirements-dev.txt)")
def test_on_a_real_network_multiplying_by_x_enlarges_the_dark_pixels_share(tmp_path, capsys):
    """What the script prints on the photo track, as a test: in normalised inputs black is far from 0."""
    args = utils.make_parser(None).parse_args(["--model", "efficientnet_lite0", "--out-dir", str(tmp_path)])
    demo = demos.setup_demo(args, n_images=2)  # the cat and the espresso: both have dark pixels
    grads = lecture("01_vanilla_gradient_saliency").vanilla_gradient(demo.model, demo.x, absolute=False)
    dark = (torch.as_tensor(demo.display()) < gxi.DARK).all(dim=-1)
    fraction, grad_share, attribution_share = gxi.share_on(dark, grads, gxi.gradient_x_input(demo.model, demo.x))
    assert torch.all(fraction > 0.01) and torch.all(attribution_share > 1.3 * grad_share)
