"""Lecture 8: the metrics by hand-built models with known answers, LIME and SHAP by the Shapley
formula, additive models and Captum, the sanity check without side effects, and the script end to end."""
from __future__ import annotations

import csv
import itertools
import math
import statistics

import pytest
import torch
from torch import nn

from conftest import ROOT, lecture
from demos import comparison_run, evaluation
from helpers import CountingModel, assert_bad_flag, linear_model, tiny_cnn

comparative = lecture("08_comparative_analysis")


class RegionScore(nn.Module):
    """Logits [s, 0] with s = the sum of x over one region (all channels): p_0 = sigmoid(s)."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.double())  # (H, W) 0/1

    def forward(self, x):
        s = (x * self.region).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


class Recorder(nn.Module):
    """Remembers every input it sees; its logits are constant."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return torch.zeros(x.shape[0], 2, dtype=x.dtype)


def removal_order(saliency: torch.Tensor) -> list[int]:
    """The ranking deletion_curve documents, by hand: larger first, ties in flattened order."""
    flat = saliency.flatten().tolist()
    return sorted(range(len(flat)), key=lambda p: (-flat[p], p))


# %% Deletion and insertion -----------------------------------------------------------------------


def test_deletion_curve_of_a_region_model_by_hand():
    torch.manual_seed(0)
    h, w, steps = 4, 5, 7
    region = torch.zeros(h, w)
    region[1:3, 1:4] = 1
    model = RegionScore(region).eval()
    x = torch.rand(1, 3, h, w, dtype=torch.float64) * 0.5
    saliency = region.double()[None, None].expand(1, 3, h, w) * torch.rand(1, 3, h, w, dtype=torch.float64)
    curve = comparative.deletion_curve(model, x, saliency, target=0, steps=steps)
    order = removal_order(saliency.abs().sum(1)[0])
    expected = []
    for k in range(steps + 1):
        removed = set(order[:round(k * h * w / steps)])
        kept = [p for p in range(h * w) if p not in removed and region.flatten()[p] == 1]
        s = sum(float(x[0, :, p // w, p % w].sum()) for p in kept)
        expected.append(1 / (1 + math.exp(-s)))
    assert torch.allclose(curve[0], torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    assert curve.shape == (1, steps + 1)


def test_insertion_curve_of_a_region_model_starts_at_the_blur_and_ends_at_the_input():
    torch.manual_seed(1)
    region = torch.zeros(12, 12)
    region[3:9, 2:6] = 1
    model = RegionScore(region).eval()
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    saliency = torch.rand(2, 12, 12, dtype=torch.float64)
    curve = comparative.insertion_curve(model, x, saliency, target=0, steps=6)
    start = model(comparative.blurred(x)).softmax(1)[:, 0]
    end = model(x).softmax(1)[:, 0]
    assert torch.allclose(curve[:, 0], start) and torch.allclose(curve[:, -1], end)
    ones = comparative.insertion_curve(model, x, region[None].expand(2, -1, -1).double(), target=0, steps=6,
                                       baseline=0.0)
    assert ones[0, 0] == 0.5  # from a zero baseline, s = 0


def test_blur_is_an_11x11_gaussian_of_sigma_5_per_channel():
    x = torch.zeros(1, 2, 31, 31, dtype=torch.float64)
    x[0, 1, 15, 15] = 1.0
    blurred = comparative.blurred(x)
    assert torch.equal(blurred[0, 0], torch.zeros(31, 31, dtype=torch.float64))  # channels stay apart
    t = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-t ** 2 / 50)
    kernel = g[:, None] * g[None] / g.sum() ** 2
    assert torch.allclose(blurred[0, 1, 10:21, 10:21], kernel)
    assert blurred[0, 1].sum().item() == pytest.approx(1.0)


def test_the_ranking_rule_stable_ties_rounding_and_whole_pixels():
    h, w, steps = 2, 5, 4  # k * 10 / 4 = 2.5 and 7.5 round to even: 0, 2, 5, 8, 10 pixels
    model = Recorder()
    x = torch.ones(1, 3, h, w)
    saliency = torch.tensor([[[0.0, 1.0, 1.0, 0.0, 2.0], [1.0, 0.0, 0.0, 0.0, 1.0]]])  # (1, H, W), ties
    comparative.deletion_curve(model, x, saliency, target=0, steps=steps)
    seen = torch.cat(model.seen[1:])  # the first pass resolves the class
    order = [4, 1, 2, 5, 9, 0, 3, 6, 7, 8]  # by value, ties in flattened order
    assert [round(k * h * w / steps) for k in range(steps + 1)] == [0, 2, 5, 8, 10]
    for k, count in enumerate([0, 2, 5, 8, 10]):
        removed = (seen[k] == 0).flatten(1)  # (C, HW)
        assert removed.all(0).eq(removed.any(0)).all()  # every channel of a pixel together
        assert sorted(removed[0].nonzero()[:, 0].tolist()) == sorted(order[:count])


def test_a_colour_map_is_ranked_by_its_summed_absolute_values():
    model = Recorder()
    saliency = torch.zeros(1, 3, 1, 4)
    saliency[0, 0, 0, 1] = -5.0  # |-5| beats 1 + 1 + 1
    saliency[0, :, 0, 2] = 1.0
    comparative.deletion_curve(model, torch.ones(1, 3, 1, 4), saliency, target=0, steps=4)
    first = model.seen[1][1]  # point 1: one pixel removed
    assert first[:, 0, 1].eq(0).all() and first[:, 0, 2].eq(1).all()


def test_curves_do_not_depend_on_the_batch_size_and_count_steps_plus_one_evaluations():
    model, x = tiny_cnn(), torch.rand(3, 3, 8, 8)
    saliency = torch.rand(3, 3, 8, 8)
    counting = CountingModel(model)
    whole = comparative.deletion_curve(counting, x, saliency, steps=5)
    assert sum(counting.batches) == 3 + 3 * 6
    chunked = comparative.deletion_curve(model, x, saliency, steps=5, batch_size=4)
    assert torch.allclose(whole, chunked, atol=1e-6)
    whole = comparative.insertion_curve(model, x, saliency, [0, 1, 2], steps=3)
    chunked = comparative.insertion_curve(model, x, saliency, [0, 1, 2], steps=3, batch_size=2)
    assert torch.allclose(whole, chunked, atol=1e-6)


def test_area_under_known_curves():
    curves = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.allclose(comparative.area_under_curve(curves), torch.tensor([1.0, 0.5, 0.5, 0.25]))
    assert torch.allclose(comparative.area_under_curve(torch.linspace(0, 1, 101)[None] ** 2),
                          torch.tensor([1 / 3]), atol=1e-4)


# %% The pointing game -------------------------------------------------------------------------


def test_pointing_game_tolerance_is_strict_and_euclidean():
    mask = torch.zeros(4, 40, 40, dtype=torch.bool)
    mask[:, 5, 5] = True
    saliency = torch.zeros(4, 40, 40)
    saliency[0, 5, 20] = 1.0  # 15 px right: not strictly within 15
    saliency[1, 5, 19] = 1.0  # 14 px
    saliency[2, 17, 14] = 1.0  # (12, 9): exactly 15
    saliency[3, 16, 13] = 1.0  # (11, 8): 13.6
    assert comparative.pointing_game(saliency, mask, 15).tolist() == [False, True, False, True]
    assert comparative.pointing_game(saliency, mask, 15.01).tolist() == [True, True, True, True]
    assert not comparative.pointing_game(saliency[:1], mask[:1], 0).any()


def test_pointing_game_takes_the_first_maximum_after_channel_reduction():
    mask = torch.zeros(2, 10, 10, dtype=torch.bool)
    mask[:, 9, 9] = True
    saliency = torch.zeros(2, 3, 10, 10)
    saliency[0, 0, 0, 0] = saliency[0, 0, 9, 9] = 2.0  # a tie: the first in flattened order is far away
    saliency[1, :, 9, 9] = -1.0  # |.| summed over channels: 3 beats 2
    saliency[1, 0, 0, 0] = 2.0
    assert comparative.pointing_game(saliency, mask, 2).tolist() == [False, True]


def test_pointing_game_shape_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="mask"):
        comparative.pointing_game(torch.rand(1, 5, 5), torch.ones(1, 4, 4, dtype=torch.bool))


# %% Sensitivity-n -----------------------------------------------------------------------------


def test_sensitivity_n_is_one_for_gradient_x_input_on_a_linear_model_with_a_zero_baseline():
    gxi = lecture("02_gradient_input_saliency")
    model = linear_model(3 * 6 * 6, classes=4)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    attributions = gxi.gradient_x_input(model, x, [1, 3])
    for n in (1, 5, 0.5):
        r = comparative.sensitivity_n(model, x, attributions, [1, 3], n=n, n_subsets=20,
                                      generator=torch.Generator().manual_seed(0))
        assert torch.allclose(r, torch.ones(2, dtype=torch.float64), atol=1e-10)


def test_sensitivity_n_draws_n_pixels_with_all_channels():
    subsets = comparative.random_subsets(2, 30, 0.2, 5, torch.Generator().manual_seed(0))
    assert subsets.shape == (2, 5, 30) and subsets.sum(-1).eq(6).all()
    model = Recorder()
    comparative.sensitivity_n(model, torch.ones(1, 3, 2, 5), torch.rand(1, 3, 2, 5), 0, n=3, n_subsets=4,
                              generator=torch.Generator().manual_seed(0))
    for seen in model.seen[2:]:  # after the class and f(x)
        off = seen[0] == 0  # (C, H, W)
        assert off.all(0).eq(off.any(0)).all() and int(off[0].sum()) == 3
    with pytest.raises(ValueError, match="pixel count"):
        comparative.sensitivity_n(tiny_cnn(), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), n=65)


# %% SHAP and LIME ----------------------------------------------------------------------------


class Interacting(nn.Module):
    """Logits from (N, 1, 1, 4) inputs with strong interactions between the features."""

    def forward(self, x):
        a, b, c, d = x.flatten(1).unbind(1)
        score = 3 * a * b - 2 * b * c * d + c ** 2 + torch.sin(d) + a * d
        return torch.stack([score, -score, a * c], 1)


def shapley_by_permutations(v, M: int) -> list[float]:
    """The Shapley value as the mean marginal contribution over all M! orders."""
    totals = [0.0] * M
    orders = list(itertools.permutations(range(M)))
    for order in orders:
        present: set[int] = set()
        for j in order:
            totals[j] += v(present | {j}) - v(present)
            present.add(j)
    return [t / len(orders) for t in totals]


def test_kernel_shap_without_samples_is_the_shapley_value():
    model = Interacting()
    x = torch.tensor([[[[0.7, -1.2, 0.4, 1.5]]], [[[0.3, 0.8, -0.6, 0.2]]]], dtype=torch.float64)
    baseline = torch.tensor([[[[0.1, 0.2, -0.3, 0.0]]]], dtype=torch.float64)
    mask = torch.arange(4).view(1, 1, 1, 4)
    phi = comparative.kernel_shap(model, x, [0, 2], mask, baseline=baseline)
    for i, cls in enumerate([0, 2]):
        def v(coalition):
            z = torch.tensor([j in coalition for j in range(4)]).view(1, 1, 1, 4)
            return float(model(torch.where(z, x[i: i + 1], baseline))[0, cls])
        expected = torch.tensor(shapley_by_permutations(v, 4), dtype=torch.float64)
        assert torch.allclose(phi[i].flatten(), expected, atol=1e-12)


def test_kernel_shap_is_efficient_on_a_model_with_strong_interactions():
    model = Interacting()
    x = torch.randn(3, 1, 1, 4, dtype=torch.float64)
    mask = torch.arange(4).view(1, 1, 1, 4)
    phi = comparative.kernel_shap(model, x, 0, mask, n_samples=12, generator=torch.Generator().manual_seed(0))
    total = model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]
    assert torch.allclose(phi.flatten(1).sum(1), total, atol=1e-10)
    cnn = tiny_cnn()
    images = torch.rand(2, 3, 8, 8)
    values = comparative.kernel_shap(cnn, images, n_samples=40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        classes = cnn(images).argmax(1)
        gap = cnn(images).gather(1, classes[:, None])[:, 0] - cnn(torch.zeros_like(images)).gather(
            1, classes[:, None])[:, 0]
    cells = comparative.grid_mask(8, 8).flatten()  # (64,) the cell of each pixel
    one_pixel = torch.stack([(cells == k).nonzero()[0, 0] for k in range(49)])  # a pixel of each cell
    per_feature = values[:, 0].flatten(1)[:, one_pixel].sum(1)  # each of the 49 cells once
    assert torch.allclose(per_feature, gap, atol=1e-4)


class Additive(nn.Module):
    """A logit that is a sum of one nonlinear term per grid cell: additive in the features."""

    def __init__(self, mask: torch.Tensor, M: int) -> None:
        super().__init__()
        self.mask, self.M = mask, M

    def forward(self, x):
        cells = torch.stack([(x * (self.mask == j)).flatten(1).sum(1) for j in range(self.M)], 1)  # (N, M)
        terms = torch.tanh(cells) * torch.arange(1, self.M + 1, dtype=x.dtype) - 0.3 * cells ** 2
        return torch.stack([terms.sum(1) + 0.5, cells[:, 0]], 1)


def additive_case(M_side=3, seed=0):
    torch.manual_seed(seed)
    x = torch.rand(2, 3, 9, 9, dtype=torch.float64)
    mask = comparative.grid_mask(9, 9, cells=M_side)
    model = Additive(mask, M_side * M_side).eval()
    cells = torch.stack([(x * (mask == j)).flatten(1).sum(1) for j in range(M_side * M_side)], 1)
    contribution = torch.tanh(cells) * torch.arange(1, M_side * M_side + 1, dtype=x.dtype) - 0.3 * cells ** 2
    return model, x, mask, contribution  # contribution: v(j alone) - v(none), per feature (N, M)


@pytest.mark.parametrize("n_samples", [None, 9, 30, 200])
def test_kernel_shap_recovers_an_additive_model_exactly(n_samples):
    model, x, mask, contribution = additive_case()
    phi = comparative.kernel_shap(model, x, 0, mask, n_samples=n_samples,
                                  generator=torch.Generator().manual_seed(3))
    assert torch.allclose(phi, comparative.spread(contribution, mask, x), atol=1e-9)


def test_lime_recovers_an_additive_model_exactly_and_its_kernel_only_weights():
    model, x, mask, contribution = additive_case()
    for width in (0.25, 3.0):
        coefficients = comparative.lime(model, x, 0, mask, n_samples=60, kernel_width=width,
                                        generator=torch.Generator().manual_seed(4))
        assert torch.allclose(coefficients, comparative.spread(contribution, mask, x), atol=1e-9)


def test_default_features_are_a_7x7_grid_with_rounded_edges():
    mask = comparative.grid_mask(30, 17)[0, 0]
    rows = [round(i * 30 / 7) for i in range(8)]
    cols = [round(j * 17 / 7) for j in range(8)]
    for i in range(7):
        for j in range(7):
            assert mask[rows[i]:rows[i + 1], cols[j]:cols[j + 1]].eq(i * 7 + j).all()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(16, 5)).eval()
    values = comparative.kernel_shap(model, torch.rand(1, 3, 14, 14), 0, n_samples=30,
                                     generator=torch.Generator().manual_seed(0))
    cells = values[0, 0].unfold(0, 2, 2).unfold(1, 2, 2)  # 7 x 7 cells of 2 x 2
    assert torch.equal(cells, cells[..., :1, :1].expand_as(cells))  # one value per cell, all channels
    assert torch.equal(values[0, 0], values[0, 2])


def test_kernel_shap_and_lime_equal_captum_on_an_additive_model():
    captum_attr = pytest.importorskip("captum.attr")
    from captum._utils.models.linear_model import SkLearnLinearRegression

    model, x, mask, contribution = additive_case(seed=5)
    ours_shap = comparative.kernel_shap(model, x, 0, mask, n_samples=100,
                                        generator=torch.Generator().manual_seed(0))
    ours_lime = comparative.lime(model, x, 0, mask, n_samples=100, generator=torch.Generator().manual_seed(0))
    for i in range(2):  # Captum fits one example at a time
        theirs_shap = captum_attr.KernelShap(model).attribute(x[i: i + 1], target=0, baselines=0.0,
                                                              feature_mask=mask, n_samples=100)
        theirs_lime = captum_attr.Lime(model, interpretable_model=SkLearnLinearRegression()).attribute(
            x[i: i + 1], target=0, baselines=0.0, feature_mask=mask, n_samples=100)
        assert torch.allclose(ours_shap[i: i + 1], theirs_shap.double(), atol=1e-5)
        assert torch.allclose(ours_lime[i: i + 1], theirs_lime.double(), atol=1e-5)


def test_shap_and_lime_are_batched_and_seeded():
    model = CountingModel(tiny_cnn())
    x = torch.rand(2, 3, 8, 8)
    a = comparative.lime(model, x, n_samples=30, batch_size=7, generator=torch.Generator().manual_seed(0))
    assert max(model.batches) <= 7 and sum(model.batches) == 2 + 2 * 30
    b = comparative.lime(model, x, n_samples=30, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-5)
    model.batches.clear()
    comparative.kernel_shap(model, x, n_samples=30, batch_size=16, generator=torch.Generator().manual_seed(0))
    assert max(model.batches) <= 16 and sum(model.batches) == 2 + 2 * 32


def test_bad_arguments_are_value_errors():
    model, x = tiny_cnn(), torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="feature_mask"):
        comparative.kernel_shap(model, x, feature_mask=torch.zeros(5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="n_samples"):
        comparative.lime(model, x, n_samples=0)
    with pytest.raises(ValueError, match="kernel_width"):
        comparative.lime(model, x, kernel_width=0)
    with pytest.raises(ValueError, match="steps"):
        comparative.deletion_curve(model, x, x, steps=0)
    with pytest.raises(ValueError, match="0 to 4"):
        comparative.deletion_curve(model, x, x, target=5)


# %% The sanity check --------------------------------------------------------------------------


def test_randomising_a_copy_changes_the_gradient_and_leaves_the_model_alone():
    import utils

    vanilla = lecture("01_vanilla_gradient_saliency")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 1, 6, 6)
    rng_before = torch.get_rng_state()
    original = vanilla.vanilla_gradient(model, x, 0)
    stages = comparative.randomisation_stages(model)
    assert [names for _, names in stages] == [["3"], ["3", "0"]]  # from the output backwards
    seen = []
    for label, randomised in comparative.cascading_randomisation(model, stages, seed=0):
        assert randomised is not model
        seen.append(utils.rank_correlation(original, vanilla.vanilla_gradient(randomised, x, 0)))
    assert all(s < 0.9 for s in seen)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_lime_and_kernel_shap_refuse_nan_and_infinity_with_a_value_error():
    model, x = tiny_cnn(), torch.rand(1, 3, 8, 8)
    for bad in (float("nan"), float("inf")):
        y = x.clone()
        y[0, 1, 2, 3] = bad
        for method in (comparative.lime, comparative.kernel_shap):
            with pytest.raises(ValueError, match="non-finite"):
                method(model, y, n_samples=20)
        with pytest.raises(ValueError, match="non-finite"):
            comparative.lime(model, x, baseline=bad, n_samples=20)


# %% Agreement with a mask and with people ------------------------------------------------------


def test_relevance_mass_and_rank_by_hand():
    saliency = torch.tensor([[[4.0, 0.0, 1.0], [0.0, 3.0, 2.0]]])  # (1, 2, 3): a 3-D map, taken as given
    mask = torch.tensor([[[True, False, False], [False, False, True]]])  # K = 2
    assert comparative.relevance_mass(saliency, mask).item() == pytest.approx(6 / 10)
    assert comparative.relevance_rank(saliency, mask).item() == pytest.approx(1 / 2)  # top 2: 4 (in), 3 (out)
    assert comparative.relevance_mass(torch.zeros(1, 2, 3), mask).item() == 0.0  # an all-zero map
    # 4-D: summed absolute values over channels; ties ranked in flattened order (stable).
    colour = torch.stack([saliency, -saliency], 1)  # (1, 2, 2, 3) reduces to 2 * saliency
    assert comparative.relevance_mass(colour, mask).item() == pytest.approx(6 / 10)
    ties = torch.ones(1, 2, 3)
    assert comparative.relevance_rank(ties, mask).item() == pytest.approx(1 / 2)  # top 2 = pixels 0 and 1
    with pytest.raises(ValueError, match="no pixel"):
        comparative.relevance_mass(saliency, torch.zeros(1, 2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        comparative.relevance_rank(saliency, torch.ones(1, 3, 2, dtype=torch.bool))


def quantus_formulas(a: torch.Tensor, s: torch.Tensor) -> tuple[list[float], list[float]]:
    """Relevance mass and rank accuracy as Quantus 0.6.0 computes them (its localisation metrics'
    evaluate_batch, read from its source): mass = sum(a[s]) / sum(a); rank: the share of s among the
    |s| pixels of largest a, found by argsort(-a)."""
    mass, rank = [], []
    for a_i, s_i in zip(a.flatten(1).double().numpy(), s.flatten(1).numpy()):
        mass.append(float(a_i[s_i].sum() / a_i.sum()))
        k = int(s_i.sum())
        rank.append(float(s_i[torch.from_numpy(-a_i).argsort(stable=True).numpy()[:k]].sum() / k))
    return mass, rank


def test_relevance_mass_and_rank_equal_quantus_formulas_on_random_maps():
    torch.manual_seed(0)
    saliency = torch.randn(4, 3, 9, 11)  # reduced: sum |.| over channels, no ties
    mask = torch.rand(4, 9, 11) < 0.3
    mass, rank = quantus_formulas(comparative.reduced_map(saliency), mask)
    assert comparative.relevance_mass(saliency, mask).tolist() == pytest.approx(mass, abs=1e-6)
    assert comparative.relevance_rank(saliency, mask).tolist() == pytest.approx(rank, abs=1e-6)


def test_relevance_mass_and_rank_equal_quantus_itself():
    quantus = pytest.importorskip("quantus")
    torch.manual_seed(1)
    saliency = torch.randn(3, 1, 8, 8)
    mask = torch.rand(3, 8, 8) < 0.4
    a = comparative.reduced_map(saliency)[:, None].numpy()  # (N, 1, H, W): the reduced map Quantus is given
    s = mask[:, None].numpy().astype(float)
    x = torch.rand(3, 1, 8, 8).numpy()
    y = torch.zeros(3, dtype=torch.long).numpy()
    kwargs = dict(disable_warnings=True, display_progressbar=False, abs=False, normalise=False)
    mass = quantus.RelevanceMassAccuracy(**kwargs)(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s)
    rank = quantus.RelevanceRankAccuracy(**kwargs)(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s)
    assert comparative.relevance_mass(saliency, mask).tolist() == pytest.approx(list(mass), abs=1e-6)
    assert comparative.relevance_rank(saliency, mask).tolist() == pytest.approx(list(rank), abs=1e-6)


def test_human_agreement_is_the_pearson_correlation_by_hand():
    saliency = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    attention = torch.tensor([[[0.0, 1.0], [1.0, 3.0]]])
    r, h = saliency.flatten() - 2.5, attention.flatten() - 1.25
    cc = float((r * h).sum() / (r.norm() * h.norm()))
    assert comparative.human_agreement(saliency, attention).item() == pytest.approx(cc, abs=1e-6)
    assert comparative.human_agreement(saliency, 2 * attention + 1).item() == pytest.approx(cc, abs=1e-6)
    assert comparative.human_agreement(saliency, torch.ones(1, 2, 2)).item() == 0.0  # constant: 0
    assert comparative.human_agreement(-saliency[:, None], attention).item() == pytest.approx(cc, abs=1e-6)


# %% Stability: Captum's sensitivity_max and infidelity fed the same draws -----------------------


def same_draws(kind: str, shape, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        return torch.empty(shape).uniform_(-scale, scale, generator=g)
    return torch.randn(shape, generator=g) * scale


def test_max_sensitivity_equals_captum_sensitivity_max():
    from captum.metrics import sensitivity_max

    vanilla = lecture("01_vanilla_gradient_saliency")
    gxi = lecture("02_gradient_input_saliency")
    torch.manual_seed(0)
    model, x = tiny_cnn().eval(), torch.rand(3, 3, 8, 8)
    for method in (vanilla.vanilla_gradient, gxi.gradient_x_input):
        ours = comparative.max_sensitivity(method, model, x, target=1, radius=0.05, n_samples=4, batch_size=5,
                                           generator=torch.Generator().manual_seed(7))
        d = same_draws("uniform", (12, 3, 8, 8), 0.05, 7)

        def explain(inp, target):
            with torch.enable_grad():
                return (method(model, inp[0] if isinstance(inp, tuple) else inp, target),)

        theirs = sensitivity_max(explain, x, perturb_func=lambda inp, radius: inp + d, perturb_radius=0.05,
                                 n_perturb_samples=4, target=1)
        assert ours.shape == (3,)
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_max_sensitivity_counts_a_zero_map_as_norm_one_and_resolves_the_target_once():
    model, x = tiny_cnn().eval(), torch.rand(2, 3, 8, 8)
    seen = []

    def zero_then_ones(m, inp, c):
        seen.append(c.tolist())
        return torch.zeros_like(inp) if len(seen) == 1 else torch.ones_like(inp)

    out = comparative.max_sensitivity(zero_then_ones, model, x, n_samples=3,
                                      generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, torch.full((2,), math.sqrt(3 * 8 * 8)))  # ||1 - 0|| / 1
    predicted = model(x).argmax(1).tolist()
    assert seen[0] == predicted and seen[1] == [c for c in predicted for _ in range(3)]


def test_infidelity_equals_captum_infidelity():
    from captum.metrics import infidelity

    torch.manual_seed(0)
    model, x = tiny_cnn().eval(), torch.rand(3, 3, 8, 8)
    attributions = torch.randn(3, 3, 8, 8)
    ours = comparative.infidelity(model, x, attributions, target=2, n_samples=5, noise_std=0.2, batch_size=4,
                                  generator=torch.Generator().manual_seed(3))
    noise = same_draws("normal", (15, 3, 8, 8), 0.2, 3)
    theirs = infidelity(model, lambda inp: (noise, inp - noise), x, attributions, target=2,
                        n_perturb_samples=5, normalize=False)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_infidelity_is_zero_for_the_exact_attributions_of_a_linear_model():
    model, x = linear_model(3 * 4 * 4), torch.rand(2, 3, 4, 4, dtype=torch.float64)
    exact = model[1].weight[1].detach().view(1, 3, 4, 4).expand_as(x)  # f(x) - f(x - I) = w . I exactly
    out = comparative.infidelity(model, x, exact, target=1, n_samples=8,
                                 generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float64 and out.abs().max() < 1e-20
    zero = comparative.infidelity(model, x, torch.zeros_like(x), target=1, n_samples=8,
                                  generator=torch.Generator().manual_seed(0))
    assert (zero > 0).all()  # the zero map predicts no change: its infidelity is the change's square


def test_scale_free_infidelity_equals_captum_normalized_and_ignores_a_maps_units():
    from captum.metrics import infidelity

    torch.manual_seed(2)
    model, x = tiny_cnn().eval(), torch.rand(3, 3, 8, 8)
    attributions = torch.randn(3, 3, 8, 8)
    ours = comparative.infidelity(model, x, attributions, target=1, n_samples=6, noise_std=0.2, batch_size=5,
                                  generator=torch.Generator().manual_seed(4), normalize=True)
    noise = same_draws("normal", (18, 3, 8, 8), 0.2, 4)
    theirs = infidelity(model, lambda inp: (noise, inp - noise), x, attributions, target=1,
                        n_perturb_samples=6, normalize=True)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    scaled = comparative.infidelity(model, x, 1000 * attributions, target=1, n_samples=6, noise_std=0.2,
                                    generator=torch.Generator().manual_seed(4), normalize=True)
    assert torch.allclose(ours, scaled, rtol=1e-4)  # units do not count
    zero = comparative.infidelity(model, x, torch.zeros_like(x), target=1, n_samples=6, noise_std=0.2,
                                  generator=torch.Generator().manual_seed(4), normalize=True)
    plain = comparative.infidelity(model, x, torch.zeros_like(x), target=1, n_samples=6, noise_std=0.2,
                                   generator=torch.Generator().manual_seed(4))
    assert torch.allclose(zero, plain)  # beta = 0 for a zero map: the output's own change


# %% The chance lines, by hand --------------------------------------------------------------------


def test_input_map_is_the_absolute_image_summed_over_channels():
    x = torch.tensor([[[[1.0, -2.0]], [[0.5, 0.0]]]])  # (1, 2, 1, 2)
    assert torch.equal(comparative.input_map(x), torch.tensor([[[1.5, 2.0]]]))


def test_edge_map_is_the_sobel_magnitude_with_a_repeated_border():
    grey = torch.zeros(1, 5, 6, dtype=torch.float64)
    grey[:, :, 3:] = 1.0  # a vertical step between columns 2 and 3
    edges = comparative.edge_map(grey)[0]
    # Sobel's d/dx at a column next to the step: (1 + 2 + 1) * 1 = 4; d/dy is 0 (the step is vertical).
    assert torch.allclose(edges[:, 2], torch.full((5,), 4.0, dtype=torch.float64))
    assert torch.allclose(edges[:, 3], torch.full((5,), 4.0, dtype=torch.float64))
    assert edges[:, [0, 1, 4, 5]].abs().max() == 0  # flat, and no edge at the frame
    diagonal = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0]]], dtype=torch.float64)
    gx = (0 + 2 * 1 + 1) - 0  # right column minus left column, weights 1, 2, 1: at the centre pixel
    gy = (0 + 1 * 2 + 1) - 0
    assert comparative.edge_map(diagonal)[0, 1, 1].item() == pytest.approx(math.hypot(gx, gy))


def test_centre_prior_is_a_centred_gaussian_with_sigma_a_quarter_of_the_shorter_side():
    prior = comparative.centre_prior(2, 9, 13)
    assert prior.shape == (2, 9, 13) and torch.equal(prior[0], prior[1])
    assert prior[0, 4, 6] == 1.0 and prior.max() == 1.0  # the peak at the centre pixel
    sigma = 9 / 4
    assert prior[0, 4, 6 + 3].item() == pytest.approx(math.exp(-9 / (2 * sigma ** 2)), rel=1e-6)
    assert prior[0, 0, 6].item() == pytest.approx(math.exp(-16 / (2 * sigma ** 2)), rel=1e-6)
    even = comparative.centre_prior(1, 4, 4)[0]
    assert torch.allclose(even, even.flip(0)) and torch.allclose(even, even.T)  # centred between pixels


def test_smooth_random_map_is_a_seeded_grid_of_uniform_numbers_enlarged():
    a = comparative.smooth_random_map(3, 21, 21, torch.Generator().manual_seed(0))
    b = comparative.smooth_random_map(3, 21, 21, torch.Generator().manual_seed(0))
    assert a.shape == (3, 21, 21) and torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    low = torch.rand(3, 1, 7, 7, generator=torch.Generator().manual_seed(0))
    # 3 pixels per cell: pixel 1 sits at the first cell's centre, pixel 4 at the second's
    assert torch.allclose(a[:, 1, 1], low[:, 0, 0, 0]) and torch.allclose(a[:, 4, 1], low[:, 0, 1, 0])
    assert (a[:, 1:] - a[:, :-1]).abs().max() < (low[:, 0, 1:] - low[:, 0, :-1]).abs().max() / 2  # smooth


# %% The verdict: exact signed-rank p with ties, Holm, the effect and the rule ----------------------


def test_exact_signed_rank_p_equals_scipy_exact_without_ties():
    import numpy as np
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    for m in (1, 2, 6, 9, 14, 25):
        d = rng.normal(0.3, 1.0, size=m)
        p, effect, used = comparative.signed_rank_test(d)
        assert used == m
        assert p == pytest.approx(wilcoxon(d, method="exact").pvalue, rel=1e-12)
        assert effect == pytest.approx(brute_force_signed_rank(d)[1], rel=1e-12)


def test_exact_signed_rank_p_with_ties_and_zeros_by_hand():
    # d = (1, 1, -1, 1, 0): the zero is dropped; |d| all tie, mid-rank 2.5 each; W+ = 7.5 of 10.
    # 2^4 assignments give W+ = 2.5 k with k ~ Binomial(4, 1/2); P(W+ >= 7.5) = P(k >= 3) = 5/16.
    p, effect, m = comparative.signed_rank_test([1.0, 1.0, -1.0, 1.0, 0.0])
    assert m == 4 and p == pytest.approx(10 / 16) and effect == pytest.approx(0.5)
    p, effect, m = comparative.signed_rank_test([2.0, 2.0, 2.0, 2.0])  # the LIME case: exact 0.125
    assert p == pytest.approx(0.125) and effect == 1.0
    import numpy as np

    rng = np.random.default_rng(1)
    for m in (6, 9, 13):
        d = rng.integers(-3, 4, size=m).astype(float)  # many ties, some zeros
        assert comparative.signed_rank_test(d)[0] == pytest.approx(brute_force_signed_rank(d)[0], rel=1e-12)
    assert math.isnan(comparative.signed_rank_test([0.0, 0.0])[0])


def test_above_25_differences_the_normal_approximation_without_correction():
    import numpy as np
    from scipy.stats import wilcoxon

    d = np.random.default_rng(2).normal(0.2, 1, size=30)
    assert comparative.signed_rank_test(d)[0] == pytest.approx(
        wilcoxon(d, correction=False, method="approx").pvalue)


def test_holm_by_hand_and_untested_rows_stay_empty():
    adjusted = comparative.holm([0.01, math.nan, 0.04, 0.03, 0.5])
    # T = 4: 0.01 * 4 = 0.04; 0.03 * 3 = 0.09; 0.04 * 2 = 0.08 -> 0.09 (never below an earlier step); 0.5
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1])
    assert adjusted[3] == pytest.approx(0.09) and adjusted[2] == pytest.approx(0.09)
    assert adjusted[4] == pytest.approx(0.5)
    assert holm_by_hand([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_the_verdict_rule_in_its_order():
    assert comparative.is_uninformative("pointing game", "higher", 0.96)
    assert not comparative.is_uninformative("pointing game", "higher", 0.94)
    assert comparative.is_uninformative("human agreement (CC)", "higher", 0.91)  # 5% of [-1, 1] is 0.1
    assert comparative.is_uninformative("abs. rank corr. after randomisation", "lower", 0.04)
    assert not comparative.is_uninformative("deletion AUC", "lower", 0.0)  # no bounds listed: never
    assert comparative.verdict(True, 20, 0.001, 1.0, "higher") == "uninformative"
    assert comparative.verdict(False, 5, 0.001, 1.0, "higher") == "too few inputs"
    assert comparative.verdict(False, 6, 0.05, 1.0, "higher") == "no difference"
    assert comparative.verdict(False, 6, 0.01, 0.8, "higher") == "better"
    assert comparative.verdict(False, 6, 0.01, 0.8, "lower") == "worse"
    assert comparative.overall(["better", "no difference"]) == "no difference"
    assert comparative.overall(["better", "uninformative"]) == "uninformative"
    assert comparative.overall(["better", "better"]) == "better"


def test_human_agreement_can_leave_a_constant_map_undefined():
    flat = torch.ones(1, 2, 2)
    attention = torch.tensor([[[0.0, 1.0], [1.0, 3.0]]])
    assert math.isnan(comparative.human_agreement(flat, attention, undefined=math.nan).item())


def test_the_sanity_checks_correlation_ignores_pixels_both_maps_leave_at_zero():
    from demos.comparison_measures import correlation_where_nonzero

    a = torch.zeros(10, 10)
    b = torch.zeros(10, 10)
    a[0, :4] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b[0, :4] = torch.tensor([4.0, 3.0, 2.0, 1.0])
    import utils

    assert utils.rank_correlation(a, b) > 0.5  # 96 shared zeros make reversed maps look alike
    assert correlation_where_nonzero(a, b) == pytest.approx(-1.0)
    assert math.isnan(correlation_where_nonzero(a, torch.zeros(10, 10)))  # constant: undefined


# %% The ground truth and the script -------------------------------------------------------------


def test_object_polygons_lie_inside_their_photos():
    from PIL import Image

    import utils

    objects = evaluation.load_objects()
    assert {o["image"] for o in objects} >= {utils.COMPOSITE, *utils.PHOTOS}
    for o in objects:
        with Image.open(utils.DATA_DIR / o["image"]) as photo:
            width, height = photo.size
        assert len(o["polygon"]) >= 3
        assert all(0 <= px <= width and 0 <= py <= height for px, py in o["polygon"])
        assert all(0 <= c < 1000 for c in o["classes"])


PLAUSIBLE = ("pointing game", "relevance mass", "relevance rank", "human agreement (CC)")
API_BOUNDS = {"pointing game": (0, 1), "relevance mass": (0, 1), "relevance rank": (0, 1),
              "human agreement (CC)": (-1, 1), "seed agreement": (-1, 1),
              "abs. rank corr. after randomisation": (0, 1)}
HIGHER = {"insertion AUC", "pointing game", "relevance mass", "relevance rank", "human agreement (CC)",
          "seed agreement"}


def api_chance_lines(track: str, measure: str) -> list[str]:
    """The chance lines the course's contract (its fourth edition of lecture 8's verdicts) names for a measure,
    written out here from its text, not read from the code."""
    if measure in PLAUSIBLE:
        return ["chance: input map" if track == "mnist" else "chance: edge map", "chance: centre prior"]
    if measure == "max-sensitivity":
        return ["chance: random map redrawn"]
    if measure in ("seed agreement", "abs. rank corr. after randomisation"):
        return ["chance: two random maps"]
    return ["chance: smooth random map"]


def brute_force_signed_rank(d) -> tuple[float, float, int]:
    """(p, effect, m) by enumerating all 2^m sign assignments of scipy's mid-ranks (no dynamic programme)."""
    import numpy as np
    from scipy.stats import rankdata, wilcoxon

    d = np.asarray(d, dtype=float)
    d = d[d != 0]
    m = len(d)
    if m == 0:
        return math.nan, math.nan, 0
    r = rankdata(np.abs(d))
    up, down = r[d > 0].sum(), r[d < 0].sum()
    effect = (up - down) / (up + down)
    if m > 20:
        return float(wilcoxon(d, correction=False, method="approx").pvalue), effect, m
    signs = (np.arange(2 ** m)[:, None] >> np.arange(m)) & 1  # (2^m, m): every assignment
    sums = signs @ r
    p = 2 * min((sums <= up + 1e-9).mean(), (sums >= up - 1e-9).mean())
    return min(1.0, p), effect, m


def holm_by_hand(p: list[float]) -> list[float]:
    """Holm's step-down adjustment, written from its definition: max over j <= k of (T - j + 1) p_(j)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    T, out = len(p), [0.0] * len(p)
    for k, i in enumerate(order):
        out[i] = min(1.0, max((T - j) * p[order[j]] for j in range(k + 1)))
    return out


def verdicts_from_measurements(folder, track):
    """Every row of the guide CSV again, from the measurements CSV alone: the chance lines the contract names,
    a brute-force exact test, Holm, the rank-biserial effect and the verdict rule."""
    values: dict = {}
    with open(folder / f"08_measurements_{track}.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            values.setdefault((row["method"], row["measure"]), {})[row["input"]] = float(row["value"])
    with open(folder / f"08_method_guide_{track}.csv", newline="") as handle:
        guide = list(csv.DictReader(handle))
    columns = ["method", "measure", "direction", "median", "versus", "n", "p_value", "p_holm", "effect", "verdict"]
    assert guide and list(guide[0]) == columns
    expected_rows = {(m, k, v) for (m, k) in values if not m.startswith("chance:")
                     for v in api_chance_lines(track, k)}
    assert {(r["method"], r["measure"], r["versus"]) for r in guide} == expected_rows
    found = []
    for row in guide:
        mine, chance = values[row["method"], row["measure"]], values.get((row["versus"], row["measure"]), {})
        direction = "higher" if row["measure"] in HIGHER or row["measure"].startswith("sensitivity-n") else "lower"
        assert row["direction"] == direction
        assert float(row["median"]) == pytest.approx(statistics.median(mine.values()), rel=1e-6)
        both = [t for t in mine if t in chance]
        assert int(row["n"]) == len(both)
        p, effect, m = brute_force_signed_rank([mine[t] - chance[t] for t in both])
        low, high = API_BOUNDS.get(row["measure"], (None, None))
        best = high if direction == "higher" else low
        useless = low is not None and bool(chance) and \
            abs(statistics.median(chance.values()) - best) <= 0.05 * (high - low)
        tested = not useless and m >= 6
        found.append((row, p if tested else math.nan, effect, m, useless))
    tested_p = [p for _, p, *_ in found if not math.isnan(p)]
    adjusted = iter(holm_by_hand(tested_p))
    for row, p, effect, m, useless in found:
        if math.isnan(p):
            assert row["p_value"] == row["p_holm"] == row["effect"] == ""
            expected = "uninformative" if useless else "too few inputs"
        else:
            p_holm = next(adjusted)
            assert float(row["p_value"]) == pytest.approx(p, rel=1e-6, abs=1e-12)
            assert float(row["p_holm"]) == pytest.approx(p_holm, rel=1e-6, abs=1e-12)
            assert float(row["effect"]) == pytest.approx(effect, rel=1e-6, abs=1e-12)
            if p_holm >= 0.05:
                expected = "no difference"
            else:
                expected = "better" if (effect > 0) == (row["direction"] == "higher") else "worse"
        assert row["verdict"] == expected, row
    return guide


def test_main_quick_on_the_digit_track(tmp_path, capsys):
    comparative.main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "v(all) - v(none)" in out and "Right and wrong" in out and "No row of this run was tested" in out
    assert "Left out, with the reason" in out
    for name in ("side_by_side", "deletion_insertion", "pointing_game", "sensitivity_n", "stability",
                 "sanity_check", "right_and_wrong"):
        assert (tmp_path / f"08_{name}_mnist.png").is_file()
    guide = verdicts_from_measurements(tmp_path, "mnist")
    assert {row["verdict"] for row in guide} <= {"too few inputs", "uninformative"}
    assert "fewer than 6 non-zero differences" in (tmp_path / "08_method_guide_mnist.md").read_text()


def test_a_small_full_digit_run_has_verdicts_that_follow_from_its_measurements(tmp_path, monkeypatch):
    """Not --quick: 8 digits and small sample counts, so that the Wilcoxon tests are real."""
    small = dict(comparison_run.DIGIT_RUN, rows=8, steps=6, subsets=8, smooth=4, ig=4, lime=40, shap=40, draws=2,
                 infidelity=4, sanity=24, stages=2, sanity_rows=6, seed_rows=6, sizes=(0.05,))
    monkeypatch.setattr(comparison_run, "DIGIT_RUN", small)
    comparative.main(["--model", "mnist", "--out-dir", str(tmp_path)])
    guide = verdicts_from_measurements(tmp_path, "mnist")
    assert {"better", "worse", "no difference"} & {row["verdict"] for row in guide}
    markdown = (tmp_path / "08_method_guide_mnist.md").read_text()
    said = {}
    for row in guide:
        said.setdefault((row["method"], row["measure"]), []).append(row["verdict"])
    order = ["worse", "no difference", "uninformative", "too few inputs", "better"]
    for (method, measure), verdicts in said.items():  # every sentence follows from the rows
        least = min(verdicts, key=order.index)
        line = next(l for l in markdown.splitlines() if l.startswith(f"- **{method}**"))
        words = {"better": "better than every chance line on", "worse": "worse than a chance line on"}
        if least in words:
            assert measure in line.split(words[least], 1)[1].split(";")[0]
    assert "most stable first" not in markdown


def test_main_quick_on_the_imagenet_track(tmp_path, cached_small_resnet18, capsys):
    comparative.main(["--quick", "--image", str(ROOT / "data" / "grace_hopper.jpg"), "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out  # one photo: the pipeline is the point (the digit tests measure verdicts)
    assert "Agreement with the object (1 input;" in out
    for name in ("side_by_side", "deletion_insertion", "pointing_game", "sensitivity_n", "stability",
                 "sanity_check"):
        assert (tmp_path / f"08_{name}_imagenet.png").is_file()
    verdicts_from_measurements(tmp_path, "imagenet")


def test_annotations_are_read_per_input_and_bad_ones_are_one_line(tmp_path, capsys):
    from PIL import Image

    folder, out = tmp_path / "maps", str(tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        comparative.main(["--quick", "--model", "mnist", "--annotations", str(folder), "--out-dir", str(out)])
    assert exit_info.value.code == 2 and "no such folder" in capsys.readouterr().err
    folder.mkdir()
    for i in range(3):  # the quick digit run has 4 inputs: digit_03 is missing
        Image.new("L", (56, 40), 255 * (i % 2)).save(folder / f"digit_{i:02d}.png")
    with pytest.raises(SystemExit) as exit_info:
        comparative.main(["--quick", "--model", "mnist", "--annotations", str(folder), "--out-dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "digit_03.png" in err
    (folder / "digit_03.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit) as exit_info:
        comparative.main(["--quick", "--model", "mnist", "--annotations", str(folder), "--out-dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "digit_03.png" in err
    maps = evaluation.read_annotations(folder, ["digit_00", "digit_01"], (28, 28))
    assert maps[0].shape == (28, 28) and float(maps[0].max()) == 0.0 and float(maps[1].min()) == 1.0


def test_a_bad_flag_is_one_line(tmp_path, capsys):
    assert_bad_flag(comparative.main, ["--steps", "0"], tmp_path, capsys)
    assert_bad_flag(comparative.main, ["--lime-samples", "-3"], tmp_path, capsys)
