"""Lecture 6: guided backpropagation by hand, against Captum, and with nothing left patched."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop
from torch import nn

import utils
from conftest import lecture, random_resnet18
from helpers import Exploding, hooks_left, twins

module = lecture("06_guided_backpropagation")
guided_backprop, guided_relu = module.guided_backprop, module.guided_relu

PATCHED = [(F, "relu"), (F, "relu_"), (torch, "relu"), (torch, "relu_"), (torch.Tensor, "relu"),
           (torch.Tensor, "relu_"), (F, "relu6"), (F, "hardtanh")]


def relu_state() -> list[tuple[object, bool]]:
    """Every patched name: the object it resolves to, and whether the owner holds it itself."""
    return [(getattr(owner, name), name in vars(owner)) for owner, name in PATCHED]


ORIGINAL = relu_state()


def assert_nothing_left_patched() -> None:
    now = relu_state()
    assert all(a is b and own_a == own_b for (a, own_a), (b, own_b) in zip(now, ORIGINAL))
    assert "relu" not in vars(torch.Tensor)  # it lives on the C base class, and stays there


# --- hand-derived answers -----------------------------------------------------------------


def test_a_two_layer_network_by_hand():
    """S = w2 . ReLU(W1 x): dS/dx = W1^T (w2 * [W1 x > 0]); guided: W1^T (max(w2, 0) * [W1 x > 0])."""
    W1 = torch.tensor([[1.0, -2.0], [3.0, 1.0], [-1.0, 1.0]])
    w2 = torch.tensor([2.0, -1.0, 4.0])
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(W1)
        model[2].weight.copy_(w2[None])
    x = torch.tensor([[1.0, 0.5]])  # W1 x = [0, 3.5, -0.5]: only unit 1 is active
    active = (W1 @ x[0] > 0).float()
    torch.testing.assert_close(guided_backprop(model, x, 0)[0], W1.T @ (w2.clamp(min=0) * active))
    torch.testing.assert_close(guided_backprop(model, x, 0)[0], torch.zeros(2))  # w2[1] < 0 is blocked
    x = torch.tensor([[-1.0, 1.0]])  # W1 x = [-3, -2, 2]: only unit 2, with w2 = 4 > 0
    torch.testing.assert_close(guided_backprop(model, x, 0)[0], W1.T @ (w2.clamp(min=0) * (W1 @ x[0] > 0)))


def test_without_relus_it_is_the_plain_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x = torch.randn(2, 3, 8, 8)
    vanilla = lecture("01_vanilla_gradient_saliency").vanilla_gradient(model, x, [0, 2], absolute=False)
    torch.testing.assert_close(guided_backprop(model, x, [0, 2]), vanilla)


def test_relu6_by_hand_guided_at_zero_and_saturated_at_six():
    """S = w2 . ReLU6(W1 x): guided, dS/dx = W1^T (max(w2, 0) * [0 < W1 x < 6])."""
    W1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [-1.0, 0.0]])
    w2 = torch.tensor([3.0, -2.0, 5.0, 1.0])
    for relu6 in (nn.ReLU6(), nn.ReLU6(inplace=True)):
        model = nn.Sequential(nn.Linear(2, 4, bias=False), relu6, nn.Linear(4, 1, bias=False))
        with torch.no_grad():
            model[0].weight.copy_(W1)
            model[2].weight.copy_(w2[None])
        x = torch.tensor([[2.0, 1.0]])  # W1 x = [2, 1, 6.0, -2]: unit 2 sits at the clamp, unit 3 below 0
        z = W1 @ x[0]
        passes = ((z > 0) & (z < 6)).float()  # units 0 and 1 only
        expected = W1.T @ (w2.clamp(min=0) * passes)  # unit 1's negative weight is blocked too
        torch.testing.assert_close(guided_backprop(model, x, 0)[0], expected)
        torch.testing.assert_close(expected, torch.tensor([3.0, 0.0]))


class ReLU6Everywhere(nn.Module):
    """nn.ReLU6 (in place or not, one module used twice), F.relu6 and F.hardtanh(x, 0, 6)."""

    def __init__(self, twin: bool = False) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.layers = nn.ModuleList(nn.Linear(6, 6) for _ in range(4))
        self.out = nn.Linear(6, 3)
        self.twin = twin  # ReLU6 written as an nn.ReLU module and then a clamp, which Captum guides
        self.act = nn.ReLU() if twin else nn.ReLU6(inplace=True)

    def relu6(self, x):
        return self.act(x).clamp(max=6) if self.twin else self.act(x)

    def forward(self, x):
        a, b, c, d = self.layers
        x = self.relu6(3 * a(x))  # large pre-activations, so some units saturate at 6
        x = self.relu6(3 * b(x))  # the same module again
        x = self.act(3 * c(x)).clamp(max=6) if self.twin else F.relu6(3 * c(x))
        x = self.act(3 * d(x)).clamp(max=6) if self.twin else F.hardtanh(3 * d(x), 0.0, 6.0)
        return self.out(x)


def test_relu6_in_every_form_equals_captum_on_the_relu_then_clamp_twin():
    x = 2 * torch.randn(8, 6)
    model, twin = ReLU6Everywhere().eval(), ReLU6Everywhere(twin=True).eval()
    torch.testing.assert_close(model(x), twin(x))
    with torch.no_grad():
        pre = 3 * model.layers[0](x)
    assert (pre > 6).any() and (pre < 0).any()  # both ends of the ReLU6 are exercised
    ours = guided_backprop(model, x, [0, 1, 2, 0, 1, 2, 0, 1])
    theirs = GuidedBackprop(twin).attribute(x, target=[0, 1, 2, 0, 1, 2, 0, 1])
    torch.testing.assert_close(ours, theirs)
    assert_nothing_left_patched()


def test_a_hardtanh_that_is_not_a_relu6_keeps_its_ordinary_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Hardtanh(), nn.Linear(5, 2)).eval()  # clamps to [-1, 1]
    x = torch.randn(3, 4)
    vanilla = lecture("01_vanilla_gradient_saliency").vanilla_gradient(model, x, 1, absolute=False)
    torch.testing.assert_close(guided_backprop(model, x, 1), vanilla)


# --- trusted references ------------------------------------------------------------------------


def test_equals_captum_on_resnet18_with_its_in_place_relu_used_twice_per_block():
    model = random_resnet18()
    x = torch.randn(2, 3, 64, 64)
    theirs = GuidedBackprop(model).attribute(x, target=[3, 7])
    torch.testing.assert_close(guided_backprop(model, x, [3, 7]), theirs)
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    assert_nothing_left_patched()


def test_equals_captum_on_a_sequential_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3),
                          nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(6 * 2 * 2, 5), nn.ReLU(),
                          nn.Linear(5, 3))
    x = torch.randn(3, 3, 8, 8)
    theirs = GuidedBackprop(model).attribute(x, target=1)
    torch.testing.assert_close(guided_backprop(model.eval(), x, 1), theirs)


def test_functional_relus_equal_their_module_twin_and_captum():
    functional, modules = twins()
    x = torch.randn(3, 3, 8, 8)
    ours = guided_backprop(functional, x, [0, 2, 4])
    torch.testing.assert_close(ours, guided_backprop(modules, x, [0, 2, 4]))
    torch.testing.assert_close(ours, GuidedBackprop(modules).attribute(x, target=[0, 2, 4]))
    # ... and the guided rule really ran: the plain gradient is different here.
    vanilla_gradient = lecture("01_vanilla_gradient_saliency").vanilla_gradient
    vanilla = vanilla_gradient(functional, x, [0, 2, 4], absolute=False)
    assert not torch.allclose(ours, vanilla)


class EveryForm(nn.Module):
    """All six spellings of a ReLU, in place or not, between four linear layers."""

    def __init__(self, in_place: bool) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.layers = nn.ModuleList(nn.Linear(6, 6) for _ in range(4))
        self.out = nn.Linear(6, 3)
        self.in_place = in_place

    def forward(self, x):
        a, b, c, d = self.layers
        if self.in_place:
            x = F.relu(a(x), inplace=True)
            x = torch.relu_(b(x))
            x = F.relu_(c(x))
            x = d(x).relu_()
        else:
            x = F.relu(a(x))
            x = torch.relu(b(x))
            x = F.relu(c(x))
            x = d(x).relu()
        return self.out(x)


def test_every_functional_and_in_place_form_is_guided():
    twin = nn.Sequential()
    reference = EveryForm(False)
    for linear in reference.layers:
        twin.extend([linear, nn.ReLU()])
    twin.append(reference.out)
    x = torch.randn(5, 6)
    expected = GuidedBackprop(twin.eval()).attribute(x, target=[0, 1, 2, 0, 1])
    for in_place in (False, True):
        model = EveryForm(in_place).eval()
        torch.testing.assert_close(guided_backprop(model, x, [0, 1, 2, 0, 1]), expected)
    assert_nothing_left_patched()


def test_the_forward_pass_is_unchanged_inside_the_block():
    functional, modules = twins()
    x = torch.randn(2, 3, 8, 8)
    before = functional(x), modules(x)
    with guided_relu():
        inside = functional(x), modules(x)
    for a, b in zip(before, inside):
        torch.testing.assert_close(a, b)


# --- nothing left behind ----------------------------------------------------------------------


class ExplodingAfterARelu(nn.Module):
    def forward(self, x):
        F.relu(x)
        raise RuntimeError("boom")


@pytest.mark.parametrize("make_model,target,error", [
    (random_resnet18, 1000, ValueError), (random_resnet18, [1, 2, 3], ValueError),
    (ExplodingAfterARelu, None, RuntimeError), (Exploding, None, RuntimeError)])
def test_nothing_left_patched_after_an_error(make_model, target, error):
    model = make_model().train() if make_model is not random_resnet18 else make_model(seed=1).train()
    modules_before = list(model.modules())
    flags_before = [(m.training, getattr(m, "inplace", None)) for m in modules_before]
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(error):
        guided_backprop(model, x, target)
    assert_nothing_left_patched()
    assert all(a is b for a, b in zip(model.modules(), modules_before))
    assert [(m.training, getattr(m, "inplace", None)) for m in model.modules()] == flags_before
    assert not hooks_left(model) and all(p.grad is None for p in model.parameters())


def test_the_context_manager_restores_and_never_swallows():
    with pytest.raises(KeyError, match="inside"):
        with guided_relu():
            assert F.relu is not ORIGINAL[0][0] and "relu" in vars(torch.Tensor)
            raise KeyError("inside")
    assert_nothing_left_patched()


def test_inputs_untouched_result_detached_under_no_grad():
    functional, _ = twins()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64).requires_grad_(True)
    before = x.detach().clone()
    with torch.no_grad():
        out = guided_backprop(functional.double(), x)
    assert out.dtype == torch.float64 and out.shape == x.shape and not out.requires_grad
    assert torch.equal(x.detach(), before) and x.requires_grad and x.grad is None


def test_every_target_form_and_invalid_targets():
    functional, _ = twins()
    x = torch.randn(3, 3, 8, 8)
    predicted = functional(x).argmax(1)
    each = torch.cat([guided_backprop(functional, x[i: i + 1], int(predicted[i])) for i in range(3)])
    for target in (None, predicted.tolist(), predicted):
        torch.testing.assert_close(guided_backprop(functional, x, target), each)
    for bad in (5, -1, [0, 1], torch.tensor([[0, 1, 2]]), 1.5):
        with pytest.raises(ValueError):
            guided_backprop(functional, x, bad)
    assert_nothing_left_patched()


def test_similarity_is_one_for_the_same_map_and_ranks_are_spearman():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert utils.map_similarity(a, a) == pytest.approx((1.0, 1.0))
    assert utils.map_similarity(a, a.flip(0))[1] == pytest.approx(-1.0)
    assert utils.map_similarity(a, a ** 3)[1] == pytest.approx(1.0)  # monotone: same ranks


# --- end to end --------------------------------------------------------------------------------


def test_main_quick_on_the_imagenet_track(cached_resnet18, tmp_path, capsys):
    module.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Spearman" in out and "'Egyptian cat' and 'espresso'" in out
    for name in ["06_guided_backprop_imagenet.png", "06_guided_backprop_two_classes_imagenet.png"]:
        assert (tmp_path / name).stat().st_size > 10_000
    assert_nothing_left_patched()


def test_main_quick_on_the_mnist_track(tmp_path, capsys):
    module.main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path)])
    assert {p.name for p in tmp_path.glob("06_*")} == {"06_guided_backprop_mnist.png",
                                                         "06_guided_backprop_two_classes_mnist.png"}


# --- the checkerboard and what each figure explains --------------------------------------------


def test_checkerboard_share_by_hand():
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    board = ((rows + cols) % 2).float()[None, None]  # (1, 1, 8, 8): a pure period-2 pattern
    stripes = (rows % 2).float()[None, None]  # period 2 along the rows only
    smooth = torch.sin(rows.float() / 8 * 2 * torch.pi)[None, None]  # one period over the image
    shares = module.checkerboard_share(torch.cat([board, stripes, smooth, board + smooth]))
    assert shares[:3] == pytest.approx([1.0, 1.0, 0.0], abs=1e-12)
    # |FFT|^2: the board (+-0.5 about its mean) gives (64 * 0.5)^2 at one frequency, the sine
    # (amplitude 1) (64 / 2)^2 at each of two: a third of the energy is the board's
    assert shares[3] == pytest.approx(1 / 3, abs=1e-6)
    three = torch.rand(1, 3, 8, 8)
    summed = three.sum(1, True)  # channels are summed first
    assert module.checkerboard_share(three)[0] == pytest.approx(module.checkerboard_share(summed)[0])
    assert math.isnan(module.checkerboard_share(torch.rand(1, 1, 7, 8))[0])  # odd height: no period 2


def test_target_reaches_the_two_class_figure(monkeypatch, tmp_path, capsys):
    calls = []
    original = module.plot_two_classes
    monkeypatch.setattr(module, "plot_two_classes", lambda *args: calls.append(args) or original(*args))
    module.main(["--quick", "--model", "mnist", "--target", "5", "--out-dir", str(tmp_path)])
    (_, index, classes, *_), = calls
    assert index == 0 and classes[0] == 5 and classes[1] != 5
    assert "Similarity of the maps for '5' and" in capsys.readouterr().out


def test_the_header_says_only_what_runs_show():
    """Lecture 8 measures guided backprop's change under randomisation; lecture 6 does not claim its size."""
    assert "barely change" not in module.__doc__ and "lecture 8" in module.__doc__
    assert len(module.__doc__.strip().splitlines()) <= 25
