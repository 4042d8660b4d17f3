"""Part 5 of 9: Grad-CAM.        Previous: 04_integrated_gradients.py   Next: 06_guided_backpropagation.py

Intuition: the last convolution still knows *where* things are; weight each of its
feature maps by how much the class score wants it, and add them up.

    A_k       the k-th feature map of a convolutional layer, shape (h, w)
    S_c       the logit of class c
    alpha_k = 1/(h w) * sum over (i, j) of dS_c / dA_k[i, j]     the map's importance
    L_c     = ReLU( sum_k alpha_k A_k )                           a coarse (h, w) map
    shown as  L_c upsampled (bilinear) to the input's H x W

The ReLU keeps the evidence *for* c: positions that lower S_c belong to other classes. The
map is as coarse as the layer (7 x 7 at a ResNet's layer4), the price of the class
discrimination the pixel gradients lacked. When the layer feeds global average pooling and one
Linear, alpha_k = w_ck / (h w): Grad-CAM is CAM (Zhou et al., CVPR 2016,
https://arxiv.org/abs/1512.04150) divided by h w. Lecture 9 runs it on a ViT's patch tokens.

Paper: R. R. Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, https://arxiv.org/abs/1610.02391

Run:          python 05_gradcam.py                    (ResNet-50, then VGG-16 and the digit CNN)
In seconds:   python 05_gradcam.py --quick             (ResNet-18, no VGG-16)
Offline:      python 05_gradcam.py --quick --model efficientnet_lite0
Another layer: python 05_gradcam.py --layer layer3     (any module name; default: layer4 for ResNets)
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import demos
import utils


# %% The method ---------------------------------------------------------------------


def grad_cam(model: nn.Module, inputs: torch.Tensor, target=None, layer=None,
             relu: bool = True, upsample: bool = True, reshape_transform=None) -> torch.Tensor:
    """Grad-CAM of Selvaraju et al. (2017): ReLU(sum_k alpha_k A_k) at `layer`.

    layer     a module inside `model`, its dotted name ("layer4"), or None: the last nn.Conv2d
    relu      keep only the evidence for the class (the paper); False gives the signed map
    upsample  bilinear to the input's (H, W) -> (N, 1, H, W); False keeps the layer's (N, 1, h, w)
    reshape_transform  turns the layer's output into (N, C, h, w) first, as pytorch-grad-cam's does:
              a Vision Transformer's patch tokens laid back on their grid (lecture 9)
    Returns raw values, detached, on the inputs' device and dtype.
    """
    module = utils.find_layer(model, layer)  # ValueError listing the conv layers if it is not there
    x = inputs.detach().clone().requires_grad_(True)  # so A is in the graph even with frozen weights
    with torch.enable_grad(), utils.capture_activation(module) as captured:  # hook removed on exit
        logits = model(x)  # (N, K)
        scores, _ = utils.target_scores(logits, target)  # (N,) S_c
        A = captured.activation  # (N, K_maps, h, w), still in the graph
        if A is None or (A.dim() != 4 and reshape_transform is None):
            raise ValueError(f"layer {type(module).__name__} gave no (N, C, h, w) map in the forward pass")
        # Example i's score depends on its own A[i] only, so one backward pass of the sum
        # gives every example its own gradient.
        (dS_dA,) = torch.autograd.grad(scores.sum(), A)  # (N, K_maps, h, w)
    if reshape_transform is not None:  # e.g. ViT tokens -> (N, D, h, w); the gradient re-indexed alike
        A, dS_dA = reshape_transform(A), reshape_transform(dS_dA)
    alpha = dS_dA.mean(dim=(2, 3), keepdim=True)  # (N, K_maps, 1, 1): global-average-pooled gradients
    cam = (alpha * A).sum(dim=1, keepdim=True)  # (N, 1, h, w): sum_k alpha_k A_k, 0 where no map is active
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


def plot_layers(demo: demos.Demo, index: int, layers: list[str], small: list[torch.Tensor],
                large: list[torch.Tensor], names: list[str], alike: list[float]):
    """Row 0: the first class's map at each layer's own resolution (its title names the class). Rows 1
    and 2: each class's map upsampled over the image, with the mass the two maps share and their rank
    correlation."""
    image = demo.display()[index]
    fig, axes = utils.figure_grid(3, len(layers) + 1, landscape=True,
                                  title=f"Grad-CAM at four depths, {demo.network}, {demo.names[index]}: "
                                        "where do two classes' maps put their mass?")
    utils.show_image(axes[0, 0], image, demo.names[index])
    for row, name in enumerate(names, start=1):
        utils.show_image(axes[row, 0], image, f"'{utils.shorten(name)}'")
    for col, (layer, s, l, r) in enumerate(zip(layers, small, large, alike), start=1):
        h, w = s.shape[-2:]
        utils.show_heatmap(axes[0, col], utils.cam_for_display(s[:1])[0],
                           f"{utils.layer_label(layer)}: {h}x{w}\n'{utils.shorten(names[0], 14)}'", bar=False)
        for row in (1, 2):
            title = f"'{utils.shorten(names[row - 1], 14)}', upsampled"
            title += f"\nmass shared {shared_mass(l[0], l[1]):.0%}, rank corr. {r:+.2f}" if row == 2 else ""
            utils.show_heatmap(axes[row, col], utils.cam_for_display(l[row - 1: row])[0], title,
                               image=image, bar=False)
    utils.shared_colorbar(fig, axes, label="Grad-CAM / its maximum")
    return fig


def plot_classes(rows, title: str):
    """Per image: (name, image, [(title, cam (1, 1, H, W), image under it), ...]), laid out wide."""
    cols = 1 + max(len(panels) for _, _, panels in rows)
    fig, grid = utils.example_grid(len(rows), cols, title=title)
    for axes, (name, image, panels) in zip(grid, rows):
        utils.show_image(axes[0], image, name)
        for ax, (label, cam, under) in zip(axes[1:], panels):
            if not cam.any():  # no position raises S_c: the ReLU leaves nothing
                label += "\n(all zero: no positive evidence)"
            utils.show_heatmap(ax, utils.cam_for_display(cam)[0], label, image=under, bar=False)
        for ax in axes[1 + len(panels):]:
            ax.axis("off")
    utils.shared_colorbar(fig, [ax for axes in grid for ax in axes[1:]], image=True,
                          label="Grad-CAM / its maximum (opacity = strength)")
    return fig


def classes_to_explain(demo: demos.Demo, logits: torch.Tensor, index: int, target) -> list[int]:
    """Two classes for one image: --target first when given, else demos.contrast_classes' pair."""
    classes = demos.contrast_classes(demo, logits, index)
    if target is None:
        return classes
    return [target] + [c for c in classes if c != target][:1]


def layer_title(demo: demos.Demo, layer: str | None) -> str:
    return "the last conv" if layer is None else utils.layer_label(layer)


def shared_mass(a: torch.Tensor, b: torch.Tensor) -> float:
    """sum_ij min(p_ij, q_ij), p and q the two maps as shares of their totals: 1 when they put their
    mass in the same places, 0 when in different ones; NaN when a map is zero everywhere."""
    p, q = a.flatten().double(), b.flatten().double()
    if not (p.sum() > 0 and q.sum() > 0):
        return float("nan")
    return float(torch.minimum(p / p.sum(), q / q.sum()).sum())


def depth_verdict(stages: list[str], shared: list[float], alike: list[float], demo: demos.Demo) -> str:
    """One sentence from the printed numbers: at which depth the two classes' maps share the least
    mass (where they put their evidence), and whether the rank correlation agrees."""
    known = [(m, s, r) for m, s, r in zip(shared, stages, alike) if not math.isnan(m)]  # NaN: a zero map
    if len(known) < 2:
        return "Too few layers with positive evidence for both classes to compare depths."
    (low, where_low, _), (high, where_high, _) = min(known), max(known)
    deepest = known[-1][1] == where_low
    ranked = [(r, s) for _, s, r in known if not math.isnan(r)]
    by_rank = min(ranked)[1] if ranked else None
    return (f"The two maps share the least mass at {utils.layer_label(where_low)} ({low:.0%}), the most at "
            f"{utils.layer_label(where_high)} ({high:.0%}): on {demo.names[0]} "
            + ("the deepest layer puts the two classes' evidence in the most different places"
               if deepest else "the deepest layer does not put them in the most different places")
            + ("; the rank correlation is lowest there too." if by_rank == where_low else
               f"; the rank correlation is lowest at {utils.layer_label(by_rank)} instead: it also ranks the "
               "cells both maps leave at 0, which says nothing about where the evidence is."))


def print_border_cells(demo: demos.Demo, cams: list[torch.Tensor], small: torch.Tensor) -> list[float]:
    """Digits: how much Grad-CAM sits on empty border cells, which upsampling stretches to the edge.

    `small` is (N, 1, 7, 7) at the demo layer; a cell is empty when no pixel under it is
    above 0.3 (the stroke threshold of tools/train_mnist_cnn.py). Returns each map's share there.
    """
    h, w = small.shape[-2:]
    H, W = demo.x.shape[-2:]
    ink_cells = F.adaptive_max_pool2d(demo.x[:, :1], (h, w))[:, 0] > 0.3  # (N, h, w)
    ring = torch.ones(h, w, dtype=torch.bool, device=small.device)
    ring[1:-1, 1:-1] = False  # the outer cells
    ink = demo.x[:, 0] > 0.3  # (N, H, W)
    shares = []
    print(f"\nWhere the digit CNN's Grad-CAM sits ({h}x{w} cells of {H // h}x{W // w} pixels, "
          "upsampled bilinearly):")
    for i, (name, cam) in enumerate(zip(demo.names, cams)):
        cells = small[i, 0].clamp_min(0)  # (h, w)
        total = float(cells.sum().clamp_min(1e-12))
        empty_border = float(cells[ring & ~ink_cells[i]].sum()) / total
        shares.append(empty_border)
        peak = int(cells.argmax())
        r, c = divmod(peak, w)
        where = "an empty border cell" if ring[r, c] and not ink_cells[i, r, c] else \
            ("a border cell with ink" if ring[r, c] else "an inner cell")
        on_ink = float((cam[0, 0] * ink[i]).sum() / cam.sum().clamp_min(1e-12))
        inked = float(ink[i].float().mean())
        print(f"  {name}: {on_ink:4.0%} of the upsampled map on the ink (ink: {inked:.0%} "
              f"of the pixels); {empty_border:4.0%} in empty border cells; peak in cell ({r}, {c}), {where}")
    print("  Without biases a cell is non-zero only when ink lies in its receptive field, so an empty cell's "
          "evidence is\n  about a stroke next to it; bilinear upsampling (align_corners=False) holds a "
          "border "
          "cell's value out to\n  the image's edge, so such a cell shows as a bright strip along the edge, "
          f"off the ink (most here: {demo.names[int(np.argmax(shares))]}, {max(shares):.0%} of its map).")
    return shares


# %% The demo -------------------------------------------------------------------------

QUICK_PHOTOS = 2  # --quick explains the composite and the cat photo ...
QUICK_DIGITS = 4  # ... or this many digits
DIGITS = 6
PHOTOS = [utils.COMPOSITE, "cat_chelsea.png", "coffee.png"]


def other_networks(args, demo: demos.Demo) -> list[tuple[str, nn.Module, torch.Tensor, list[int], str]]:
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
            cat = int(torch.tensor(demos.CAT_CLASSES)[logits[0, list(demos.CAT_CLASSES)].argmax().cpu()])
            rows.append(("vgg16", vgg, x.expand(2, -1, -1, -1), [cat, demos.ESPRESSO], utils.NETWORKS["vgg16"].cam_layer))
    try:
        digits_model = utils.load_mnist_cnn()
        digits, labels, _ = demos.load_digits(3)
    except utils.InputError as error:  # data/ is incomplete: the lecture goes on without this row
        print(f"Digit CNN panel skipped: {error}")
    else:
        digits_model, digits = digits_model.to(demo.device), digits.to(demo.device)
        rows.append(("digit CNN", digits_model, digits, labels, utils.NETWORKS["mnist"].cam_layer))
    return rows


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    parser = utils.make_parser(__doc__)
    demos.add_layer_flag(parser)
    args = parser.parse_args(argv)
    demos.check_cam_layer(args)  # a ViT, no convolutions, a bad or non-spatial --layer: stop now
    demo = demos.setup_demo(args, n_images=QUICK_PHOTOS if args.quick else None,
                            n_digits=QUICK_DIGITS if args.quick else DIGITS, images=PHOTOS)
    layer = demos.demo_layer(args, demo)
    target = demos.demo_target(args, demo)
    with torch.no_grad():
        logits = demo.model(demo.x)  # (N, K)
    predictions = utils.top_k(logits, demo.categories, k=3)
    print(f"\nTop-3 predictions of {demo.network}:")
    for name, top in zip(demo.names, predictions):
        print(f"  {name:>16}: " + ", ".join(f"{label} {p:.1%}" for label, p in top))
    demos.print_what_photos_show(demo, target, logits)

    # The sanity check: the map is as coarse as the layer; upsampling only smooths it.
    print(f"\nGrad-CAM at {layer_title(demo, layer)}:")
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

    # 1. Which layer: the same two classes at four depths. Deep maps are coarse; do the two
    # classes' maps differ more there? Their rank correlation per layer measures it.
    one = demo.x[:1]  # every figure explains the first image (the first --image)
    pair = classes_to_explain(demo, logits, 0, target)
    stages = list(utils.NETWORKS[demo.model_name].stages) or utils.conv_layer_names(demo.model)[-4:]
    twice = one.expand(2, -1, -1, -1)  # the image once per class
    pairs = [grad_cam(demo.model, twice, pair, s, upsample=False) for s in stages]  # (2, 1, h, w) each
    # What upsample=True does, done here once so that each layer costs one backward pass.
    larges = [F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False) for m in pairs]
    alike = [utils.rank_correlation(m[0], m[1]) for m in pairs]
    shared = [shared_mass(m[0], m[1]) for m in larges]  # at the input's resolution, the same for every depth
    names = [demo.class_name(c) for c in pair]
    print(f"\nGrad-CAM of '{names[0]}' and '{names[1]}' on {demo.names[0]} at four depths: the mass the two "
          "maps share (1: the same places, 0: different places),\nthe share of each on the left half of the "
          "image, and their rank correlation (1: the same order, below 0: opposite):")
    for s, m, big, r, both in zip(stages, pairs, larges, alike, shared):
        lefts = ", ".join(f"'{utils.shorten(n, 14)}' {left:.0%}" for n, left in zip(names, mass_left(big)))
        print(f"  {layer_title(demo, s):>22}: {m.shape[-2]}x{m.shape[-1]} map, mass shared {both:.0%}, "
              f"on the left: {lefts}; rank correlation {r:+.2f}")
    print("  " + depth_verdict(stages, shared, alike, demo))
    utils.save_figure(plot_layers(demo, 0, stages, pairs, larges, names, alike), args.out_dir,
                      f"05_gradcam_layers_{demo.track}.png")

    # 2. Class discrimination: the same image, two classes, two different maps.
    images = demo.display()
    rows = []
    for i in range(1 if demo.track == "imagenet" else len(demo.names)):
        classes = classes_to_explain(demo, logits, i, target)
        same_image = demo.x[i: i + 1].expand(len(classes), -1, -1, -1)  # (2, C, H, W), one class each
        cams = grad_cam(demo.model, same_image, classes, layer).split(1)  # 2 x (1, 1, H, W)
        rows.append((demo.names[i], images[i], [(f"'{utils.shorten(demo.class_name(c))}'", cam, images[i])
                                                for c, cam in zip(classes, cams)]))
        if i == 0 and demo.names[0] == Path(utils.COMPOSITE).stem:
            print(f"\nClass discrimination on {demo.names[0]}: share of each map on the left half")
            for c, cam in zip(classes, cams):
                left = mass_left(cam)[0]
                share = f"{left:.0%} left, {1 - left:.0%} right" if cam.any() else "zero everywhere"
                print(f"  {demo.class_name(c):>16}: {share}")
    if demo.track == "mnist":  # the share on empty border cells goes into the first panel's title
        shares = print_border_cells(demo, [row[2][0][1] for row in rows], small)
        rows = [(name, image, [(f"{panels[0][0]}\n{share:.0%} in empty border cells", *panels[0][1:]),
                               *panels[1:]]) for (name, image, panels), share in zip(rows, shares)]
    title = f"Grad-CAM, {demo.network}, {layer_title(demo, layer)}: one image, two classes"
    utils.save_figure(plot_classes(rows, title), args.out_dir, f"05_gradcam_classes_{demo.track}.png")

    # 3. The top three classes of the first image (with --target: that class, then the top two others).
    probs = logits[0].softmax(0)
    top3 = logits[0].topk(3).indices.tolist()
    if target is not None:
        top3 = [target] + [c for c in top3 if c != target][:2]
    cams = grad_cam(demo.model, demo.x[:1].expand(3, -1, -1, -1), top3, layer).split(1)  # 3 x (1, 1, H, W)
    ranks = [int((logits[0] > logits[0, c]).sum()) + 1 for c in top3]  # 1 = the prediction
    panels = [(f"#{k} '{utils.shorten(demo.class_name(c))}' ({probs[c]:.0%})", cam, images[0])
              for k, c, cam in zip(ranks, top3, cams)]
    what = ("the top-3 classes" if target is None
            else f"--target '{demo.class_name(target)}' and the top two others")
    utils.save_figure(plot_classes([(demo.names[0], images[0], panels)],
                                   f"Grad-CAM for {what}, {demo.network}"),
                      args.out_dir, f"05_gradcam_top3_{demo.track}.png")

    # 4. The same function on other networks: nothing in grad_cam is specific to a ResNet.
    if demo.track == "imagenet":
        name, image, panels = rows[0]  # the demo network's row of the class figure
        rows = [(demo.network, image, [(f"{label}, {layer_title(demo, layer)}", cam, under)
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
                panels = [(f"'{utils.shorten(demo.class_name(c))}', {utils.layer_label(net_layer)}",
                           cams[j: j + 1], images[0])
                          for j, c in enumerate(classes)]
                rows.append((name, images[0], panels))
        if len(rows) > 1:
            utils.save_figure(plot_classes(rows, "Grad-CAM on other networks: the same function, any CNN"),
                              args.out_dir, "05_gradcam_networks.png")


if __name__ == "__main__":
    main()
