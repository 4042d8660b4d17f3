"""Lecture 7: Guided Grad-CAM is guided backprop times Grad-CAM, and equals Captum's."""
from __future__ import annotations

import pytest
import torch
from captum.attr import GuidedGradCam
from torch import nn

import utils
from conftest import lecture, random_resnet18
from helpers import hooks_left, twins
from test_06_guided_backprop import assert_nothing_left_patched

module = lecture("07_guided_gradcam")
guided_grad_cam = module.guided_grad_cam
grad_cam = lecture("05_gradcam").grad_cam
guided_backprop = lecture("06_guided_backpropagation").guided_backprop


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return random_resnet18()


@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_equals_captum_on_resnet18(resnet, layer):
    x = torch.randn(2, 3, 64, 64)
    theirs = GuidedGradCam(resnet, resnet.get_submodule(layer)).attribute(x, target=[3, 7],
                                                                          interpolate_mode="bilinear")
    ours = guided_grad_cam(resnet, x, [3, 7], layer)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(guided_grad_cam(resnet, x, [3, 7], resnet.get_submodule(layer)), ours)
    assert_nothing_left_patched()


def test_equals_captum_with_the_default_layer_and_the_product_of_its_factors():
    functional, modules = twins()
    x = torch.randn(3, 3, 8, 8)
    ours = guided_grad_cam(functional, x, [0, 2, 4])  # None: the last conv, conv2
    theirs = GuidedGradCam(modules, modules.conv2).attribute(x, target=[0, 2, 4], interpolate_mode="bilinear")
    torch.testing.assert_close(ours, theirs)
    product = guided_backprop(functional, x, [0, 2, 4]) * grad_cam(functional, x, [0, 2, 4])
    torch.testing.assert_close(ours, product)


def test_it_is_zero_where_grad_cam_is_zero():
    functional, _ = twins()
    x = torch.randn(4, 3, 8, 8)
    cam = grad_cam(functional, x, 1)
    product = guided_grad_cam(functional, x, 1)
    assert torch.all(product[(cam == 0).expand_as(product)] == 0)


def test_training_mode_explains_one_class_and_is_not_switched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5),
                          nn.Linear(4 * 6 * 6, 3))
    model.train()
    out = guided_grad_cam(model, torch.randn(2, 3, 8, 8))
    assert model.training and out.shape == (2, 3, 8, 8) and not hooks_left(model)


@pytest.mark.parametrize("bad", [5, -1, [0, 1], "x"])
def test_invalid_targets_and_layers_raise_value_error_leaving_nothing(bad):
    functional, _ = twins()
    x = torch.randn(3, 3, 8, 8)
    before = x.clone()
    with pytest.raises(ValueError):
        guided_grad_cam(functional, x, bad)
    with pytest.raises(ValueError, match="conv1, conv2"):
        guided_grad_cam(functional, x, None, layer="conv9")
    assert torch.equal(x, before) and not hooks_left(functional)
    assert all(p.grad is None for p in functional.parameters())
    assert_nothing_left_patched()


# --- end to end --------------------------------------------------------------------------------


def test_main_quick_on_the_imagenet_track(cached_resnet18, tmp_path, capsys):
    module.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "7x7 map" in out and "raw peak" in out and "Grad-CAM's factor keeps" in out
    assert (tmp_path / "07_guided_gradcam_imagenet.png").stat().st_size > 10_000
    assert_nothing_left_patched()


def test_main_quick_on_the_mnist_track_with_a_layer(tmp_path, capsys):
    module.main(["--quick", "--model", "mnist", "--layer", "features.5", "--out-dir", str(tmp_path)])
    assert "features.5: a 14x14 map" in capsys.readouterr().out
    assert {p.name for p in tmp_path.glob("07_*")} == {"07_guided_gradcam_mnist.png"}


def test_cli_unknown_layer_and_a_vision_transformer(tmp_path, capsys):
    for argv, words in [(["--model", "mnist", "--layer", "features.99"], "features.10"),
                        (["--model", "vit_b_16"], "Vision Transformer"),
                        (["--model", "mnist", "--layer", "classifier"], "not an (N, C, h, w) map")]:
        with pytest.raises(SystemExit) as exit_info:
            module.main([*argv, "--out-dir", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and words in err
    assert not (tmp_path / "out").exists()


def test_the_kept_share_printed_is_measured_and_target_leads_the_figure(monkeypatch, tmp_path, capsys):
    calls = []
    original = module.plot_three_panels
    monkeypatch.setattr(module, "plot_three_panels", lambda *args: calls.append(args) or original(*args))
    module.main(["--quick", "--model", "mnist", "--target", "4", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    (demo, index, classes, GB, L, GGC, _), = calls
    assert index == 0 and classes[0] == 4
    weight = L / L.flatten(1).amax(1).view(-1, 1, 1, 1)
    kept = (GB.abs() * weight).flatten(1).sum(1) / GB.abs().flatten(1).sum(1)
    assert f"'4' {float(kept[0]):.0%}" in out
    assert 0 < float(kept[0]) < 1  # Grad-CAM keeps part of guided backprop, not all of it
    x = demo.x[:1].expand(2, -1, -1, -1)
    torch.testing.assert_close(GGC, guided_grad_cam(demo.model, x, classes, utils.NETWORKS["mnist"].cam_layer))
