"""Lecture 4, Integrated Gradients: hand-derived answers, completeness, Captum, the contract."""
from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

from conftest import lecture, random_resnet18
from helpers import (CountingModel, assert_bad_flag, assert_close, assert_no_side_effects,
                     assert_target_errors, assert_target_forms, linear_model, tiny_cnn)

ig = lecture("04_integrated_gradients")
METHODS = ig.METHODS


# %% Hand-derived answers ---------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("steps", [2, 3, 16])
def test_linear_model_from_zero_is_w_times_x_for_every_rule_and_step_count(method, steps):
    model = linear_model(2 * 3 * 4)
    x = torch.randn(2, 2, 3, 4, dtype=torch.float64)
    w = model[1].weight.detach()
    a = ig.integrated_gradients(model, x, target=[0, 2], steps=steps, method=method)
    assert torch.allclose(a, torch.stack([w[0], w[2]]).view_as(x) * x, rtol=1e-12, atol=1e-12)
    x_baseline = torch.randn_like(x)  # any baseline: (x - x') * w
    a = ig.integrated_gradients(model, x, target=[0, 2], baseline=x_baseline, steps=steps, method=method)
    assert torch.allclose(a, torch.stack([w[0], w[2]]).view_as(x) * (x - x_baseline), rtol=1e-12, atol=1e-12)


def test_quadrature_rules():
    for method in METHODS:
        for n in (2, 5, 50):
            alphas, weights = ig.quadrature(method, n)
            assert alphas.shape == weights.shape == (n,)
            assert abs(float(weights.sum()) - 1) < 1e-12, method  # integrates a constant exactly
            assert float(alphas.min()) >= 0 and float(alphas.max()) <= 1
            if method != "riemann_trapezoid":  # Captum's nodes and weights
                step_sizes, nodes = approximation_parameters(method)
                assert torch.allclose(alphas, torch.tensor(nodes(n), dtype=torch.float64), atol=1e-7)
                assert torch.allclose(weights, torch.tensor(step_sizes(n), dtype=torch.float64), atol=1e-12)
    alphas, weights = ig.quadrature("riemann_trapezoid", 3)  # the true trapezoid rule, by hand
    assert alphas.tolist() == [0.0, 0.5, 1.0] and weights.tolist() == [0.25, 0.5, 0.25]
    alphas, weights = ig.quadrature("gausslegendre", 2)  # exact for cubics: int_0^1 a^3 = 1/4
    assert abs(float((weights * alphas ** 3).sum()) - 0.25) < 1e-12


def test_bad_arguments_raise_value_errors():
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="riemann_left"):
        ig.integrated_gradients(model, x, target=0, method="simpson")
    with pytest.raises(ValueError, match=">= 2"):
        ig.integrated_gradients(model, x, target=0, steps=1, method="riemann_trapezoid")
    with pytest.raises(ValueError, match="broadcast"):
        ig.integrated_gradients(model, x, target=0, baseline=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="batch_size"):
        ig.integrated_gradients(model, x, target=0, batch_size=0)


# %% Completeness ----------------------------------------------------------------------


def relu_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                         nn.Linear(64, 3)).double().eval()


@pytest.mark.parametrize("method", ["riemann_trapezoid", "riemann_middle", "gausslegendre", "riemann_left"])
def test_completeness_converges_on_a_relu_network(method):
    model = relu_mlp()
    torch.manual_seed(1)
    x, x_baseline = torch.randn(3, 12, dtype=torch.float64), torch.randn(3, 12, dtype=torch.float64)
    deltas = []
    for steps in (4, 16, 64, 256):
        a = ig.integrated_gradients(model, x, target=[0, 1, 2], baseline=x_baseline, steps=steps,
                                    method=method)
        deltas.append(ig.completeness_delta(model, x, a, baseline=x_baseline, target=[0, 1, 2]).abs())
    scale = a.abs().flatten(1).sum(1)  # the total amount of attribution, |S(x) - S(x')| can be ~0
    assert (deltas[-1] < deltas[0] / 8).all() and (deltas[-1] < deltas[1]).all(), deltas
    assert (deltas[-1] < 0.005 * scale).all(), (deltas, scale)  # within 0.5% at 256 steps


def test_completeness_delta_equals_captums_convergence_delta():
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    attributions, delta = IntegratedGradients(model).attribute(
        x, baselines=0.2, target=[1, 3], n_steps=8, method="riemann_left", return_convergence_delta=True)
    ours = ig.completeness_delta(model, x, attributions, baseline=0.2, target=[1, 3])
    assert ours.shape == (2,)
    assert torch.allclose(ours, delta.float(), atol=1e-5)


# %% Asking for a tolerance ----------------------------------------------------------------


def test_within_tolerance_is_exact_at_two_points_on_a_linear_model():
    model = linear_model(2 * 3 * 4)
    x, x_baseline = torch.randn(2, 2, 3, 4, dtype=torch.float64), torch.randn(2, 2, 3, 4, dtype=torch.float64)
    w = model[1].weight.detach()
    a, steps = ig.integrated_gradients_within(model, x, target=[0, 2], baseline=x_baseline, tolerance=1e-9)
    assert steps.tolist() == [2, 2]  # a constant integrand: both ends say all there is
    assert torch.allclose(a, torch.stack([w[0], w[2]]).view_as(x) * (x - x_baseline), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tolerance", [0.05, 0.01])
def test_within_tolerance_meets_it_on_a_relu_network_and_approaches_the_integral(tolerance):
    model = relu_mlp()
    torch.manual_seed(1)
    x, x_baseline = torch.randn(3, 12, dtype=torch.float64), torch.randn(3, 12, dtype=torch.float64)
    a, steps = ig.integrated_gradients_within(model, x, target=[0, 1, 2], baseline=x_baseline,
                                              tolerance=tolerance, max_steps=4097)
    delta = ig.completeness_delta(model, x, a, baseline=x_baseline, target=[0, 1, 2])
    change = -ig.completeness_delta(model, x, torch.zeros_like(x), baseline=x_baseline, target=[0, 1, 2])
    assert (delta.abs() <= tolerance * change.abs()).all() and (steps < 4097).all(), (delta / change, steps)
    # the refined path's attributions approach the integral itself, not only its sum
    exact = ig.integrated_gradients(model, x, target=[0, 1, 2], baseline=x_baseline, steps=20001)
    scale = exact.abs().flatten(1).sum(1)
    assert ((a - exact).abs().flatten(1).sum(1) < 4 * tolerance * scale).all()


def test_within_tolerance_stops_at_max_steps_and_bounds_every_forward_pass():
    model = CountingModel(relu_mlp())
    x = torch.randn(2, 12, dtype=torch.float64)
    a, steps = ig.integrated_gradients_within(model, x, target=[0, 1], tolerance=1e-6, max_steps=7,
                                              batch_size=3)
    assert steps.tolist() == [7, 7]
    assert max(model.batches) <= 3
    # 2 examples x 7 path points; a given target needs no forward pass to pick the classes
    assert sum(model.batches) == 2 * 7


def test_within_tolerance_bad_arguments_and_contract():
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    for kwargs in ({"tolerance": 0.0}, {"tolerance": float("nan")}, {"max_steps": 1}):
        with pytest.raises(ValueError, match="tolerance"):
            ig.integrated_gradients_within(model, x, target=0, **kwargs)

    def method(model, inputs, target, **kwargs):
        return ig.integrated_gradients_within(model, inputs, target, **kwargs)[0]

    assert_no_side_effects(method, max_steps=5, batch_size=2)
    assert_target_errors(method, max_steps=3)


def test_rule_errors_are_the_completeness_deltas_of_each_rule():
    model = relu_mlp()
    torch.manual_seed(2)
    x, x_baseline = torch.randn(2, 12, dtype=torch.float64), torch.randn(2, 12, dtype=torch.float64)
    classes = torch.tensor([1, 2])
    rules = ig.convergence_rules(3)
    errors = ig.rule_errors(model, x, classes, x_baseline, rules, batch_size=5)
    change = -ig.completeness_delta(model, x, torch.zeros_like(x), baseline=x_baseline, target=classes)
    for method, steps in rules:
        a = ig.integrated_gradients(model, x, target=classes, baseline=x_baseline, steps=steps, method=method)
        delta = ig.completeness_delta(model, x, a, baseline=x_baseline, target=classes)
        assert torch.allclose(errors[method, steps], delta / change, atol=1e-10), (method, steps)


def test_completeness_table_keeps_names_whole_and_says_x_prime(capsys):
    off = ig.print_completeness(["astronaut", "rocket"], ["drilling platform", "space shuttle"], [50, 50],
                                torch.tensor([10.18, 6.6]), torch.tensor([6.47, 6.5]), 0.05)
    out = capsys.readouterr().out
    assert off == 1
    assert "drilling platform" in out and "S(x)-S(x')" in out and "x_" not in out
    assert "+57.3%" in out and "OFF by more than 5%" in out and "within 5%" in out


# %% Captum ---------------------------------------------------------------------------


def captum_ig(model, x, target, baseline, steps, method):
    a = IntegratedGradients(model).attribute(x, baselines=baseline, target=target, n_steps=steps,
                                             method=method)
    # Captum 0.9's riemann_trapezoid weights its n nodes 1/n with halved ends, a sum of (n - 1)/n;
    # the true trapezoid rule's weights sum to 1
    return a * steps / (steps - 1) if method == "riemann_trapezoid" else a


@pytest.mark.parametrize("method", METHODS)
def test_equals_captum_on_a_small_cnn_with_number_and_tensor_baselines(method):
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    torch.manual_seed(3)
    for baseline in (None, 0.3, torch.rand(2, 3, 8, 8)):
        ours = ig.integrated_gradients(model, x, target=[1, 4], baseline=baseline, steps=7, method=method)
        theirs = captum_ig(model, x, [1, 4], 0.0 if baseline is None else baseline, 7, method)
        assert_close(ours, theirs)


@pytest.mark.parametrize("method", METHODS)
def test_equals_captum_on_resnet18(method):
    model = random_resnet18()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    baseline = torch.randn(1, 3, 1, 1)  # broadcast: one colour for every pixel and example
    ours = ig.integrated_gradients(model, x, target=[5, 600], baseline=baseline, steps=6, method=method,
                                   batch_size=5)
    theirs = captum_ig(model, x, [5, 600], baseline.expand_as(x).contiguous(), 6, method)
    assert_close(ours, theirs)


def test_batch_size_changes_nothing_and_bounds_every_forward_pass():
    model = CountingModel(tiny_cnn())
    x = torch.rand(3, 3, 8, 8)
    whole = ig.integrated_gradients(model, x, target=[0, 1, 2], baseline=0.1, steps=10)
    model.batches.clear()
    for batch_size in (1, 4, 7, 30, 1000):
        chunked = ig.integrated_gradients(model, x, target=[0, 1, 2], baseline=0.1, steps=10,
                                          batch_size=batch_size)
        assert_close(chunked, whole, rtol=1e-5)
        assert max(model.batches) <= batch_size
        model.batches.clear()


# %% The contract ------------------------------------------------------------------------


def test_target_forms_and_errors():
    assert_target_forms(ig.integrated_gradients, steps=4)
    assert_target_errors(ig.integrated_gradients, steps=4)
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="0 to 4"):
        ig.completeness_delta(model, x, torch.zeros_like(x), target=5)


def test_no_side_effects():
    assert_no_side_effects(ig.integrated_gradients, steps=4, batch_size=3)
    assert_no_side_effects(ig.integrated_gradients, steps=4, baseline=torch.zeros(1, 3, 1, 1))


# %% The script ---------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [["--steps", "1"], ["--steps", "-3"], ["--steps", "many"],
                                   ["--batch-size", "0"], ["--method", "simpson"], ["--tolerance", "0"],
                                   ["--tolerance", "1.5"], ["--max-steps", "1"]])
def test_bad_flags_exit_2_with_one_line(flags, tmp_path, capsys):
    assert_bad_flag(ig.main, flags, tmp_path, capsys)


def test_main_quick_imagenet(cached_small_resnet18, tmp_path, capsys):
    ig.main(["--quick", "--out-dir", str(tmp_path)])
    for name in ("path", "baselines", "convergence"):
        assert (tmp_path / f"04_{name}_imagenet.png").stat().st_size > 10_000
    assert "Completeness" in capsys.readouterr().out


def test_main_quick_mnist(tmp_path, capsys):
    ig.main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path), "--steps", "4"])
    for name in ("path", "baselines", "convergence"):
        assert (tmp_path / f"04_{name}_mnist.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "with 4 steps" in out and "verdict" in out


def test_main_tolerance_reports_the_steps_it_took(tmp_path, capsys):
    ig.main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path), "--steps", "4",
             "--tolerance", "0.05", "--max-steps", "65"])
    out = capsys.readouterr().out
    assert "refined until within 5%" in out
    assert "still miss" in out or "Every example is within 5%" in out


def test_a_given_target_costs_no_extra_forward_pass_and_none_costs_one():
    """The class is fixed at x; only target=None needs the prediction there."""
    model = CountingModel(relu_mlp())
    x = torch.randn(2, 12, dtype=torch.float64)
    ig.integrated_gradients(model, x, target=[0, 1], steps=5, batch_size=4)
    assert sum(model.batches) == 2 * 5
    model.batches.clear()
    ig.integrated_gradients(model, x, target=None, steps=5, batch_size=4)
    assert sum(model.batches) == 2 * 5 + 2
    with pytest.raises(ValueError, match="0 to 2"):  # the range is still checked, by the first chunk
        ig.integrated_gradients(model, x, target=[0, 3], steps=5, batch_size=4)


def test_convergence_tick_labels_share_one_format_and_every_rule_is_drawn():
    import matplotlib.pyplot as plt

    module = lecture("04_integrated_gradients")
    assert [module.percent(v) for v in (100.0, 1.0, 1e-2, 1e-5, 9.99999e-6)] == \
        ["100%", "1%", "0.01%", "0.00001%", "0.00001%"]
    steps = {m: [2, 4] for m in module.METHODS}
    errors = {(m, n): torch.full((3,), 1e-7) for m, ns in steps.items() for n in ns}  # three rules alike
    fig = module.plot_convergence(errors, 0.05, "1 photo, a test")
    lines = [line for line in fig.axes[0].get_lines() if line.get_label() in module.METHODS]
    markers = {line.get_marker() for line in lines}
    positions = {tuple(line.get_xdata()) for line in lines}
    plt.close(fig)
    assert len(lines) == len(module.METHODS) == len(markers) == len(positions)  # none hidden under another


def test_the_convergence_figure_draws_the_guide_lines_the_text_names():
    """The text compares the errors with 1/n and 1/n^2: the figure draws both, through the trapezoid's
    first median (here the digit CNN's exact 1/(2(n - 1)), 25% at n = 3)."""
    import matplotlib.pyplot as plt

    module = lecture("04_integrated_gradients")
    rules = module.convergence_rules(3)
    errors = {(m, n): torch.full((2,), 1 / (2 * (n - 1)) if m == "riemann_trapezoid" else 0.01) for m, n in rules}
    fig = module.plot_convergence(errors, 0.05, "2 digits, a test")
    guides = {line.get_label().split(" (")[0]: line for line in fig.axes[0].get_lines()
              if line.get_label().startswith("guide")}
    plt.close(fig)
    assert set(guides) == {"guide: ~1/n", "guide: ~1/n^2"}
    n = guides["guide: ~1/n"].get_xdata()
    assert_close(torch.tensor(guides["guide: ~1/n"].get_ydata()), torch.tensor(25.0 * 3 / n), rtol=1e-6)
    assert "guide line" in module.__doc__ or "guide lines" in open(module.__file__).read()


def test_lecture_4_uses_the_one_imagenet_mean():
    module = lecture("04_integrated_gradients")
    assert not hasattr(module, "IMAGENET_MEAN")  # utils.IMAGENET_MEAN is the course's one copy
