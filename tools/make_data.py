"""Copy the course photographs into data/ and build the two-object composite.

    python tools/make_data.py

The photographs come from the folder SOURCE below (credits in data/CREDITS.md); data/ ships the copies.
The composite puts the tabby cat and the espresso cup side by side on a square
canvas, so the weights' 224x224 centre crop keeps both objects: lectures 5 to 7
ask Grad-CAM for "cat" and for "espresso" on the same picture.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import utils  # noqa: E402

SOURCE = ROOT.parent / "shared" / "sample_images"
IMAGENET_MEAN_RGB = (124, 116, 104)  # grey bands that are zero after normalisation


def square_crop(image: Image.Image, box: tuple[int, int, int, int], side: int) -> Image.Image:
    return image.crop(box).resize((side, side), Image.LANCZOS)


def make_composite() -> Image.Image:
    cat = utils.open_image(utils.DATA_DIR / "cat_chelsea.png")
    coffee = utils.open_image(utils.DATA_DIR / "coffee.png")
    side = 224
    canvas = Image.new("RGB", (2 * side, 2 * side), IMAGENET_MEAN_RGB)
    canvas.paste(square_crop(cat, (50, 0, 350, 300), side), (0, side // 2))  # the cat's face
    canvas.paste(square_crop(coffee, (80, 0, 480, 400), side), (side, side // 2))  # cup and saucer
    return canvas


def main() -> None:
    utils.DATA_DIR.mkdir(exist_ok=True)
    for name in [*utils.PHOTOS, "CREDITS.md"]:
        if (SOURCE / name).exists():
            shutil.copyfile(SOURCE / name, utils.DATA_DIR / name)
    make_composite().save(utils.DATA_DIR / utils.COMPOSITE)
    print(f"wrote {utils.DATA_DIR / utils.COMPOSITE}")


if __name__ == "__main__":
    main()
