"""The README's picture: the nine methods lecture 8 compares, on one photo, from a real network, offline.

    python tools/make_cover.py                 # docs/cover.png and docs/thumbs/ (minutes on a laptop CPU)

EfficientNet-Lite0 (pretrained on ImageNet; its weights ship in a pip package, requirements-dev.txt)
explains its prediction for data/cat_chelsea.png with every method of `plumbing.methods.compared()`,
each called as its lecture defines it, with its defaults (the random ones seeded). Each map is drawn as
the lectures draw it: magnitudes in inferno, signed maps red (raises the score) and blue (lowers it),
scaled to their own 99th percentile of |value| (Grad-CAM's to its maximum); maps of regions (Grad-CAM,
LIME's and SHAP's cells) and magnitudes over the photo. A signed pixel map is sparse: at a README's
160 pixels per panel its single pixels would vanish, so it is shown pooled to blocks of POOL x POOL
pixels, each block the value of largest magnitude in it (its sign kept), which the lectures never do. The PNG is quantised to
256 colours so that it stays under 200 KB. The same maps, one per lecture, are the course table's
thumbnails in docs/thumbs/ (lecture 8: its SHAP map; lecture 9: its LRP map, computed here too).
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import utils  # noqa: E402
from plumbing.methods import METHODS, compared  # noqa: E402

PHOTO = "cat_chelsea.png"
OUT = ROOT / "docs" / "cover.png"
THUMBS = ROOT / "docs" / "thumbs"
THUMB_INCHES, THUMB_DPI = 1.6, 80  # 128 x 128 pixels
LECTURE_THUMB = {"08": "SHAP", "09": "LRP"}  # lectures 1 to 7: their own method; 8 and 9 teach several
SEED = 0
WIDTH_INCHES, DPI = 12.0, 80  # 960 pixels wide: a README column
MAX_BYTES = 200_000
CACHE = ROOT / "outputs" / "cover_maps.pt"  # the last run's maps, for --reuse
BATCH_SIZE = 32  # model evaluations per forward pass: about 1 GB on EfficientNet-Lite0, not 10


def cover_maps(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every compared method's map of the predicted class, in the course's order."""
    maps = {}
    for method in compared():
        settings = {"generator": torch.Generator().manual_seed(SEED)} if "generator" in method.settings else {}
        if "batch_size" in method.settings:  # memory only, never the map: LIME and SHAP evaluate thousands
            settings["batch_size"] = BATCH_SIZE
        print(f"  {method.name} ...", flush=True)
        maps[method.name] = method(model, x, None, **settings)
    return maps


POOL = 4  # signed pixel maps on the cover and thumbnails: 224 x 224 shown as 56 x 56 blocks


def sparse(method) -> bool:
    """A signed map of single pixels (not of regions: Grad-CAM's cells, LIME's and SHAP's features)."""
    return method.signed and method.output == "pixel" and "feature_mask" not in method.settings


def pooled(heat: np.ndarray, k: int = POOL) -> np.ndarray:
    """(H, W) -> (H/k, W/k): each k x k block's value of largest magnitude, sign kept."""
    h, w = (side // k * k for side in heat.shape)
    blocks = heat[:h, :w].reshape(h // k, k, w // k, k).transpose(0, 2, 1, 3).reshape(h // k, w // k, k * k)
    return np.take_along_axis(blocks, np.abs(blocks).argmax(-1)[..., None], -1)[..., 0]


def backdrop(method, photo):
    """The photo under every map, shrunk to a pooled map's size."""
    if not sparse(method):
        return photo
    return np.asarray(Image.fromarray((photo * 255).astype(np.uint8)).resize(
        (photo.shape[1] // POOL, photo.shape[0] // POOL), Image.LANCZOS), dtype=np.float64) / 255


def for_display(method, saliency: torch.Tensor):
    """(heat in [0, 1] or [-1, 1], signed?) as the lectures draw this method's map."""
    if method.output == "cam":
        return utils.cam_for_display(saliency)[0], False
    how = "sum" if method.signed else "max_abs"
    heat = utils.scale_for_display(utils.reduce_channels(saliency, how), signed=method.signed)[0]
    return (pooled(heat) if sparse(method) else heat), method.signed


def save_small(fig, path: Path, dpi: int) -> int:
    """Save `fig` as a 256-colour PNG (a tenth of the bytes of a full-colour one); its size in bytes."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    buffer.seek(0)
    picture = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, optimize=True)
    return path.stat().st_size


def thumbnails(photo, maps: dict[str, torch.Tensor]) -> None:
    """One small map over the photo per lecture, docs/thumbs/NN.png."""
    import matplotlib.pyplot as plt


    for number, name in {**{m.lecture[:2]: m.name for m in compared()}, **LECTURE_THUMB}.items():
        fig = plt.figure(figsize=(THUMB_INCHES, THUMB_INCHES))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        heat, signed = for_display(METHODS[name], maps[name])
        utils.show_heatmap(ax, heat, None, signed=signed, image=backdrop(METHODS[name], photo), bar=False)
        save_small(fig, THUMBS / f"{number}.png", THUMB_DPI)


def draw(photo, maps: dict[str, torch.Tensor], label: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = 2, 5
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_INCHES, WIDTH_INCHES * rows / cols * 1.12),
                             layout="constrained")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes.flat[0].imshow(photo)
    axes.flat[0].set_title(f"EfficientNet-Lite0:\n'{label}'", fontsize=11)
    for ax, (name, saliency) in zip(axes.flat[1:], maps.items()):
        method = next(m for m in compared() if m.name == name)
        heat, signed = for_display(method, saliency)
        utils.show_heatmap(ax, heat, None, signed=signed, image=backdrop(method, photo), bar=False)
        ax.set_title(f"{name}\n(lecture {int(method.lecture[:2])})", fontsize=11)
    fig.suptitle("Nine saliency maps of one prediction, each from scratch in PyTorch", fontsize=14)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", action="store_true",
                        help=f"redraw from the maps the last run kept in {CACHE.relative_to(ROOT)} (seconds)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"the PNG to write (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    torch.manual_seed(SEED)
    model, categories, transform = utils.load_imagenet_model("efficientnet_lite0")
    image = utils.load_image(utils.DATA_DIR / PHOTO)
    x = utils.preprocess([image], transform)  # (1, 3, 224, 224) in [-1, 1]
    with torch.no_grad():
        label = categories[int(model(x).argmax())]
    photo = (x[0].permute(1, 2, 0).numpy() + 1) / 2  # what the network sees, back in [0, 1]
    print(f"{PHOTO}: EfficientNet-Lite0 predicts '{label}'; the nine maps:", flush=True)
    if args.reuse and CACHE.is_file():
        maps = torch.load(CACHE, weights_only=True)
    else:
        maps = cover_maps(model, x)
        print("  LRP (lecture 9's thumbnail) ...", flush=True)
        maps["LRP"] = METHODS["LRP"](model, x, None)
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        torch.save(maps, CACHE)
    size = save_small(draw(photo, maps, label), args.out, DPI)
    print(f"wrote {args.out} ({size / 1000:.0f} KB)")

    thumbnails(photo, maps)
    print(f"wrote {THUMBS}/01.png to 09.png")
    if size > MAX_BYTES:
        print(f"error: {args.out} is over {MAX_BYTES // 1000} KB: lower DPI or WIDTH_INCHES", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
