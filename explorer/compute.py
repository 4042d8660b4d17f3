"""What the explorer's page computes, callable without a page: the tests call these very functions.

Every map comes from the lecture that teaches it, through its row of `plumbing.methods.METHODS`
(`row.load()`); the measures are lecture 8's (`deletion_curve`, `insertion_curve`, `area_under_curve`,
the cascading randomisation) and lecture 4's `completeness_delta`. The one thing written here is the
top-k classes' gradients from one forward and one batched backward (`torch.autograd.grad(...,
is_grads_batched=True)`), which the tests hold equal to lecture 1's `vanilla_gradient` class by class.

A mistake in what was asked (a file that is no image, a class that does not exist, a method a network
cannot take) raises `InputError`, whose one line the page shows; a method that cannot explain a
network gives its message in its own panel and the other maps still appear.
"""
from __future__ import annotations

import copy
import functools
import inspect
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import utils
from demos.common import digit_tensor, parse_target
from plumbing.digit_networks import MNIST_CLASSES
from plumbing.errors import InputError, WeightsUnavailable
from plumbing.images import central_crop, open_image
from plumbing.methods import METHODS, Method, Setting
from plumbing.networks import NETWORKS, load_imagenet_model, load_mnist_cnn
from plumbing.paths import DATA_DIR, PHOTOS, ROOT
from plumbing.weights import cached_weights_path, lite0_installed

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # an upload over this is refused (the page's limit too)
MIN_SIDE = 16  # pixels: a smaller picture has nothing to explain once enlarged to 224
CURVE_STEPS = 20  # deletion and insertion points (lecture 8 uses 50; 20 as in FINDINGS, for speed)
TOP_K = 5
SEED = 0  # every random draw (SmoothGrad's noise, LIME's and SHAP's coalitions, the random map) is seeded
CHUNK = {"SmoothGrad": 5, "integrated gradients": 5, "LIME": 32, "SHAP": 32}  # evaluations per forward,
#   so that progress can be counted in forward passes (never changes the result beyond rounding)
INTERNAL = ("batch_size", "generator", "feature_mask")  # settings the page does not offer
BASELINES = ("zeros (the mean colour)", "black", "blurred")  # a baseline setting's choices on the page
FAST = ("vanilla gradient", "gradient x input", "Grad-CAM", "guided backprop", "guided Grad-CAM")
DISPLAY_SIDE = 224  # digits are enlarged to this for the eye (nearest neighbour: the pixels stay pixels)
LECTURE_EIGHT = "08_comparative_analysis"


# %% Networks ---------------------------------------------------------------------------------


def available_networks() -> list[str]:
    """The networks the page offers: EfficientNet-Lite0 when its packages are installed, torchvision's
    whose weights are in torch.hub's cache (never a download), and the digit CNN shipped in data/."""
    names = []
    for name, row in NETWORKS.items():
        if not row.on_command_line:
            continue
        if name == "efficientnet_lite0":
            ok = lite0_installed()
        elif row.track == "imagenet":
            ok = cached_weights_path(row.weights()).is_file()
        else:
            ok = Path(row.weights()).is_file()
        if ok:
            names.append(name)
    return sorted(names, key=lambda n: (n != "efficientnet_lite0", NETWORKS[n].track == "mnist", n))


@dataclass
class Loaded:
    """A network ready to explain: its model in eval mode and how a picture becomes its input."""

    name: str
    track: str
    model: nn.Module
    categories: list[str]
    to_input: Callable[[Image.Image], torch.Tensor]  # a picture -> (1, C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    cam_layer: str | None
    conv_layers: list[str]
    lock: threading.Lock = field(default_factory=threading.Lock)  # one computation at a time per network
    randomised: dict[str, nn.Module] = field(default_factory=dict)  # stage label -> randomised copy

    def stages(self) -> list[str]:
        """Lecture 8's cascading randomisation stages, top layer first: the labels the page offers."""
        return [label for label, _ in lecture(LECTURE_EIGHT).randomisation_stages(self.model)]

    def weights(self, stage: str | None) -> nn.Module:
        """The model, or (lecture 8's sanity check, live) a copy with the layers down to `stage`
        re-initialised; the copies are made once, the trained model is never touched."""
        if not stage:
            return self.model
        if not self.randomised:
            eight = lecture(LECTURE_EIGHT)
            for label, model in eight.cascading_randomisation(self.model, eight.randomisation_stages(self.model),
                                                              SEED):
                self.randomised[label] = copy.deepcopy(model).eval()
        if stage not in self.randomised:
            raise InputError(f"no randomisation stage {stage!r} for {self.name}; "
                             f"choose from {', '.join(self.randomised)}")
        return self.randomised[stage]


def lecture(name: str):
    return utils.load_lecture(name)


_loaded: dict[str, Loaded] = {}
_loading = threading.Lock()


def load_network(name: str) -> Loaded:
    """The network `name`, loaded once per process (offline: cached or packaged weights only)."""
    with _loading:
        if name in _loaded:
            return _loaded[name]
        if name not in available_networks():
            raise InputError(f"network {name!r} is not available here; choose from "
                             f"{', '.join(available_networks())}")
        row = NETWORKS[name]
        if row.track == "mnist":
            model = load_mnist_cnn()
            net = Loaded(name, "mnist", model, list(MNIST_CLASSES), lambda image: digit_tensor(image)[None],
                         (0.0,), (1.0,), row.cam_layer, utils.conv_layer_names(model))
        else:
            try:
                model, categories, transform = load_imagenet_model(name)
            except WeightsUnavailable as error:
                raise InputError(f"{name}: {error}") from None
            net = Loaded(name, "imagenet", model, categories,
                         lambda image: utils.preprocess([central_crop(image)], transform),
                         tuple(transform.mean), tuple(transform.std), row.cam_layer, utils.conv_layer_names(model))
        _loaded[name] = net
        return net


# %% Pictures --------------------------------------------------------------------------------


def sample_photos() -> list[str]:
    """The photos of data/ the page offers, by file name."""
    return [p for p in PHOTOS if (DATA_DIR / p).is_file()]


def open_upload(path: str | Path, max_bytes: int = MAX_UPLOAD_BYTES) -> Image.Image:
    """An uploaded file as an 8-bit RGB picture (plumbing.images.open_image: bombs refused, CMYK, 16-bit,
    palette and transparent images converted), or InputError in one line a page can show."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise InputError("the upload did not arrive; try again") from None
    if size > max_bytes:
        raise InputError(f"the file is {size / 2**20:.1f} MB; the explorer takes images up to "
                         f"{max_bytes / 2**20:.0f} MB")
    try:
        image = open_image(path)
    except InputError as error:  # its message starts with the temporary file's path: say "the file"
        raise InputError(str(error).replace(f"{str(path)!r}", "it").replace(str(path), "the file")) from None
    return check_size(image)


def check_size(image: Image.Image) -> Image.Image:
    if min(image.size) < MIN_SIDE:
        raise InputError(f"the image is {image.size[0]} x {image.size[1]} pixels; the explorer needs at least "
                         f"{MIN_SIDE} x {MIN_SIDE} (a network sees 224 x 224, or 28 x 28 for digits)")
    return image


def drawing_to_image(drawing: np.ndarray | None) -> Image.Image:
    """A sketch pad's picture (H, W, 3 or 4) as a grey picture; a blank pad is a message."""
    if drawing is None:
        raise InputError("draw a digit first")
    array = np.asarray(drawing)
    if array.ndim == 3 and array.shape[2] == 4 and array[..., 3].min() < array[..., 3].max():
        ink = array[..., 3].astype(np.float32)  # strokes on a transparent pad: ink is where alpha is
    else:
        grey = array.astype(np.float32) if array.ndim == 2 else array[..., :3].astype(np.float32).mean(-1)
        ink = 255.0 - grey if grey.mean() > 127 else grey  # dark ink on a light pad, or light on dark
    if ink.max() <= 0:
        raise InputError("the pad is empty: draw a digit with the mouse")
    return Image.fromarray(np.clip(ink, 0, 255).astype(np.uint8), mode="L").convert("RGB")


def to_input(net: Loaded, image: Image.Image) -> torch.Tensor:
    """(1, C, H, W) as the network expects it."""
    return net.to_input(check_size(image))


def to_picture(net: Loaded, x: torch.Tensor) -> np.ndarray:
    """(H, W, 3) in [0, 1]: the input as the network sees it."""
    picture = utils.denormalize(x[:1], net.mean, net.std)[0]
    return np.repeat(picture, 3, axis=-1) if picture.shape[-1] == 1 else picture


# %% Classes ---------------------------------------------------------------------------------


def top_classes(net: Loaded, x: torch.Tensor, k: int = TOP_K, model: nn.Module | None = None) \
        -> list[tuple[int, str, float]]:
    """The prediction's k likeliest classes: (index, name, probability)."""
    with torch.no_grad():
        probs = (model or net.model)(x).softmax(1)[0]  # (K,)
    top = probs.topk(min(k, probs.numel()))
    return [(int(i), net.categories[int(i)], float(p)) for p, i in zip(top.values, top.indices)]


def class_index(net: Loaded, text: str | int | None) -> int | None:
    """A class given by index or by name (any case), checked against the network; None: the prediction."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        return parse_target(str(text).strip(), net.categories)
    except InputError as error:
        raise InputError(str(error).replace("--target ", "class ", 1)) from None


def top_classes_gradients(model: nn.Module, x: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """dS_c/dx for each class c of one example, (k, C, H, W), from ONE forward and ONE batched backward.

    `is_grads_batched=True` runs the backward under vmap, one row of one-hot `grad_outputs` per class,
    instead of k backward passes (or k forward passes, as a per-class loop does). Equal to lecture 1's
    `vanilla_gradient(model, x, c, absolute=False)` for each c (tests/test_explorer.py).
    """
    leaf = x[:1].detach().clone().requires_grad_(True)  # (1, C, H, W)
    with torch.enable_grad():
        logits = model(leaf)  # (1, K)
        one_hot = torch.zeros(len(classes), *logits.shape, dtype=logits.dtype, device=logits.device)  # (k, 1, K)
        one_hot[torch.arange(len(classes)), 0, torch.tensor(classes)] = 1.0
        (grads,) = torch.autograd.grad(logits, leaf, grad_outputs=one_hot, is_grads_batched=True)  # (k, 1, C, H, W)
    return grads[:, 0].detach()


# %% Methods and their settings ---------------------------------------------------------------


def methods_for_page() -> list[Method]:
    """Every method of the course, in the table's order."""
    return list(METHODS.values())


def page_settings(row: Method) -> dict[str, Setting]:
    """The settings a user may move: the row's, less memory and seeding (fixed by the explorer)."""
    return {k: s for k, s in row.settings.items() if k not in INTERNAL}


def lecture_file(row: Method) -> Path:
    return ROOT / f"{row.lecture}.py"


def baseline_value(net: Loaded, x: torch.Tensor, choice: object, zeros: object = None):
    """A page's baseline choice as the method's `baseline`: zeros (after normalisation, the mean colour,
    as in Captum; `zeros` is how the method's row says it, None or 0.0), a number, a black picture
    ((0 - mean) / std), or lecture 8's blurred copy."""
    if choice is None or choice == BASELINES[0]:
        return zeros
    if isinstance(choice, (int, float)) and not isinstance(choice, bool):
        return float(choice)
    if choice == BASELINES[1]:
        mean = torch.tensor(net.mean, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(net.std, dtype=x.dtype).view(1, -1, 1, 1)
        return ((0.0 - mean) / std).expand_as(x).clone()
    if choice == BASELINES[2]:
        return lecture(LECTURE_EIGHT).blurred(x)
    raise InputError(f"baseline {choice!r}: choose from {', '.join(BASELINES)}")


def method_kwargs(row: Method, net: Loaded, x: torch.Tensor, given: dict | None) -> dict:
    """The keyword arguments of `row`'s function: its defaults, the user's `given` settings checked
    against the row's ranges and choices, the explorer's chunking and a seeded generator."""
    given = dict(given or {})
    unknown = set(given) - set(page_settings(row))
    if unknown:
        raise InputError(f"{row.name} has no setting {', '.join(sorted(unknown))}; "
                         f"its settings: {', '.join(page_settings(row)) or 'none'}")
    kwargs = {}
    for key, setting in page_settings(row).items():
        value = given.get(key, setting.default)
        if key == "baseline":
            value = baseline_value(net, x, value, setting.default)
        elif key == "layer":
            value = value or net.cam_layer  # a wrong name: the lecture's find_layer lists the layers
        elif setting.choices:
            if value not in setting.choices:
                raise InputError(f"{row.name}'s {key} is {value!r}; choose from "
                                 f"{', '.join(map(str, setting.choices))}")
        elif setting.low is not None and value is not None:
            if isinstance(setting.low, int) and isinstance(setting.high, int) and isinstance(setting.default, int) \
                    or key in ("n_samples", "steps"):
                if float(value) != int(float(value)):
                    raise InputError(f"{row.name}'s {key} is {value}; it takes whole numbers")
                value = int(float(value))
            else:
                value = float(value)
            if not setting.low <= value <= setting.high:
                raise InputError(f"{row.name}'s {key} is {value}; it takes {setting.low:g} to {setting.high:g}")
        kwargs[key] = value
    params = inspect.signature(row.load()).parameters
    if "batch_size" in params and row.name in CHUNK:
        kwargs["batch_size"] = CHUNK[row.name]
    if "generator" in params:
        kwargs["generator"] = torch.Generator().manual_seed(SEED)
    return kwargs


def needs_conv(row: Method, net: Loaded) -> str | None:
    """Why `row` cannot explain `net` before trying (a CAM on a network without a CAM layer), or None."""
    if row.networks == "conv" and net.cam_layer is None and not net.conv_layers:
        return f"{row.name} reads a convolutional layer's map; {net.name} has none"
    return None


# %% Progress: counted in forward passes ----------------------------------------------------------


class counting_forwards:
    """Calls `report(calls)` before every forward pass of `model` (a pre-hook, removed on exit)."""

    def __init__(self, model: nn.Module, report: Callable[[int], None] | None):
        self.model, self.report, self.calls = model, report, 0

    def __enter__(self):
        def hook(module, args):
            self.calls += 1
            if self.report is not None:
                self.report(self.calls)
        self.handle = self.model.register_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        return False


def expected_forwards(row: Method, kwargs: dict) -> int:
    """Roughly how many forward passes the method makes, for a progress bar."""
    chunk = kwargs.get("batch_size") or 1
    if row.name == "SmoothGrad":
        return 1 + -(-kwargs["n_samples"] // chunk)
    if row.name == "integrated gradients":
        return 1 + -(-kwargs["steps"] // chunk)
    if row.name in ("LIME", "SHAP"):
        n = kwargs.get("n_samples") or 2 ** 16 + 2
        return 2 + -(-n // chunk)
    return 2


def explained_class(net: Loaded, model: nn.Module, x: torch.Tensor, target: int | None) -> int:
    """`target`, checked, or the prediction of `model` (the randomised copy predicts its own)."""
    if target is None:
        with torch.no_grad():
            return int(model(x).argmax(1)[0])
    if not 0 <= int(target) < len(net.categories):
        raise InputError(f"class {target} is out of range: {net.name} has classes 0 to {len(net.categories) - 1}")
    return int(target)


# %% Maps ---------------------------------------------------------------------------------------


@dataclass
class Explained:
    """One method's result: its raw map (or why there is none), its time, and its display."""

    name: str
    map: torch.Tensor | None
    seconds: float
    error: str | None = None
    kwargs: dict = field(default_factory=dict)


def explain(net: Loaded, x: torch.Tensor, target: int | None, methods: dict[str, dict],
            stage: str | None = None, progress: Callable[[float, str], None] | None = None) -> dict[str, Explained]:
    """Each method's map of the one input x for class `target` (None: the prediction), on the trained
    network or on its randomised copy down to `stage`. `methods` maps a method's name to its settings.

    Calls `row.load()(model, x, target, **settings)`: the lecture's own function, nothing else.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"no method {', '.join(map(repr, unknown))}; the methods: {', '.join(METHODS)}")
    model = net.weights(stage)
    c = explained_class(net, model, x, target)
    results = {}
    with net.lock, torch.no_grad():  # the methods turn gradients on where they need them
        for number, (name, given) in enumerate(methods.items()):
            row = METHODS[name]
            kwargs = method_kwargs(row, net, x, given)
            why = needs_conv(row, net)
            if why:
                results[name] = Explained(name, None, 0.0, why, kwargs)
                continue
            total = expected_forwards(row, kwargs)

            def report(calls, name=name, number=number, total=total):
                if progress is not None:
                    progress((number + min(calls / total, 1.0)) / len(methods), f"{name}: {calls} of ~{total} "
                                                                                   "forward passes")
            start = time.perf_counter()
            try:
                with counting_forwards(model, report):
                    saliency = row.load()(model, x, c, **kwargs)
                results[name] = Explained(name, saliency, time.perf_counter() - start, None, kwargs)
            except (ValueError, NotImplementedError, RuntimeError) as error:
                # lrp and deeplift refuse layers they cannot handle; a CAM, a layer without a map
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                results[name] = Explained(name, None, time.perf_counter() - start,
                                          f"{name} cannot explain {net.name} here: {first}", kwargs)
    return results


# %% Measures: lecture 8's curves, lecture 4's completeness ------------------------------------------


def smooth_random_map(x: torch.Tensor, seed: int = SEED) -> torch.Tensor:
    """(1, H, W): lecture 8's chance line, a 7 x 7 grid of uniform numbers enlarged bilinearly, random
    but as smooth as a real map (a per-pixel random order measures the holes, not a map: FINDINGS)."""
    grid = lecture(LECTURE_EIGHT).GRID
    low = torch.rand(1, 1, grid, grid, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(low, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]


@dataclass
class Measured:
    deletion: float  # AUC of the class's probability as the most salient pixels go (low is good)
    insertion: float  # AUC as they come back onto a blurred copy (high is good)


def curves(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target: int, steps: int) -> Measured:
    eight = lecture(LECTURE_EIGHT)
    deletion = eight.deletion_curve(model, x, saliency, target, steps)
    insertion = eight.insertion_curve(model, x, saliency, target, steps)
    return Measured(float(eight.area_under_curve(deletion)[0]), float(eight.area_under_curve(insertion)[0]))


def measure(net: Loaded, x: torch.Tensor, target: int | None, results: dict[str, Explained],
            stage: str | None = None, steps: int = CURVE_STEPS,
            progress: Callable[[float, str], None] | None = None) -> dict[str, object]:
    """Deletion and insertion AUC of every map and of a smooth random map (the chance line), all with
    the same class and steps; and integrated gradients' completeness error, sum IG - (S_c(x) - S_c(x')).
    """
    steps = utils.check_count(steps, "steps")
    model = net.weights(stage)
    c = explained_class(net, model, x, target)
    names = [n for n, r in results.items() if r.map is not None]
    out: dict[str, object] = {"curves": {}, "completeness": None}
    with net.lock, torch.no_grad():
        for i, name in enumerate(names):
            if progress is not None:
                progress(i / (len(names) + 1), f"deletion and insertion: {name}")
            out["curves"][name] = curves(model, x, results[name].map, c, steps)
        if progress is not None:
            progress(len(names) / (len(names) + 1), "deletion and insertion: smooth random map")
        out["chance"] = curves(model, x, smooth_random_map(x), c, steps)
        ig = results.get("integrated gradients")
        if ig is not None and ig.map is not None:
            four = lecture("04_integrated_gradients")
            baseline = ig.kwargs.get("baseline")
            delta = float(four.completeness_delta(model, x, ig.map, baseline, c)[0])
            with torch.no_grad():
                x_baseline = utils.as_baseline(baseline, x)
                change = float(model(x)[0, c] - model(x_baseline.contiguous())[0, c])
            out["completeness"] = (delta, change)
    return out


# %% Display: the course's colours --------------------------------------------------------------


def display_values(row: Method, saliency: torch.Tensor) -> np.ndarray:
    """(H, W) in [0, 1] (magnitudes) or [-1, 1] (signed, per the row): summed over channels (in absolute
    value for a magnitude), divided by its 99th percentile of |value|: every map on one scale."""
    how = "sum" if row.signed else "sum_abs"
    return utils.scale_for_display(utils.reduce_channels(saliency[:1], how), signed=row.signed)[0]


def render(row: Method, saliency: torch.Tensor, picture: np.ndarray | None, alpha: float = 0.8) -> np.ndarray:
    """(H, W, 3) uint8: the map in the course's colours (inferno for magnitudes, red-white-blue for signed
    maps), alone or over a grey copy of the picture, each pixel as opaque as it is strong
    (utils.show_heatmap's rule, drawn without a figure)."""
    import matplotlib
    from matplotlib.colors import Normalize

    values = display_values(row, saliency)
    cmap = matplotlib.colormaps[utils.SIGNED_CMAP if row.signed else utils.MAGNITUDE_CMAP]
    norm = Normalize(-1.0 if row.signed else 0.0, 1.0)
    if picture is None:
        rgb = cmap(norm(values))[..., :3]
    else:
        low, high = utils.OVERLAY_GREY
        grey = (low + (high - low) * picture.mean(-1))[..., None]  # (H, W, 1)
        rgba = utils.translucent(cmap, norm, values, alpha)  # (H, W, 4)
        rgb = rgba[..., :3] * rgba[..., 3:] + grey * (1.0 - rgba[..., 3:])
    return enlarge((np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def enlarge(image: np.ndarray) -> np.ndarray:
    """A small picture (a digit's 28 x 28) enlarged to DISPLAY_SIDE by whole pixels, for the eye."""
    side = max(image.shape[:2])
    factor = max(1, DISPLAY_SIDE // side)
    return image.repeat(factor, 0).repeat(factor, 1) if factor > 1 else image


def colour_bar(signed: bool, width: int = 256, height: int = 14) -> np.ndarray:
    """(height, width, 3) uint8: the scale every map shares, from 0 (or -1) to 1 (the 99th percentile)."""
    import matplotlib

    cmap = matplotlib.colormaps[utils.SIGNED_CMAP if signed else utils.MAGNITUDE_CMAP]
    ramp = cmap(np.linspace(0, 1, width))[None, :, :3].repeat(height, 0)
    return (ramp * 255).astype(np.uint8)


def picture_image(net: Loaded, x: torch.Tensor) -> np.ndarray:
    return enlarge((to_picture(net, x) * 255).clip(0, 255).astype(np.uint8))


def environment() -> dict[str, str]:
    """What the page needs set before Gradio is imported: nothing phones home."""
    return {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "GRADIO_TELEMETRY_ENABLED": "False",
            "DO_NOT_TRACK": "1"}


def set_offline_environment() -> None:
    for key, value in environment().items():
        os.environ.setdefault(key, value)


@functools.cache
def lecture_source(name: str) -> str:
    """A lecture's source, for the page's links (only the course's numbered scripts)."""
    from plumbing.lectures import lectures

    if name not in lectures().values():
        raise InputError(f"no lecture {name!r}")
    return (ROOT / f"{name}.py").read_text()
