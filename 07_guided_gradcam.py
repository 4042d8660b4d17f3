"""Part 7 of 9: Guided Grad-CAM.    Previous: 06_guided_backpropagation.py   Next: 08_comparative_analysis.py

Intuition: guided backpropagation is sharp but hardly cares about the class; Grad-CAM
cares about the class but is blurry. Multiply them: sharp detail, only where the class is.

    GB_c(x)   guided backpropagation, shape (C, H, W)                 lecture 6
    L_c(x)    Grad-CAM, ReLU(sum_k alpha_k A_k), upsampled to (1, H, W)   lecture 5
    GGC_c(x) = GB_c(x) * L_c(x)          element-wise, L_c broadcast over the C channels

Both factors are raw values, so the product is too: normalise it for display only.
What it does not fix: the detail comes from guided backpropagation, which Adebayo et al.
("Sanity Checks for Saliency Maps", NeurIPS 2018) found nearly unchanged when the weights are
randomised; lecture 8 measures how much it changes on the course's own networks.

Paper: R. R. Selvaraju, M. Cogswell, A. Das, R. Vedantam, D. Parikh, D. Batra,
"Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, section 3.1, https://arxiv.org/abs/1610.02391

Run:          python 07_guided_gradcam.py                     (ResNet-50, the cat-and-coffee composite)
In seconds:   python 07_guided_gradcam.py --quick              (ResNet-18)
Offline:      python 07_guided_gradcam.py --quick --model efficientnet_lite0
Another layer: python 07_guided_gradcam.py --layer layer3
Digits:       python 07_guided_gradcam.py --model mnist
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

import demos
import utils

grad_cam = utils.load_lecture("05_gradcam").grad_cam
guided_backprop = utils.load_lecture("06_guided_backpropagation").guided_backprop

# %% The method ---------------------------------------------------------------------


def guided_grad_cam(model: nn.Module, inputs: torch.Tensor, target=None, layer=None) -> torch.Tensor:
    """Guided Grad-CAM of Selvaraju et al. (2017): guided backprop times the upsampled Grad-CAM.

    layer    Grad-CAM's layer: a module, its dotted name, or None for the last nn.Conv2d
    target   None (the prediction), an int, or one class per example
    Returns raw values shaped like `inputs` (N, C, H, W), detached, same device and dtype.
    """
    utils.find_layer(model, layer)  # a bad layer fails before any work
    # Resolve the prediction once, so both factors explain the same class even if the model
    # is in training mode and dropout would change it between passes. A given target needs
    # no extra forward pass (it would cost a quarter of the time): each factor checks it.
    classes = target
    if target is None:
        with torch.no_grad():
            classes = model(inputs.detach()).argmax(dim=1)  # (N,)
    GB = guided_backprop(model, inputs, classes)  # (N, C, H, W): sharp, hardly class-specific
    L = grad_cam(model, inputs, classes, layer, relu=True, upsample=True)  # (N, 1, H, W): coarse, specific
    return (GB * L).detach()  # (N, C, H, W): L broadcast over the channels


# %% Figures --------------------------------------------------------------------------


def plot_three_panels(demo: demos.Demo, index: int, classes: list[int], GB: torch.Tensor, L: torch.Tensor,
                      GGC: torch.Tensor, layer_name: str):
    """One row per class: image | guided backprop | Grad-CAM | their product | its magnitude."""
    image = demo.display()[index]
    magnitude = utils.scale_for_display(utils.reduce_channels(GGC, "max_abs"))  # (2, H, W)
    fig, grid = utils.example_grid(len(classes), 5, title=f"Guided Grad-CAM = guided backprop x Grad-CAM, "
                                   f"{demo.network}, {layer_name}")
    cam = utils.cam_for_display(L)  # (2, H, W), each map / its max
    for row, (axes, c) in enumerate(zip(grid, classes)):
        zero = "" if L[row].any() else "\n(all zero: no positive evidence)"
        name = utils.shorten(demo.class_name(c))
        utils.show_image(axes[0], image, f"{demo.names[index]}, explaining\n'{name}'")
        utils.show_signed_map(axes[1], GB[row: row + 1], "guided backprop", bar=False)
        utils.show_heatmap(axes[2], cam[row], f"Grad-CAM{zero}", image=image, bar=False)
        utils.show_signed_map(axes[3], GGC[row: row + 1], f"Guided Grad-CAM{zero}", bar=False)
        utils.show_heatmap(axes[4], magnitude[row], "|Guided Grad-CAM|", bar=False)
    rgb = demo.x.shape[1] > 1
    utils.shared_colorbar(fig, [axes[k] for axes in grid for k in (1, 3)], signed=True,
                          label=f"{'sum over RGB; ' if rgb else ''}red +, blue -, 1 = 99th pct")
    utils.shared_colorbar(fig, [axes[k] for axes in grid for k in (2, 4)],
                          label="Grad-CAM / its max; |GGC|" + (", max over RGB," if rgb else "")
                          + " 1 = 99th pct")
    return fig


# %% The demo -------------------------------------------------------------------------

QUICK_DIGITS = 1  # --quick explains one digit ...
DIGITS = 3  # ... the full run three; the ImageNet track explains the composite
PHOTOS = [utils.COMPOSITE]


@utils.command_line
def main(argv: Sequence[str] | None = None) -> None:
    parser = utils.make_parser(__doc__)
    demos.add_layer_flag(parser)
    args = parser.parse_args(argv)
    demos.check_cam_layer(args)  # a ViT, no convolutions, a bad or non-spatial --layer: stop now
    demo = demos.setup_demo(args, n_digits=QUICK_DIGITS if args.quick else DIGITS, images=PHOTOS)
    layer = demos.demo_layer(args, demo)
    layer_name = utils.layer_label(layer)
    target = demos.demo_target(args, demo)
    with torch.no_grad():
        logits = demo.model(demo.x)  # (N, K)

    # 1. Practice 1, which layer: the deepest map with a spatial extent. Grad-CAM is only as
    # sharp as that map; guided backprop supplies the detail.
    small = grad_cam(demo.model, demo.x[:1], None, layer, upsample=False)  # (1, 1, h, w)
    print(f"\nGrad-CAM reads {demo.network} at {layer_name}: a {small.shape[-2]}x{small.shape[-1]} map. "
          "Deeper maps are coarser;\nlecture 5's layer figure measures how much the two classes' maps "
          "differ at each depth.")

    # 2. Two classes per image: guided backprop, Grad-CAM and their product, how alike the two
    # classes' maps are, and (practice 2) why the maps are normalised for display only.
    for i in range(len(demo.names)):  # the composite (or each --image, or each digit) for two classes
        classes = demos.contrast_classes(demo, logits, i)
        if target is not None:  # --target replaces the first class
            classes = [target] + [c for c in classes if c != target][:1]
        x = demo.x[i: i + 1].expand(len(classes), -1, -1, -1)  # the same image once per class
        GB = guided_backprop(demo.model, x, classes)  # (2, C, H, W)
        L = grad_cam(demo.model, x, classes, layer)  # (2, 1, H, W)
        GGC = guided_grad_cam(demo.model, x, classes, layer)  # (2, C, H, W)
        gb_cos, _ = utils.map_similarity(GB[0].abs().amax(0), GB[1].abs().amax(0))
        ggc_cos, _ = utils.map_similarity(GGC[0].abs().amax(0), GGC[1].abs().amax(0))
        names = [demo.class_name(c) for c in classes]
        # What Grad-CAM's factor does: the share of guided backprop's |R| that survives it,
        # each map weighted by Grad-CAM divided by its own peak (1 where the class is strongest).
        weight = L / L.flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1, 1)  # (2, 1, H, W) in [0, 1]
        kept = ((GB.abs() * weight).flatten(1).sum(1) / GB.abs().flatten(1).sum(1).clamp_min(1e-30)).tolist()
        print(f"\n{demo.names[i]}: the share of guided backprop's |R| that Grad-CAM's factor keeps "
              "(Grad-CAM / its peak as the weight):")
        print("  " + ", ".join(f"'{n}' {k:.0%}" for n, k in zip(names, kept)))
        print(f"  '{names[0]}' vs '{names[1]}', cosine similarity of the two maps")
        print(f"  guided backprop {gb_cos:.3f}   Guided Grad-CAM {ggc_cos:.3f}   (1 = the same map)")

        # Practice 2, normalise for display only. The raw peaks say how strong each
        # class's evidence is; scaling each map to [0, 1] inside the method would hide it.
        peaks = GGC.abs().flatten(1).amax(1).tolist()
        print("  raw peak |Guided Grad-CAM|: " + ", ".join(f"'{n}' {p:.3g}" for n, p in zip(names, peaks)))
        print("  (the figure divides each map by its own 99th percentile of |value|, so its colours")
        print("   compare places within a map, not strength between classes)")
        utils.save_figure(plot_three_panels(demo, i, classes, GB, L, GGC, layer_name), args.out_dir,
                          f"07_guided_gradcam_{demo.track}{'' if len(demo.names) == 1 else f'_{i}'}.png")


if __name__ == "__main__":
    main()
