"""Lecture 1: the vanilla gradient, by hand, against Captum, and end to end."""
from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency
from torch import nn

import demos.common
import plumbing.cli
import plumbing.weights
import utils
from conftest import lecture, random_resnet18

vanilla_gradient = lecture("01_vanilla_gradient_saliency").vanilla_gradient


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 5),
    ).eval()


# --- hand-derived answers -----------------------------------------------------------------


def test_a_linear_models_gradient_is_its_weight_row():
    torch.manual_seed(0)
    linear = nn.Linear(6, 3)
    x = torch.randn(4, 6)
    classes = [0, 2, 1, 2]
    grads = vanilla_gradient(linear, x, classes, absolute=False)
    assert torch.equal(grads, linear.weight.detach()[classes])
    assert torch.equal(vanilla_gradient(linear, x, classes), linear.weight.detach()[classes].abs())


def test_the_gradient_of_a_quadratic_score():
    class Quadratic(nn.Module):  # S_0 = sum(x^2), S_1 = -sum(x): dS_0/dx = 2x
        def forward(self, x):
            return torch.stack([(x ** 2).flatten(1).sum(1), -x.flatten(1).sum(1)], dim=1)

    x = torch.tensor([[[1.0, -2.0], [0.5, 3.0]]])
    assert torch.allclose(vanilla_gradient(Quadratic(), x, 0, absolute=False), 2 * x)
    assert torch.allclose(vanilla_gradient(Quadratic(), x, 1, absolute=False), -torch.ones_like(x))


# --- the trusted reference ------------------------------------------------------------------


@pytest.mark.parametrize("absolute", [True, False])
@pytest.mark.parametrize("make_model, shape", [(small_cnn, (3, 3, 8, 8)), (random_resnet18, (2, 3, 32, 32))])
def test_equals_captum_saliency(make_model, shape, absolute):
    model = make_model()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    for target in (None, 3, list(range(shape[0]))):
        with torch.no_grad():
            t = utils.resolve_target(model(x), target)
        expected = Saliency(model).attribute(x, target=t, abs=absolute)
        torch.testing.assert_close(vanilla_gradient(model, x, target, absolute), expected, rtol=1e-5, atol=1e-7)


def test_float64_inputs_give_float64_maps():
    model = small_cnn().double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    out = vanilla_gradient(model, x)
    assert out.dtype == torch.float64 and out.device == x.device


# --- the contract: targets and no side effects ---------------------------------------------------


@pytest.mark.parametrize("bad, words", [(5, "0 to 4"), (-1, "0 to 4"), ([0, 1, 2], "exactly 2")])
def test_invalid_targets_raise_value_error(bad, words):
    with pytest.raises(ValueError, match=words):
        vanilla_gradient(small_cnn(), torch.randn(2, 3, 8, 8), bad)


def _hooks(model):
    return [m for m in model.modules() for d in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks) if d]


@pytest.mark.parametrize("bad_target", [None, 99])
def test_no_side_effects_also_after_an_error(bad_target):
    model = small_cnn().train()  # a model in training mode is used as it is, never switched
    model[-1].weight.grad = torch.ones_like(model[-1].weight)  # the caller's own gradient
    x = torch.randn(2, 3, 8, 8).requires_grad_(True)
    before = x.detach().clone()
    try:
        vanilla_gradient(model, x, bad_target)
    except ValueError:
        assert bad_target == 99
    assert torch.equal(x.detach(), before) and x.requires_grad and x.grad is None
    assert model.training and not _hooks(model)
    assert torch.equal(model[-1].weight.grad, torch.ones_like(model[-1].weight))
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith("7."))


def test_works_under_the_callers_no_grad():
    model = small_cnn()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        inside = vanilla_gradient(model, x)
    assert not inside.requires_grad and torch.equal(inside, vanilla_gradient(model, x))


# --- end to end --------------------------------------------------------------------------------


def test_main_quick_on_the_imagenet_track(cached_resnet18, tmp_path, capsys):
    lecture("01_vanilla_gradient_saliency").main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert (tmp_path / "01_vanilla_gradient_imagenet.png").stat().st_size > 10_000
    assert "Top-5 predictions" in out and "Sanity check" in out


def test_main_quick_on_the_mnist_track(tmp_path, capsys):
    lecture("01_vanilla_gradient_saliency").main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path)])
    assert (tmp_path / "01_vanilla_gradient_mnist.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "Top-5 predictions, digit CNN" in out  # the network's one name, not the flag's value


@pytest.mark.skipif(not plumbing.weights.lite0_installed(), reason="needs efficientnet-lite0 (requirements-dev.txt)")
def test_on_a_real_network_the_gradient_predicts_a_small_steps_effect(tmp_path, capsys):
    """EfficientNet-Lite0, pretrained: a step of 0.01 along dS/dx changes S as the gradient says."""
    module = lecture("01_vanilla_gradient_saliency")
    args = utils.make_parser(None).parse_args(["--model", "efficientnet_lite0", "--out-dir", str(tmp_path)])
    demo = demos.setup_demo(args, n_images=2)
    grads = module.vanilla_gradient(demo.model, demo.x, None, absolute=False)
    classes = utils.resolve_target(demo.model(demo.x), None)
    predicted, actual = module.taylor_check(demo.model, demo.x, grads, classes)
    assert torch.all((actual - predicted).abs() < 0.1 * predicted)


def test_main_offline_says_so_and_runs_on_digits(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demos.common, "lite0_installed", lambda: False)  # else offline picks efficientnet_lite0
    lecture("01_vanilla_gradient_saliency").main(["--quick", "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert "MNIST track" in err and "Traceback" not in err
    assert (tmp_path / "01_vanilla_gradient_mnist.png").is_file()


def test_the_taylor_check_agrees_to_first_order():
    module = lecture("01_vanilla_gradient_saliency")
    model = small_cnn().double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    classes = utils.resolve_target(model(x), None)
    grads = module.vanilla_gradient(model, x, classes, absolute=False)
    predicted, actual = module.taylor_check(model, x, grads, classes, step=1e-6)
    torch.testing.assert_close(actual, predicted, rtol=1e-4, atol=1e-12)


# --- the course speaks for itself -----------------------------------------------------------------


def test_no_file_points_outside_the_repository_or_reviews_other_code():
    """A student has only this repository: no file may send them to a document that is not in it,
    and the lectures state facts (with the paper or the test that shows them), not reviews."""
    import subprocess

    root = utils.ROOT
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True,
                                check=True).stdout
        files = [root / name for name in listed.splitlines()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but the usual clutter
        clutter = {".git", ".venv", "outputs"}
        files = [p for p in root.rglob("*") if p.is_file() and not clutter & set(p.parts)]
    outside = ["API" + ".md", "../" + "shared", "STYLE" + ".md", "FINDINGS" + ".md"]  # not spelled out here
    reviews = ["popular from-" + "scratch", "classic from-" + "scratch", "a known " + "bug"]
    found = []
    for path in files:
        relative = path.relative_to(root)
        if relative.parts[0] == ".ci" or not path.is_file() or path.suffix in {".png", ".jpg", ".pt", ".npz"}:
            continue
        text = path.read_text(errors="ignore")
        found += [f"{relative}: {word!r}" for word in outside + reviews if word.lower() in text.lower()]
    assert not found, "\n".join(found)


# --- figures for a 16:9 projector (utils' plotting helpers, first used here) ----------------------


def test_screen_figures_are_16_by_9_with_readable_fonts_and_one_bar_per_scale():
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = utils.figure_grid(2, 3, title="t", landscape=True)
    assert tuple(fig.get_size_inches()) == utils.SCREEN and fig._suptitle.get_fontsize() >= 14
    plt.close(fig)
    fig, panels = utils.example_grid(5, 3, title="five photos")  # two photos a row: larger panels than one
    assert [len(p) for p in panels] == [3] * 5 and fig.get_size_inches()[0] == utils.SCREEN[0]
    width, height = fig.get_size_inches()
    assert width / height >= 16 / 9 - 1e-9  # landscape, never taller than 16:9
    assert len({id(ax) for p in panels for ax in p}) == 15 and utils.fonts(fig)["title"] >= 9.5
    blank = [ax for ax in fig.axes if ax not in [a for p in panels for a in p]]
    assert len(blank) == 3 and not any(ax.axison for ax in blank)  # the sixth place is left empty
    heat = np.random.default_rng(0).random((8, 8))
    for axes in panels:
        utils.show_heatmap(axes[1], heat, "no bar of its own", bar=False)
    assert len(fig.axes) == 18  # no colour bar yet
    bar = utils.shared_colorbar(fig, [axes[1] for axes in panels], label="1 = 99th pct")
    assert len(fig.axes) == 19 and not bar.ax.get_ylabel().startswith("/")
    assert utils.show_heatmap(panels[0][2], heat, "the old call form") is not None  # still draws its own bar
    assert len(fig.axes) == 20
    plt.close(fig)
