"""Opening the user's images safely: any format PIL reads, as 8-bit RGB, decompression bombs refused."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from plumbing.errors import InputError, file_kind, shown


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def find_images(spec: Path) -> list[Path]:
    """A file is itself; a folder is every image file directly inside it, sorted.

    A named pipe, a device or a socket is refused without being opened (reading a pipe waits
    for a writer, forever); inside a folder only regular files count.
    """
    spec = Path(spec)
    kind = file_kind(spec, "--image")
    if kind == "folder":
        found = sorted(p for p in spec.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise InputError(f"--image {shown(spec)} is a folder with no images in it")
        return found
    if kind == "missing":
        raise InputError(f"--image {shown(spec)}: no such file or folder")
    if kind != "file":
        raise InputError(f"--image {shown(spec)} is {kind}, not an image file; give an image or a folder of them")
    return [spec]


def open_image(path: Path) -> Image.Image:
    """Any image PIL can read, as 8-bit RGB, the way a camera meant it to be seen.

    EXIF rotation is applied; transparency is laid on white; grey, palette, CMYK,
    16-bit and float images are converted. An image larger than PIL's
    decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) is refused, not decoded:
    PIL only warns below twice the limit, and we treat that warning as the error.
    Anything but a regular file (a named pipe would block) is refused unopened.
    """
    kind = file_kind(path, "image")
    if kind != "file":
        raise InputError(f"{shown(path)}: " + ("no such file" if kind == "missing" else f"{kind}, not an image file"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # read it all now, so a truncated file fails here
                image = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: too large, more than PIL's limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
                         "against decompression bombs; shrink it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path}: not a readable image ({error})") from None
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or (image.mode == "I" and pixels.max() > 255):
            top = 65535.0  # a 16-bit image
        elif image.mode == "F" and pixels.max() <= 1.0:
            top = 1.0  # floats in [0, 1]
        else:
            top = 255.0 if pixels.max() <= 255 else pixels.max()
        image = Image.fromarray(np.clip(pixels / top * 255.0, 0, 255).astype(np.uint8))
    if image.mode in ("P", "PA", "LA", "RGBA", "La") or "transparency" in image.info:
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return image.convert("RGB")


def load_images(specs: Sequence[Path]) -> tuple[list[Image.Image], list[str]]:
    """Open every image named by `specs` (files or folders): (images, their file stems)."""
    paths = [p for spec in specs for p in find_images(spec)]
    return [open_image(p) for p in paths], [p.stem for p in paths]


MAX_ASPECT = 2.0  # a longer side is cropped to this many short sides before resizing


def central_crop(image: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """Crop the long side of a very wide or tall image to `max_aspect` times the short side.

    The presets resize the short side to 256 and keep the central 224 x 224, so only the
    centre survives anyway; without this, a 4000 x 2 strip would first be resized to
    512,000 x 256 pixels. Images within the ratio are returned as they are.
    """
    w, h = image.size
    short, long = min(w, h), max(w, h)
    if long <= max_aspect * short:
        return image
    keep = max(1, round(max_aspect * short))
    if w > h:
        left = (w - keep) // 2
        return image.crop((left, 0, left + keep, h))
    top = (h - keep) // 2
    return image.crop((0, top, w, top + keep))
