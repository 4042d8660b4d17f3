"""Lecture 2, gradient x input: a hand-derived answer, Captum, the contract, the script.

Also holds the small helpers that the tests of lectures 3 and 4 import.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import InputXGradient
from PIL import Image
from torch import nn

import utils
from conftest import lecture, random_resnet18

gxi = lecture("02_gradient_input_saliency")


# %% Helpers shared by the tests of lectures 2 to 4 -----------------------------------------


class TinyCNN(nn.Module):
    """An in-place ReLU module used twice, a max pool, and a functional relu: 5 classes."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.relu(self.conv1(x)), 2)
        x = F.relu(self.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


def tiny_cnn(seed: int = 0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return TinyCNN().to(dtype).eval()


def linear_model(features: int, classes: int = 3, seed: int = 0) -> nn.Module:
    """f(x) = W x + b on flattened inputs, in float64 so the hand-derived answers are exact."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(features, classes)).double().eval()
    return model


def hooks_left(model: nn.Module) -> list[str]:
    return [f"{name}.{attr}" for name, m in model.named_modules()
            for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
            if getattr(m, attr, None)]


def assert_no_side_effects(method, **kwargs) -> None:
    """Run `method` on good and bad targets; nothing of the caller's may change, errors included."""
    model = tiny_cnn()
    x = torch.rand(2, 3, 8, 8)
    before = x.clone()
    out = method(model, x, None, **kwargs)
    assert out.shape == x.shape and out.dtype == x.dtype and not out.requires_grad
    for bad in (5, -1, [0, 1, 2]):
        with pytest.raises(ValueError):
            method(model, x, bad, **kwargs)
    x_grad = torch.rand(2, 3, 8, 8, requires_grad=True)
    method(model, x_grad, [1, 2], **kwargs)
    assert x_grad.requires_grad and x_grad.grad is None
    assert torch.equal(x, before) and not x.requires_grad
    assert not model.training and not hooks_left(model)
    assert all(p.grad is None for p in model.parameters())
    model.train()  # a model in training mode stays there, also after an error
    method(model, x, [0, 4], **kwargs)
    with pytest.raises(ValueError):
        method(model, x, 7, **kwargs)
    assert model.training and not hooks_left(model)
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():  # works under the caller's no_grad
        assert torch.isfinite(method(model.eval(), x, 0, **kwargs)).all()


def assert_target_errors(method, **kwargs) -> None:
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="0 to 4"):
        method(model, x, 5, **kwargs)
    with pytest.raises(ValueError, match="0 to 4"):
        method(model, x, torch.tensor([0, 9]), **kwargs)
    with pytest.raises(ValueError, match="exactly 2"):
        method(model, x, [0, 1, 2], **kwargs)


def assert_target_forms(method, **kwargs) -> None:
    """None, an int, a list and a tensor name the same classes the same way."""
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    predicted = model(x).argmax(1)
    torch.manual_seed(0)
    by_none = method(model, x, None, **kwargs)
    torch.manual_seed(0)
    by_list = method(model, x, predicted.tolist(), **kwargs)
    torch.manual_seed(0)
    by_tensor = method(model, x, predicted, **kwargs)
    assert torch.allclose(by_none, by_list) and torch.allclose(by_none, by_tensor)
    torch.manual_seed(0)
    by_int = method(model, x, 3, **kwargs)
    torch.manual_seed(0)
    assert torch.allclose(by_int, method(model, x, [3, 3], **kwargs))


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    """float32 agreement, with `atol` relative to the map's scale."""
    ours, theirs = ours.detach(), theirs.detach()
    scale = float(theirs.abs().max())
    worst = float((ours - theirs).abs().max()) / scale
    assert torch.allclose(ours, theirs, rtol=rtol, atol=atol * scale), worst


class CountingModel(nn.Module):
    """Wraps a model and records the batch size of every forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.model(x)


@pytest.fixture
def mnist_files(monkeypatch, tmp_path):
    """The shipped digit CNN and digits, or stand-ins while another agent is still making them."""
    if not utils.MNIST_WEIGHTS.is_file():
        path = tmp_path / "mnist_random.pt"
        torch.manual_seed(0)
        torch.save(utils.MnistCNN().state_dict(), path)
        monkeypatch.setattr(utils, "MNIST_WEIGHTS", path)
    if not list(utils.DIGITS_DIR.glob("*.png")):
        folder = tmp_path / "digits"
        folder.mkdir()
        for label in range(10):  # a bright ring of varying size on black: enough to run the scripts
            image = np.zeros((28, 28), dtype=np.uint8)
            image[6 + label // 2:22 - label // 3, 8:20] = 255
            image[10:18, 11:17] = 0
            Image.fromarray(image).save(folder / f"sample_{label:02d}_{label}.png")
        monkeypatch.setattr(utils, "DIGITS_DIR", folder)


def assert_bad_flag(main, flags: list[str], tmp_path, capsys) -> None:
    """A bad value of a script's own flag: one line on stderr, exit status 2, nothing written."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["--quick", "--out-dir", str(out), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and flags[0] in err, err
    assert not out.exists()


# %% Lecture 2 ----------------------------------------------------------------------------


def test_linear_model_gives_w_times_x_and_adds_up_to_the_logit():
    model = linear_model(2 * 3 * 4)
    x = torch.randn(2, 2, 3, 4, dtype=torch.float64)
    w, b = model[1].weight.detach(), model[1].bias.detach()
    a = gxi.gradient_x_input(model, x, [0, 2])
    assert torch.allclose(a[0], w[0].view(2, 3, 4) * x[0]) and torch.allclose(a[1], w[2].view(2, 3, 4) * x[1])
    assert torch.allclose(a.flatten(1).sum(1) + b[[0, 2]], model(x)[[0, 1], [0, 2]].detach())


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


def test_main_quick_mnist(mnist_files, tmp_path, capsys):
    gxi.main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path)])
    assert (tmp_path / "02_gradient_x_input_mnist.png").stat().st_size > 10_000
    assert "of the pixels are black" in capsys.readouterr().out
