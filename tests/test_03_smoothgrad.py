"""Lecture 3, SmoothGrad: hand-derived answers, a closed form, Captum, the contract."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import NoiseTunnel, Saliency
from torch import nn

from conftest import lecture, random_resnet18
from helpers import (CountingModel, assert_bad_flag, assert_close, assert_no_side_effects,
                     assert_target_errors, assert_target_forms, linear_model, tiny_cnn)

sg = lecture("03_smoothgrad")
vanilla = lecture("01_vanilla_gradient_saliency")


# %% Hand-derived answers ---------------------------------------------------------------


def test_linear_model_gives_w_whatever_the_noise():
    model = linear_model(2 * 3 * 4)
    x = torch.randn(2, 2, 3, 4, dtype=torch.float64)
    w = model[1].weight.detach()
    want = torch.stack([w[0], w[2]]).view_as(x)
    assert torch.allclose(sg.smoothgrad(model, x, [0, 2], n_samples=5, noise_level=0.5), want, atol=1e-12)
    assert torch.allclose(sg.smoothgrad(model, x, [0, 2], n_samples=5, squared=True), want ** 2, atol=1e-12)


class SumRelu(nn.Module):
    """S_0(x) = sum_i relu(x_i): its gradient is the indicator 1{x_i > 0}."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(x).flatten(1).sum(1)
        return torch.stack([s, -s], dim=1)


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_sum_of_relu_matches_the_normal_cdf(scale):
    """E[1{x + eps > 0}] = Phi(x / sigma), with sigma = noise_level * (max(x) - min(x)).

    Each entry is a mean of n Bernoulli draws: standard error <= 0.5 / sqrt(n) = 0.0079
    for n = 4000; the tolerance is 5 standard errors. Scaling x by 10 scales sigma by 10,
    so Phi(x / sigma) is unchanged: noise that were divided by the range would fail here.
    """
    n, noise_level = 4000, 0.25
    x = scale * torch.linspace(-1, 1, 21, dtype=torch.float64).view(1, 21)
    sigma = noise_level * 2 * scale
    phi = 0.5 * (1 + torch.erf(x / (sigma * math.sqrt(2))))
    generator = torch.Generator().manual_seed(0)
    for squared in (False, True):  # the indicator squared is itself
        estimate = sg.smoothgrad(SumRelu(), x, 0, n, noise_level, squared, generator=generator)
        assert (estimate - phi).abs().max() < 5 * 0.5 / math.sqrt(n)


def test_no_noise_is_the_vanilla_gradient():
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    assert_close(sg.smoothgrad(model, x, [1, 2], n_samples=3, noise_level=0.0),
                 vanilla.vanilla_gradient(model, x, [1, 2], absolute=False))


def test_structure_is_zero_for_speckle_and_one_for_regions():
    speckle = np.indices((8, 8)).sum(0) % 2.0  # a pixel checkerboard: every 2x2 tile averages to 0.5
    regions = np.kron(np.array([[0.0, 1.0], [1.0, 0.2]]), np.ones((4, 4)))  # constant on 4x4 tiles
    share = sg.structure(np.stack([speckle, regions, speckle + 0.1 * regions]), block=2)
    assert share[0] == pytest.approx(0.0) and share[1] == pytest.approx(1.0)
    assert 0.0 < share[2] < 1.0


# %% Captum: the same noise gives the same numbers ----------------------------------------


def same_noise_as_ours(x: torch.Tensor, n_samples: int, seed: int) -> torch.Tensor:
    """Our draws, one standard normal per noisy copy, copy p = j * N + i, laid out as Captum's
    NoiseTunnel lays out its noise: the copies of example i together (repeat_interleave)."""
    generator = torch.Generator().manual_seed(seed)
    eps = torch.stack([torch.randn(x.shape[1:], generator=generator) for _ in range(n_samples * len(x))])
    return eps.view(n_samples, len(x), *x.shape[1:]).transpose(0, 1).reshape(-1, *x.shape[1:])


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("make_model", [tiny_cnn, random_resnet18])
def test_equals_captum_noise_tunnel_given_the_same_noise(make_model, squared, monkeypatch):
    model = make_model()
    torch.manual_seed(0)
    size = 8 if make_model is tiny_cnn else 32
    x = torch.rand(2, 3, size, size)
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0  # every example spans [0, 1]: Captum takes one sigma for all
    n, noise_level, target = 6, 0.2, [1, 3]
    ours = sg.smoothgrad(model, x, target, n, noise_level, squared, batch_size=5,
                         generator=torch.Generator().manual_seed(7))
    eps = same_noise_as_ours(x, n, seed=7)
    # Captum draws its noise with torch.normal(0, sigma expanded to the copies' shape)
    monkeypatch.setattr(torch, "normal", lambda mean, std, *args, **kwargs: mean + std * eps)
    theirs = NoiseTunnel(Saliency(model)).attribute(
        x, nt_type="smoothgrad_sq" if squared else "smoothgrad", nt_samples=n, stdevs=noise_level,
        target=target, abs=False)
    assert_close(ours, theirs)


def test_equals_captum_in_expectation_with_captums_own_noise():
    """Without shared noise: on S = sum relu(x), both estimate Phi(x / sigma) (5 standard errors)."""
    x = torch.linspace(-1, 1, 11).view(1, 11)
    n = 2000
    torch.manual_seed(0)
    theirs = NoiseTunnel(Saliency(SumRelu())).attribute(x, nt_type="smoothgrad", nt_samples=n,
                                                         stdevs=0.4, target=0, abs=False)
    ours = sg.smoothgrad(SumRelu(), x, 0, n, noise_level=0.2, generator=torch.Generator().manual_seed(1))
    assert (ours - theirs).abs().max() < 5 * math.sqrt(2) * 0.5 / math.sqrt(n)


# %% Batching and the generator ----------------------------------------------------------


def test_batch_size_changes_nothing_and_bounds_every_forward_pass():
    model = CountingModel(tiny_cnn())
    x = torch.rand(3, 3, 8, 8)
    whole = sg.smoothgrad(model, x, [0, 1, 2], 5, generator=torch.Generator().manual_seed(0))
    for batch_size in (1, 2, 7, 1000):
        model.batches.clear()
        chunked = sg.smoothgrad(model, x, [0, 1, 2], 5, batch_size=batch_size,
                                generator=torch.Generator().manual_seed(0))
        assert_close(chunked, whole, rtol=1e-5)
        assert max(model.batches) <= batch_size


def test_the_generator_decides_the_noise():
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    first = sg.smoothgrad(model, x, 0, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, sg.smoothgrad(model, x, 0, 4, generator=torch.Generator().manual_seed(1)))
    other = sg.smoothgrad(model, x, 0, 4, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(first, other)
    torch.manual_seed(3)  # without a generator: torch's global one
    global_draw = sg.smoothgrad(model, x, 0, 4)
    torch.manual_seed(3)
    assert torch.equal(global_draw, sg.smoothgrad(model, x, 0, 4))


# %% The contract ------------------------------------------------------------------------


def test_bad_arguments_raise_value_errors():
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    for kwargs in ({"n_samples": 0}, {"noise_level": -0.1}, {"noise_level": float("nan")}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            sg.smoothgrad(model, x, 0, **kwargs)


def test_target_forms_and_errors():
    assert_target_forms(sg.smoothgrad, n_samples=3)
    assert_target_errors(sg.smoothgrad, n_samples=3)


def test_no_side_effects():
    assert_no_side_effects(sg.smoothgrad, n_samples=3, batch_size=4)
    assert_no_side_effects(sg.smoothgrad, n_samples=2, squared=True,
                           generator=torch.Generator().manual_seed(0))


# %% The script ---------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [["--n-samples", "0"], ["--n-samples", "2.5"], ["--noise-level", "1.5"],
                                   ["--noise-level", "-0.1"], ["--noise-level", "nan"],
                                   ["--batch-size", "0"]])
def test_bad_flags_exit_2_with_one_line(flags, tmp_path, capsys):
    assert_bad_flag(sg.main, flags, tmp_path, capsys)


def test_main_quick_imagenet(cached_small_resnet18, tmp_path, capsys):
    sg.main(["--quick", "--out-dir", str(tmp_path)])
    for name in ("noise_grid", "smoothgrad"):
        assert (tmp_path / f"03_{name}_imagenet.png").stat().st_size > 10_000
    assert "sigma =" in capsys.readouterr().out


def test_main_quick_mnist(tmp_path, capsys):
    sg.main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path)])
    for name in ("noise_grid", "smoothgrad"):
        assert (tmp_path / f"03_{name}_mnist.png").stat().st_size > 10_000
    assert "Structure in the map as displayed" in capsys.readouterr().out
