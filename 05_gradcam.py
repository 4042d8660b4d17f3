"""Part 5 of 9: Grad-CAM.        Previous: 04_integrated_gradients.py   Next: 06_guided_backpropagation.py

Intuition: the last convolution still knows *where* things are; weight each of its
feature maps by how much the class score wants it, and add them up.

    A_k       the k-th feature map of a convolutional layer, shape (h, w)
    S_c       the logit of class c
    alpha_k = 1/(h w) * sum over (i, j) of dS_c / dA_k[i, j]     the map's importance
    L_c     = ReLU( sum_k alpha_k A_k )                           a coarse (h, w) map
    shown as  L_c upsampled (bilinear) to the input's H x W

The ReLU keeps the evidence *for* c: positions that lower S_c belong to other
classes. The map is as coarse as the layer (7 x 7 at a ResNet's layer4), which
is the price of the class discrimination the pixel gradients lacked. When the layer
feeds global average pooling and one Linear (ResNets, EfficientNet), alpha_k = w_ck / (h w)
and Grad-CAM is CAM (Zhou et al., CVPR 2016, https://arxiv.org/abs/1512.04150) divided by h w.
A Vision Transformer's patch tokens keep their positions too; lecture 9 reshapes them to
their grid for Grad-CAM. This lecture reads convolutional maps only.

Paper: R. R. Selvaraju, M. Cogswell, A. Das, R. Vedantam, D. Parikh, D. Batra,
"Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, https://arxiv.org/abs/1610.02391

Run:          python 05_gradcam.py                    (ResNet-50, then VGG-16 and the digit CNN)
In seconds:   python 05_gradcam.py --quick             (ResNet-18, no VGG-16)
Offline:      python 05_gradcam.py --quick --model efficientnet_lite0
Another layer: python 05_gradcam.py --layer layer3     (any module name; default: layer4 for ResNets)
Figures go to outputs/. Offline without cached weights, it says so and runs on efficientnet_lite0
when its optional packages are installed (requirements-dev.txt), else on the digit CNN.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import utils

QUICK_PHOTOS = 2  # --quick explains the composite and the cat photo ...
QUICK_DIGITS = 4  # ... or this many digits
DIGITS = 6
PHOTOS = [utils.COMPOSITE, "cat_chelsea.png", "coffee.png"]
# The layer each demo reads, an output after its activation (why: see utils.CAM_LAYERS,
# which lecture 7 shares). Edit the table there. The method's own default (None) stays
# API.md's: the last nn.Conv2d.
DEMO_LAYER = utils.CAM_LAYERS
# Four depths per network for the layer figure, shallow to deep, each what the next layer
# reads: after a ReLU, or for EfficientNet-Lite0 a block's output (its MBConv blocks end
# without an activation, and their inner ReLU6 maps leave Grad-CAM almost nothing positive).
STAGES = {
    "resnet18": ["layer1", "layer2", "layer3", "layer4"],
    "resnet50": ["layer1", "layer2", "layer3", "layer4"],
    "vgg16": ["features.8", "features.15", "features.22", "features.29"],
    "efficientnet_lite0": ["_blocks.2", "_blocks.4", "_blocks.10", "_swish"],
    "mnist": ["features.3", "features.8", "features.11", "features.13"],
}


# %% The method ---------------------------------------------------------------------


def grad_cam(model: nn.Module, inputs: torch.Tensor, target=None, layer=None,
             relu: bool = True, upsample: bool = True) -> torch.Tensor:
    """Grad-CAM of Selvaraju et al. (2017): ReLU(sum_k alpha_k A_k) at `layer`.

    layer     a module inside `model`, its dotted name ("layer4"), or None: the last nn.Conv2d
    relu      keep only the evidence for the class (the paper); False gives the signed map
    upsample  bilinear to the input's (H, W) -> (N, 1, H, W); False keeps the layer's (N, 1, h, w)
    Returns raw values, detached, on the inputs' device and dtype.
    """
    module = utils.find_layer(model, layer)  # ValueError listing the conv layers if it is not there
    x = inputs.detach().clone().requires_grad_(True)  # so A is in the graph even with frozen weights
    with torch.enable_grad(), utils.capture_activation(module) as captured:  # hook removed on exit
        logits = model(x)  # (N, K)
        scores, _ = utils.target_scores(logits, target)  # (N,) S_c
        A = captured.activation  # (N, K_maps, h, w), still in the graph
        if A is None or A.dim() != 4:
            raise ValueError(f"layer {type(module).__name__} gave no (N, C, h, w) map in the forward pass")
        # Example i's score depends on its own A[i] only, so one backward pass of the sum
        # gives every example its own gradient.
        (dS_dA,) = torch.autograd.grad(scores.sum(), A)  # (N, K_maps, h, w)
    alpha = dS_dA.mean(dim=(2, 3), keepdim=True)  # (N, K_maps, 1, 1): global-average-pooled gradients
    # A sum starts at zero. The classic from-scratch bug starts `cam` at ones, which lifts
    # every position by 1 and survives the ReLU and any later normalisation.
    cam = torch.zeros_like(A[:, :1])  # (N, 1, h, w)
    cam = cam + (alpha * A).sum(dim=1, keepdim=True)  # (N, 1, h, w)
    if relu:
        cam = F.relu(cam)  # only the positive evidence for class c
    if upsample:
        cam = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)  # (N, 1, H, W)
    return cam.detach().to(inputs.dtype)


# %% Grad-CAM and CAM ------------------------------------------------------------------


def class_activation_map(model: nn.Module, inputs: torch.Tensor, classes: list[int], layer) -> torch.Tensor | None:
    """CAM of Zhou et al. (2016), sum_k w_ck A_k, taking w from the model's last nn.Linear.

    It means something only when `layer` feeds global average pooling and then that Linear;
    the caller checks. None when the Linear's width is not the layer's channel count.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    with torch.no_grad(), utils.capture_activation(utils.find_layer(model, layer)) as captured:
        model(inputs)
        w = linears[-1].weight[classes]  # (N, K_maps): the class's weight on each pooled map
    A = captured.activation  # (N, K_maps, h, w)
    if A is None or A.dim() != 4 or w.shape[1] != A.shape[1]:
        return None
    return (w[:, :, None, None] * A).sum(dim=1, keepdim=True)  # (N, 1, h, w)


# %% Figures --------------------------------------------------------------------------


def mass_left(cam: torch.Tensor) -> list[float]:
    """The share of each map's total on the left half of the image (the cat's side of the composite)."""
    w = cam.shape[-1]
    total = cam.flatten(1).sum(1).clamp_min(1e-12)
    return (cam[..., : w // 2].flatten(1).sum(1) / total).tolist()


def plot_layers(demo: utils.Demo, index: int, layers: list[str], small: list[torch.Tensor],
                large: list[torch.Tensor], explained: str):
    """Top: the map at each layer's own resolution. Bottom: upsampled over the image."""
    image = demo.display()[index]
    fig, axes = utils.figure_grid(2, len(layers) + 1, title=f"Grad-CAM for '{explained}' at four depths "
                                  f"of {demo.network}: finer maps, weaker class evidence")
    utils.show_image(axes[0, 0], image, demo.names[index])
    axes[1, 0].axis("off")
    for col, (name, s, l) in enumerate(zip(layers, small, large), start=1):
        h, w = s.shape[-2:]
        utils.show_heatmap(axes[0, col], utils.cam_for_display(s)[0], f"{name}: {h}x{w} map", label="/ max")
        utils.show_heatmap(axes[1, col], utils.cam_for_display(l)[0], f"{name}, upsampled", image=image,
                           label="/ max")
    return fig


def plot_classes(rows, title: str):
    """One row per image: (name, image, [(title, cam (1, 1, H, W), image under it), ...])."""
    cols = 1 + max(len(panels) for _, _, panels in rows)
    fig, axes = utils.figure_grid(len(rows), cols, title=title)
    for row, (name, image, panels) in enumerate(rows):
        utils.show_image(axes[row, 0], image, name)
        for col, (label, cam, under) in enumerate(panels, start=1):
            if not cam.any():  # no position raises S_c: the ReLU leaves nothing
                label += "\n(all zero: no positive evidence)"
            utils.show_heatmap(axes[row, col], utils.cam_for_display(cam)[0], label, image=under, label="/ max")
        for col in range(1 + len(panels), cols):
            axes[row, col].axis("off")
    return fig


# %% The demo -------------------------------------------------------------------------


def other_networks(args, demo: utils.Demo) -> list[tuple[str, nn.Module, torch.Tensor, list[int], str]]:
    """VGG-16 on the composite (not with --quick) and the digit CNN, when their weights are here."""
    rows = []
    if not args.quick and demo.model_name != "vgg16":
        try:
            vgg, categories, transform = utils.load_imagenet_model("vgg16")
        except utils.WeightsUnavailable as error:
            print(f"VGG-16 panel skipped: no pretrained VGG-16 weights ({error})")
        else:
            images, _ = utils.load_images([utils.DATA_DIR / utils.COMPOSITE])
            x = utils.preprocess(images, transform).to(demo.device)
            with torch.no_grad():
                logits = vgg.to(demo.device)(x)
            cat = int(torch.tensor(utils.CAT_CLASSES)[logits[0, list(utils.CAT_CLASSES)].argmax().cpu()])
            rows.append(("vgg16", vgg, x.expand(2, -1, -1, -1), [cat, utils.ESPRESSO], DEMO_LAYER["vgg16"]))
    try:
        digits_model = utils.load_mnist_cnn()
        digits, labels, _ = utils.load_digits(3)
    except utils.InputError as error:  # data/ is incomplete: the lecture goes on without this row
        print(f"Digit CNN panel skipped: {error}")
    else:
        digits_model, digits = digits_model.to(demo.device), digits.to(demo.device)
        rows.append(("digit CNN", digits_model, digits, labels, DEMO_LAYER["mnist"]))
    return rows


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    parser = utils.make_parser(__doc__)
    utils.add_layer_flag(parser)
    args = parser.parse_args(argv)
    utils.check_cam_layer(args)  # a ViT, no convolutions, a bad or non-spatial --layer: stop now
    demo = utils.setup_demo(args, n_images=QUICK_PHOTOS if args.quick else None,
                            n_digits=QUICK_DIGITS if args.quick else DIGITS, images=PHOTOS)
    layer = utils.demo_layer(args, demo)
    target = utils.demo_target(args, demo)
    with torch.no_grad():
        logits = demo.model(demo.x)  # (N, K)
    predictions = utils.top_k(logits, demo.categories, k=3)
    print(f"\nTop-3 predictions of {demo.network}:")
    for name, top in zip(demo.names, predictions):
        print(f"  {name:>16}: " + ", ".join(f"{label} {p:.1%}" for label, p in top))

    # The sanity check: the map is as coarse as the layer; upsampling only smooths it.
    print(f"\nGrad-CAM at layer {layer or 'None (the last Conv2d)'}:")
    small = grad_cam(demo.model, demo.x, target, layer, upsample=False)  # (N, 1, h, w)
    h, w = small.shape[-2:]
    H, W = demo.x.shape[-2:]
    print(f"  feature map {h}x{w} before upsampling to {H}x{W}: one cell covers about "
          f"{H / h:.0f}x{W / w:.0f} input pixels")

    # Grad-CAM and CAM: with global average pooling then one Linear after the layer,
    # dS_c/dA_k[i, j] = w_ck / (h w) everywhere, so alpha_k = w_ck / (h w).
    predicted = logits.argmax(1).tolist()
    cam = class_activation_map(demo.model, demo.x, predicted, layer)
    signed = grad_cam(demo.model, demo.x, predicted, layer, relu=False, upsample=False)  # (N, 1, h, w)
    gap = None if cam is None else float((signed * h * w - cam).abs().max() / cam.abs().max())
    if gap is not None and gap < 1e-4:
        print(f"  Grad-CAM times h w = {h * w} equals CAM (Zhou et al., 2016), sum_k w_ck A_k, to {gap:.0e} "
              "of its peak: the layer feeds global average pooling and one Linear")
    else:
        print("  Here Grad-CAM is not CAM: the layer does not feed global average pooling and one Linear "
              "directly, so CAM's weights w_ck do not exist; Grad-CAM's alpha_k still do")

    # 1. Which layer: shallow layers see finer detail but carry less class evidence.
    photo = min(1, len(demo.names) - 1) if demo.track == "imagenet" else 0
    stages = STAGES.get(demo.model_name) or utils.conv_layer_names(demo.model)[-4:]
    one = demo.x[photo: photo + 1]
    explained = demo.class_name(int(utils.resolve_target(logits[photo: photo + 1], target)[0]))
    smalls = [grad_cam(demo.model, one, target, s, upsample=False) for s in stages]  # (1, 1, h, w) each
    # What upsample=True does, done here once so that each layer costs one backward pass.
    larges = [F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False) for m in smalls]
    for s, m in zip(stages, smalls):
        print(f"  {s:>12}: {m.shape[-2]}x{m.shape[-1]} map")
    utils.save_figure(plot_layers(demo, photo, stages, smalls, larges, explained), args.out_dir,
                      f"05_gradcam_layers_{demo.track}.png")

    # 2. Class discrimination: the same image, two classes, two different maps.
    images = demo.display()
    rows = []
    for i in range(1 if demo.track == "imagenet" else len(demo.names)):
        classes = utils.contrast_classes(demo, logits, i)
        same_image = demo.x[i: i + 1].expand(len(classes), -1, -1, -1)  # (2, C, H, W), one class each
        cams = grad_cam(demo.model, same_image, classes, layer).split(1)  # 2 x (1, 1, H, W)
        rows.append((demo.names[i], images[i], [(f"'{demo.class_name(c)}'", cam, images[i])
                                                for c, cam in zip(classes, cams)]))
        if i == 0 and demo.names[0] == Path(utils.COMPOSITE).stem:
            print(f"\nClass discrimination on {demo.names[0]}: share of each map on the left half")
            for c, cam in zip(classes, cams):
                left = mass_left(cam)[0]
                share = f"{left:.0%} left, {1 - left:.0%} right" if cam.any() else "zero everywhere"
                print(f"  {demo.class_name(c):>16}: {share}")
    title = f"Grad-CAM, {demo.network}, layer {layer or 'last conv'}: one image, two classes"
    utils.save_figure(plot_classes(rows, title), args.out_dir, f"05_gradcam_classes_{demo.track}.png")

    # 3. The top three classes of one image.
    top3 = logits[0].topk(3).indices.tolist()
    probs = logits[0].softmax(0)
    cams = grad_cam(demo.model, demo.x[:1].expand(3, -1, -1, -1), top3, layer).split(1)  # 3 x (1, 1, H, W)
    panels = [(f"#{r + 1} '{demo.class_name(c)}' ({probs[c]:.0%})", cam, images[0])
              for r, (c, cam) in enumerate(zip(top3, cams))]
    utils.save_figure(plot_classes([(demo.names[0], images[0], panels)],
                                   f"Grad-CAM for the top-3 classes, {demo.network}"),
                      args.out_dir, f"05_gradcam_top3_{demo.track}.png")

    # 4. The same function on other networks: nothing in grad_cam is specific to a ResNet.
    if demo.track == "imagenet":
        name, image, panels = rows[0]  # the demo network's row of the class figure
        rows = [(demo.network, image, [(f"{label}, {layer or 'last conv'}", cam, under)
                                       for label, cam, under in panels])]
        for name, model, x, classes, net_layer in other_networks(args, demo):
            cams = grad_cam(model, x, classes, net_layer)  # (2 or 3, 1, H, W), one class per example
            if name == "digit CNN":
                digits = utils.denormalize(x, (0.0,), (1.0,))  # (n, 28, 28, 1)
                panels = [(f"digit {c}, {net_layer}", cams[j: j + 1], digits[j])
                          for j, c in enumerate(classes)]
                side_by_side = np.concatenate(list(digits), axis=1)  # (28, 28 n, 1): every digit explained
                rows.append((f"digit CNN: {', '.join(map(str, classes))}", side_by_side, panels))
            else:
                panels = [(f"'{demo.class_name(c)}', {net_layer or 'last conv'}", cams[j: j + 1], images[0])
                          for j, c in enumerate(classes)]
                rows.append((name, images[0], panels))
        if len(rows) > 1:
            utils.save_figure(plot_classes(rows, "Grad-CAM on other networks: the same function, any CNN"),
                              args.out_dir, "05_gradcam_networks.png")


if __name__ == "__main__":
    main()
