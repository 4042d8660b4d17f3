"""Lecture 5: Grad-CAM by hand, against Captum and pytorch-grad-cam, and end to end."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

import demos.common
import demos
import plumbing.paths
import utils
from conftest import lecture, random_resnet18, replace_network
from helpers import Exploding, hooks_left, twins

grad_cam = lecture("05_gradcam").grad_cam


class TwoDetectors(nn.Module):
    """Two channels pass through a 1x1 conv unchanged; class k is the mean of channel k.

    So dS_k/dA_j is 1/(h w) for j = k and 0 otherwise: alpha picks channel k, and
    Grad-CAM for class k is exactly A_k / (h w). Put channel 0's content on the left
    half of the image and channel 1's on the right, and the two classes' maps sit on
    opposite halves.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))  # (N, 2): global average pooling, no head weights


def halves_input(n: int = 3, size: int = 8) -> torch.Tensor:
    x = torch.rand(n, 2, size, size) + 0.1
    x[:, 0, :, size // 2:] = 0  # channel 0 lives on the left half
    x[:, 1, :, : size // 2] = 0  # channel 1 on the right half
    return x


def captum_grad_cam(model, layer_module, x, target, relu, upsample):
    cam = LayerGradCam(model, layer_module).attribute(x, target=target, relu_attributions=relu)
    return LayerAttribution.interpolate(cam, x.shape[-2:], "bilinear") if upsample else cam


# --- hand-derived answers -----------------------------------------------------------------


@pytest.mark.parametrize("relu", [True, False])
def test_each_class_map_is_its_own_half(relu):
    model, x = TwoDetectors().eval(), halves_input()
    for k in (0, 1):
        cam = grad_cam(model, x, k, "conv", relu=relu, upsample=False)  # (3, 1, 8, 8)
        torch.testing.assert_close(cam, x[:, k: k + 1] / 64)  # A_k / (h w), exactly
        other_half = cam[..., 4:] if k == 0 else cam[..., :4]
        assert torch.all(other_half == 0)  # a sum started from ones would put 1/64 * ... + 1 here


def test_class_discrimination_on_the_halves():
    model, x = TwoDetectors().eval(), halves_input(n=2)
    cam = grad_cam(model, x, [0, 1])  # one class per example, upsampled to 8x8 (the same size)
    assert cam.shape == (2, 1, 8, 8)
    assert cam[0, ..., :4].min() > 0 and torch.all(cam[0, ..., 4:] == 0)  # the cat-like class: left only
    assert cam[1, ..., 4:].min() > 0 and torch.all(cam[1, ..., :4] == 0)  # the other class: right only


def test_upsampling_is_bilinear_without_aligned_corners():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.randn(2, 3, 23, 31)
    small = grad_cam(model, x, 1, upsample=False)
    assert small.shape == (2, 1, 6, 8)
    expected = F.interpolate(small, size=(23, 31), mode="bilinear", align_corners=False)
    torch.testing.assert_close(grad_cam(model, x, 1), expected)


# --- trusted references ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return random_resnet18()


@pytest.mark.parametrize("layer_form,layer", [("module", "layer4"), ("name", "layer4"), ("name", "layer2"),
                                              ("module", "layer4.1.conv2")])
@pytest.mark.parametrize("relu,upsample", [(True, True), (False, False)])
def test_equals_captum_on_resnet18(resnet, layer_form, layer, relu, upsample):
    model = resnet
    x = torch.randn(2, 3, 64, 64)
    module = model.get_submodule(layer)
    chosen = module if layer_form == "module" else layer
    ours = grad_cam(model, x, [3, 7], chosen, relu=relu, upsample=upsample)
    theirs = captum_grad_cam(model, module, x, [3, 7], relu, upsample)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)


@pytest.fixture(scope="module")
def vgg() -> nn.Module:
    from torchvision.models import vgg11

    torch.manual_seed(0)
    model = vgg11(num_classes=10)  # its convs feed in-place ReLUs
    # A narrower head (25088 -> 64 -> 64 -> 10 instead of 4096 wide) keeps the tests fast.
    model.classifier[0], model.classifier[3] = nn.Linear(25088, 64), nn.Linear(64, 64)
    model.classifier[6] = nn.Linear(64, 10)
    return model.eval()


@pytest.mark.parametrize("layer", [None, "features.19"])
def test_equals_captum_on_vgg11(vgg, layer):
    model = vgg
    x = torch.randn(2, 3, 64, 64)
    module = utils.find_layer(model, layer)
    for relu, upsample in [(True, True), (False, False)]:
        ours = grad_cam(model, x, [1, 2], layer, relu=relu, upsample=upsample)
        torch.testing.assert_close(ours, captum_grad_cam(model, module, x, [1, 2], relu, upsample),
                                   rtol=1e-4, atol=1e-8)


def test_functional_relus_give_the_same_map_as_their_module_twin():
    functional, modules = twins()
    x = torch.randn(3, 3, 8, 8)
    for layer in ["conv1", "conv2", None]:
        ours = grad_cam(functional, x, [0, 2, 4], layer, relu=False)
        torch.testing.assert_close(ours, grad_cam(modules, x, [0, 2, 4], layer, relu=False))
        module = utils.find_layer(modules, layer)
        torch.testing.assert_close(ours, captum_grad_cam(modules, module, x, [0, 2, 4], False, True))


def min_max(maps: np.ndarray) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    low, high = flat.min(1), flat.max(1)
    return (maps - low[:, None, None]) / (1e-7 + high - low)[:, None, None]


@pytest.mark.parametrize("arch,layer", [("resnet18", "layer4"), ("resnet18", "layer3"),
                                        ("vgg11", "features.19")])
def test_equals_pytorch_grad_cam_after_min_max_scaling(resnet, vgg, arch, layer):
    """pytorch-grad-cam returns ReLU(cam), min-max scaled, cv2-resized, min-max scaled again.

    cv2's bilinear resize is the same as F.interpolate(align_corners=False) when
    upsampling, and resizing commutes with a positive affine rescaling, so its
    output is min_max(our upsampled map). It also calls model.eval() and writes
    .grad on the parameters, which are cleared afterwards. Its layer must
    not be a conv followed by an in-place ReLU: the ReLU overwrites the activation it
    stores (its forward hook keeps the conv's output tensor itself; in-place ReLUs also clash with
    full backward hooks, pytorch/pytorch#61519), so for VGG it reads the ReLU module, as its README advises.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model = resnet if arch == "resnet18" else vgg
    x = torch.randn(2, 3, 64, 64)
    ours = grad_cam(model, x, [1, 2], layer)[:, 0].numpy()
    with GradCAM(model, [model.get_submodule(layer)]) as cam:
        theirs = cam(x, [ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    model.zero_grad(set_to_none=True)
    np.testing.assert_allclose(min_max(ours), theirs, atol=1e-4)


# --- the contract ------------------------------------------------------------------------------


def test_every_target_form_explains_the_same_classes():
    functional, _ = twins()
    x = torch.randn(3, 3, 8, 8)
    predicted = functional(x).argmax(1)
    each = torch.cat([grad_cam(functional, x[i: i + 1], int(predicted[i])) for i in range(3)])
    torch.testing.assert_close(grad_cam(functional, x), each)
    torch.testing.assert_close(grad_cam(functional, x, predicted.tolist()), each)
    torch.testing.assert_close(grad_cam(functional, x, predicted), each)
    torch.testing.assert_close(grad_cam(functional, x, 2), grad_cam(functional, x, [2, 2, 2]))


@pytest.mark.parametrize("bad,words", [(5, "0 to 4"), (-1, "0 to 4"), ([0, 1], "3"), ([0, 1, 2, 3], "3"),
                                       (torch.tensor([0.0, 1.0, 2.0]), "integer"), ("cat", "int")])
def test_invalid_targets_raise_value_error(bad, words):
    functional, _ = twins()
    with pytest.raises(ValueError, match=words):
        grad_cam(functional, torch.randn(3, 3, 8, 8), bad)


def test_bad_layers_raise_value_error_naming_the_conv_layers():
    model = random_resnet18()
    with pytest.raises(ValueError, match="layer4.1.conv2"):
        grad_cam(model, torch.randn(1, 3, 32, 32), layer="layer5")
    with pytest.raises(ValueError, match="conv1"):
        grad_cam(model, torch.randn(1, 3, 32, 32), layer=nn.Conv2d(3, 3, 1))  # not inside the model
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        grad_cam(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), torch.randn(1, 3, 2, 2))


def test_a_vision_transformer_is_refused():
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=8)
    with pytest.raises(ValueError, match="transformer"):
        grad_cam(vit.eval(), torch.randn(1, 3, 32, 32))


def test_the_forward_error_propagates_and_the_hook_is_removed():
    model = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        grad_cam(model, torch.randn(1, 3, 8, 8))
    assert not hooks_left(model)


@pytest.mark.parametrize("bad_target", [None, 99])
def test_no_side_effects_also_after_an_error(bad_target):
    model = random_resnet18(num_classes=10).train()  # used as it is, never switched
    model.fc.weight.grad = torch.ones_like(model.fc.weight)  # the caller's own gradient
    x = torch.randn(2, 3, 32, 32)
    before = x.clone()
    try:
        grad_cam(model, x, bad_target, "layer3")
    except ValueError:
        assert bad_target == 99
    assert torch.equal(x, before) and not x.requires_grad
    assert model.training and not hooks_left(model)
    assert torch.equal(model.fc.weight.grad, torch.ones_like(model.fc.weight))
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith("fc."))


def test_result_is_detached_same_dtype_and_works_under_no_grad():
    functional, _ = twins()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64).requires_grad_(True)
    with torch.no_grad():
        cam = grad_cam(functional.double(), x)
    assert cam.dtype == torch.float64 and not cam.requires_grad and x.grad is None and x.requires_grad


def test_frozen_weights_still_work():
    model = random_resnet18(num_classes=10).requires_grad_(False)
    torch.testing.assert_close(grad_cam(model, torch.randn(1, 3, 32, 32), 3).shape, (1, 1, 32, 32))


# --- end to end --------------------------------------------------------------------------------


def test_main_quick_on_the_imagenet_track(cached_small_resnet18, tmp_path, capsys):
    lecture("05_gradcam").main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    for name in ["layers_imagenet", "classes_imagenet", "top3_imagenet", "networks"]:
        assert (tmp_path / f"05_gradcam_{name}.png").stat().st_size > 10_000
    assert "7x7 before upsampling to 224x224" in out and "VGG-16" not in out
    assert "equals CAM" in out  # ResNet's layer4 feeds global average pooling and one Linear


def test_main_quick_on_the_mnist_track(tmp_path, capsys):
    lecture("05_gradcam").main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path)])
    assert "7x7 before upsampling to 28x28" in capsys.readouterr().out
    expected = {f"05_gradcam_{n}_mnist.png" for n in ["layers", "classes", "top3"]}
    assert {p.name for p in tmp_path.glob("05_*")} == expected


def test_vgg16_without_weights_is_skipped_in_one_line(cached_resnet18, capsys):
    module = lecture("05_gradcam")
    args = utils.make_parser(None).parse_args(["--model", "resnet18"])
    args.layer, args.quick = None, False
    demo = demos.setup_demo(args, n_images=1, images=module.PHOTOS)
    rows = module.other_networks(args, demo)
    out = capsys.readouterr().out
    assert [r[0] for r in rows] == ["digit CNN"]
    assert len([line for line in out.splitlines() if "VGG-16" in line]) == 1


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        lecture("05_gradcam").main(argv)
    err = capsys.readouterr().err
    return exit_info.value.code, err


def test_cli_unknown_layer(cached_resnet18, tmp_path, capsys):
    code, err = run_cli(["--quick", "--layer", "layer9", "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "layer4" in err and "conv" in err
    assert not (tmp_path / "out").exists()


def test_cli_a_model_without_convolutions(monkeypatch, tmp_path, capsys):
    def no_convolution() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 1000))

    replace_network(monkeypatch, "resnet18", no_convolution)
    code, err = run_cli(["--quick", "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no nn.Conv2d" in err
    assert not (tmp_path / "out").exists()


def test_cli_a_vision_transformer_offline_without_weights(tmp_path, capsys):
    code, err = run_cli(["--model", "vit_b_16", "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "Vision Transformer" in err and "patch grid" in err and "09_advanced_techniques.py" in err
    assert "download" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,words", [
    (["--model", "mnist", "--layer", "classifier"], "not an (N, C, h, w) map"),  # the digit CNN's head
    (["--model", "mnist", "--layer", "classifier.1"], "not an (N, C, h, w) map"),  # its Flatten
    (["--model", "resnet18", "--layer", "fc"], "not an (N, C, h, w) map"),  # a Linear
    (["--model", "resnet18", "--layer", "avgpool"], "1x1 map"),  # a map with one position: nothing to localise
    (["--model", "resnet18", "--layer", ""], "no layer named"),
])
def test_cli_a_layer_without_a_spatial_map_is_one_line_before_any_loading(argv, words, monkeypatch, tmp_path,
                                                                         capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("the layer must be checked before any model is loaded")

    monkeypatch.setattr(demos.common, "load_imagenet_model", no_loading)
    monkeypatch.setattr(demos.common, "load_mnist_cnn", no_loading)
    code, err = run_cli([*argv, "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert "conv" in err and not (tmp_path / "out").exists()


def test_grad_cam_is_cam_divided_by_h_w_on_a_global_average_pooling_head():
    """S_c = w_c . mean_ij A[:, i, j] + b_c, so dS_c/dA_k[i, j] = w_ck / (h w) = alpha_k (Zhou et al., 2016)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(6, 4)).eval()
    x = torch.randn(2, 3, 5, 7)
    signed = grad_cam(model, x, [1, 3], "1", relu=False, upsample=False)  # (2, 1, 5, 7)
    A = F.relu(model[0](x))  # (2, 6, 5, 7)
    cam = (model[4].weight[[1, 3]][:, :, None, None] * A).sum(1, keepdim=True)
    torch.testing.assert_close(signed * 5 * 7, cam)
    torch.testing.assert_close(lecture("05_gradcam").class_activation_map(model, x, [1, 3], "1"), cam)


# --- what each figure explains ------------------------------------------------------------------


def recording(monkeypatch, module, *names):
    """Wrap the lecture's plotting functions so that a test sees the arguments of each call."""
    calls = {name: [] for name in names}
    for name in names:
        original = getattr(module, name)

        def record(*args, _name=name, _original=original, **kwargs):
            calls[_name].append(args)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, record)
    return calls


def test_with_several_images_every_figure_explains_the_first(monkeypatch, tmp_path, capsys):
    module = lecture("05_gradcam")
    calls = recording(monkeypatch, module, "plot_layers", "plot_classes")
    first, second = plumbing.paths.DIGITS_DIR / "sample_07_7.png", plumbing.paths.DIGITS_DIR / "sample_02_2.png"
    module.main(["--quick", "--model", "mnist", "--image", str(first), "--image", str(second),
                 "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    (demo, index, *_), = calls["plot_layers"]
    assert index == 0 and demo.names[0] == first.stem
    assert f"on {first.stem} at four depths" in out
    classes_rows, top3_rows = (args[0] for args in calls["plot_classes"])
    assert [name for name, _, _ in classes_rows] == [first.stem, second.stem]  # digits: a row each, in order
    assert [name for name, _, _ in top3_rows] == [first.stem]


def test_target_reaches_the_layer_class_and_top3_figures(monkeypatch, tmp_path, capsys):
    module = lecture("05_gradcam")
    calls = recording(monkeypatch, module, "plot_layers", "plot_classes")
    module.main(["--quick", "--model", "mnist", "--target", "8", "--out-dir", str(tmp_path)])
    (_, _, _, _, _, names, _), = calls["plot_layers"]
    assert names[0] == "8" and names[1] != "8"
    classes_rows, top3_rows = (args[0] for args in calls["plot_classes"])
    for _, _, panels in classes_rows:  # each digit's first map is the target's
        assert panels[0][0].startswith("'8'")
    labels = [label for label, _, _ in top3_rows[0][2]]
    assert len(labels) == 3 and sum("'8'" in label for label in labels) == 1
    assert "--target '8' and the top two others" in calls["plot_classes"][1][1]  # the top-3 figure's title


def test_the_layer_figure_measures_how_alike_the_two_classes_maps_are(monkeypatch, tmp_path, capsys):
    module = lecture("05_gradcam")
    calls = recording(monkeypatch, module, "plot_layers")
    module.main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    (_, _, layers, small, _, names, alike), = calls["plot_layers"]
    for layer, maps, r in zip(layers, small, alike):
        assert maps.shape[0] == 2  # one map per class
        assert r == pytest.approx(utils.rank_correlation(maps[0], maps[1]))
        assert f"rank correlation {r:+.2f}" in out


def test_the_digit_track_measures_grad_cam_on_empty_border_cells(tmp_path, capsys):
    lecture("05_gradcam").main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "in empty border cells" in line]
    assert len(lines) == 4  # one per digit of --quick
    shares = [float(re.search(r"(\d+)% in empty border cells", line).group(1)) for line in lines]
    # the 2 of data/digits: its base stroke lights the empty bottom row of cells
    assert max(shares) >= 30 and "digit 2" in out.split("most here: ")[1].split(",")[0]


def test_shared_mass_by_hand():
    module = lecture("05_gradcam")
    a = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert module.shared_mass(a, a) == pytest.approx(1.0)
    assert module.shared_mass(a, a.flip(0)) == 0.0  # top row against bottom row
    assert module.shared_mass(a, torch.tensor([[3.0, 0.0], [1.0, 0.0]])) == pytest.approx(0.5 + 0.0)
    assert np.isnan(module.shared_mass(a, torch.zeros(2, 2)))


def test_the_depth_verdict_follows_the_printed_numbers(monkeypatch, tmp_path, capsys):
    """The verdict names the depth with the least shared mass, and says the deepest layer is (or is not)
    the most class-specific one only when the shared masses printed above it say so."""
    module = lecture("05_gradcam")
    demo = demos.common.Demo("mnist", "mnist", nn.Identity(), torch.zeros(1), ["digit 7"], [], torch.device("cpu"))
    stages = ["features.3", "features.8", "features.11", "features.13"]
    deepest = module.depth_verdict(stages, [0.9, 0.8, 0.7, 0.2], [0.5, 0.1, -0.3, 0.0], demo)
    assert "deepest layer puts" in deepest and "(20%)" in deepest and "lowest at" in deepest
    not_deepest = module.depth_verdict(stages, [0.9, 0.1, 0.7, 0.2], [0.5, -0.5, 0.3, 0.4], demo)
    assert "does not" in not_deepest and "(10%)" in not_deepest and "lowest there too" in not_deepest
    calls = recording(monkeypatch, module, "plot_layers")
    module.main(["--quick", "--model", "mnist", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    (_, _, layers, _, large, names, _), = calls["plot_layers"]
    shared = [module.shared_mass(m[0], m[1]) for m in large]
    for value in shared:
        assert f"mass shared {value:.0%}" in out
    lowest = min(range(len(shared)), key=lambda i: shared[i])
    assert ("deepest layer puts" in out) == (lowest == len(shared) - 1)


def test_cam_is_the_weighted_sum_itself():
    source = open(lecture("05_gradcam").__file__).read()
    assert "zeros_like(A" not in source and "cam = (alpha * A).sum(dim=1, keepdim=True)" in source
