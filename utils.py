"""What the lectures share and a student reads: targets, gradients in chunks, layers, figures.

Nothing about a saliency method lives here: each method is taught, whole, in its own
numbered script. This file holds what a student meets inside those methods and the
preprocessing and plotting the lectures share, in the order the lectures need them;
each helper names the lecture that first uses it. The plumbing a student never needs
to read (the command line, safe image decoding, the networks and their weights, the
tables of methods and networks) lives below this file in `plumbing/`, and the demos'
set-up above it in `demos/`; this file re-exports the few plumbing names the lectures call.

Sections (each a `# %%` cell):
    lecture 1: targets, images in and figures out, the quick start (load_image, preprocess_image,
    visualize_saliency) . lecture 2: loading a lecture, signed maps
    . lecture 3: many points per example, in chunks . lecture 4: baselines
    . lecture 5: layers, hooks, comparing maps
"""
from __future__ import annotations

import contextlib
import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

# The plumbing a student never needs to read lives below this file, in plumbing/; the names the
# lectures call from it are re-exported here, so a lecture only ever writes `utils.NAME`.
from plumbing.cli import float_in_range, int_in_range, make_parser  # noqa: F401 (re-exported)
from plumbing.cli import in_kernel, notebook_flags  # noqa: F401 (re-exported: a notebook's flags)
from plumbing.errors import InputError, WeightsUnavailable, command_line, file_kind, shown  # noqa: F401
from plumbing.images import central_crop, load_images, open_image  # noqa: F401
from plumbing.lectures import load_lecture  # noqa: F401 (re-exported: lecture 2 teaches it)
from plumbing.networks import NETWORKS, load_imagenet_model, load_mnist_cnn  # noqa: F401
from plumbing.digit_networks import MnistCNN  # noqa: F401
from plumbing.paths import COMPOSITE, DATA_DIR, OUTPUT_DIR, PHOTOS, ROOT  # noqa: F401
from plumbing.weights import ImagePreset


# %% Lecture 1: which class is explained ------------------------------------------------


def resolve_target(logits: torch.Tensor, target: object) -> torch.Tensor:
    """The class index of each example as a long tensor `(N,)`, as every method of the course reads `target`.

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


# %% Lecture 1: images in, figures out --------------------------------------------------


def preprocess(images: Sequence[Image.Image], transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """PIL images through the weights' own `transforms()`: a normalised batch `(N, 3, H, W)`."""
    return torch.stack([transform(central_crop(image)) for image in images])


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the normalisation for display: `(N, C, H, W)` tensor -> `(N, H, W, C)` in [0, 1]."""
    mean_t = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.detach() * std_t + mean_t).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def top_k(logits: torch.Tensor, categories: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """Per example, the k most probable classes as (name, probability)."""
    probs = logits.detach().float().softmax(dim=1).cpu()
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    return [[(categories[i], float(p)) for p, i in zip(vs, ix)] for vs, ix in zip(values, indices)]


def shorten(text: str, length: int = 22) -> str:
    """`text` cut to `length` characters with an ellipsis, for panel titles ("American Staffordshire terrier")."""
    return text if len(text) <= length else text[:length - 1].rstrip() + "…"


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


SCREEN = (16.0, 9.0)  # inches: a class figure fills a 16:9 projector (1760 x 990 px at SAVE_DPI)
SAVE_DPI = 110
# Font sizes in points for a figure made for the screen; titles of 12 pt are 18 px at 110 dpi,
# readable from the back of a room once the figure fills 1920 x 1080.
SCREEN_FONTS = {"suptitle": 16, "title": 12, "label": 11, "ticks": 10}
SMALL_FONTS = {"suptitle": 12, "title": 9, "label": 7, "ticks": 7}  # the older, panel-sized figures


def fonts(ax_or_fig) -> dict[str, float]:
    """The font sizes of the figure an axis (or figure) belongs to: large on screen figures."""
    fig = getattr(ax_or_fig, "figure", None) or ax_or_fig
    return getattr(fig, "course_fonts", SMALL_FONTS)


def _new_figure(rows: int, cols: int, figsize: tuple[float, float], title: str | None, sizes: dict):
    import matplotlib

    if not in_kernel():  # a notebook keeps its inline backend: save_figure shows each figure there
        matplotlib.use("Agg")  # figures go to files: no screen needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False, layout="constrained")
    fig.course_fonts = sizes  # read by show_image, show_heatmap and shared_colorbar
    if title:
        fig.suptitle(title, fontsize=sizes["suptitle"])
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def figure_grid(rows: int, cols: int, panel: float = 2.6, title: str | None = None, landscape: bool = False):
    """A rows x cols grid of image panels, laid out so titles and colour bars are not clipped.

    `landscape=True` makes a figure for the projector: 16 x 9 inches whatever the grid, with
    fonts readable at 1920 x 1080 (`panel` is then ignored).
    """
    if landscape:
        return _new_figure(rows, cols, SCREEN, title, SCREEN_FONTS)
    return _new_figure(rows, cols, (panel * cols + 0.6, panel * rows + (0.5 if title else 0.2)), title,
                       SMALL_FONTS)


def examples_per_row(n_examples: int, n_panels: int, title_lines: int = 1) -> int:
    """How many examples of `n_panels` panels each share a row of a 16:9 figure: the count
    that gives the largest square panels (one inch kept for colour bars, a title line 0.4 in)."""
    width, height = SCREEN[0] - 1.0, SCREEN[1] - 0.4 * title_lines

    def side(k: int) -> float:
        rows = -(-n_examples // k)  # ceil
        return min(width / (k * n_panels), height / rows - 0.5)  # 0.5 in for two lines of panel title

    return max(range(1, n_examples + 1), key=lambda k: (side(k), -k))


def example_grid(n_examples: int, n_panels: int, title: str | None = None):
    """A 16:9 figure for `n_examples` examples of `n_panels` panels each, laid out wide.

    Examples share a row when that gives larger panels (4 digits of 3 panels: two rows of two).
    Returns (fig, panels), panels[i] the list of example i's `n_panels` axes; unused cells are blank.
    """
    lines = 1 + (title or "").count("\n")
    per_row = examples_per_row(n_examples, n_panels, lines)
    rows, cols = -(-n_examples // per_row), per_row * n_panels
    fig, axes = figure_grid(rows, cols, title=title, landscape=True)
    side = (SCREEN[0] - 1.0) / cols  # the panels fill the width; the height follows, up to 16:9
    fig.set_figheight(min(SCREEN[1], rows * (side + 0.7) + 0.4 * lines))
    # Narrow panels get smaller titles, never below 9.5 pt (15 px on a 1920 x 1080 screen).
    fig.course_fonts = dict(SCREEN_FONTS, title=max(9.5, min(SCREEN_FONTS["title"], 5.2 * side)))
    panels = [list(axes[i // per_row, (i % per_row) * n_panels: (i % per_row + 1) * n_panels])
              for i in range(n_examples)]
    for ax in list(axes.flat)[n_examples * n_panels:]:  # row-major: example i holds cells i*n .. i*n + n - 1
        ax.axis("off")
    return fig, panels


def show_image(ax, image: np.ndarray, title: str | None = None) -> None:
    """An RGB `(H, W, 3)` or grey `(H, W)` image in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    if title:
        ax.set_title(title, fontsize=fonts(ax)["title"])


MAGNITUDE_CMAP = "inferno"  # every magnitude, alone or over a picture: dark weak, light strong
SIGNED_CMAP = "RdBu_r"  # every signed map: red positive, blue negative, white zero
OVERLAY_GREY = (0.25, 0.75)  # an overlay's picture is greyed into this range, so colours stand out


def translucent(cmap, norm, values: np.ndarray, alpha: float) -> np.ndarray:
    """RGBA colours `(..., 4)` of an overlay: the colour map's colour, as opaque as |value| is strong."""
    rgba = cmap(norm(values))
    rgba[..., 3] = alpha * np.clip(np.abs(values), 0.0, 1.0)
    return rgba


def _bar_colours(signed: bool, overlay: bool, alpha: float = 0.8):
    """(norm, colour map) of a bar: the map's own colours, or over a picture the translucent
    ramp laid over mid-grey, the colours a reader sees there."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap, Normalize

    cmap = plt.get_cmap(SIGNED_CMAP if signed else MAGNITUDE_CMAP)
    norm = Normalize(-1.0 if signed else 0.0, 1.0)
    if not overlay:
        return norm, cmap
    low, high = OVERLAY_GREY
    ramp = translucent(cmap, norm, np.linspace(norm.vmin, norm.vmax, 256), alpha)  # (256, 4)
    backdrop = (low + high) / 2
    return norm, ListedColormap(ramp[:, :3] * ramp[:, 3:] + backdrop * (1.0 - ramp[:, 3:]))


def _bar_label(label: str | None, signed: bool, overlay: bool) -> str:
    if signed and "red" not in (label or ""):
        zero = "clear" if overlay else "white"
        return f"{label}; red +, blue -" if label else f"red +, blue -, 0 {zero}"
    return label or "strength (1 = strongest shown)"


def show_heatmap(ax, heat: np.ndarray, title: str | None = None, signed: bool = False,
                 image: np.ndarray | None = None, alpha: float = 0.8, label: str | None = None,
                 outline: np.ndarray | None = None, bar: bool = True):
    """A map scaled to [0, 1] (or [-1, 1] when `signed`), with a colour bar that shows what is drawn.

    One sequential colour map for magnitudes (inferno) and one diverging map for signed
    values (red positive, blue negative, white zero), alone or over a picture. With
    `image`, the map is laid over a dimmed grey copy of the picture, each pixel as opaque
    as it is strong (alpha * |value|), so weak values leave the picture visible; the
    colour bar then shows those same translucent colours over mid-grey. `outline` (a
    grey picture, e.g. a digit) draws the picture's edge (its 0.5 level) as a thin line.
    `label` names the bar (a default says what the colours mean); a signed bar always says
    what red and blue mean. `bar=False` draws no bar: panels on one scale share one
    (`shared_colorbar`). Returns the bar, or None.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    cmap = plt.get_cmap(SIGNED_CMAP if signed else MAGNITUDE_CMAP)
    norm = Normalize(-1.0 if signed else 0.0, 1.0)
    heat = np.asarray(heat, dtype=np.float64)
    if image is None:
        ax.imshow(heat, cmap=cmap, norm=norm)
    else:
        picture = np.asarray(image, dtype=np.float64)
        grey = picture.mean(axis=-1) if picture.ndim == 3 else picture  # (H, W)
        low, high = OVERLAY_GREY
        ax.imshow(low + (high - low) * grey, cmap="gray", vmin=0, vmax=1)
        ax.imshow(translucent(cmap, norm, heat, alpha))
    if outline is not None:
        edge = np.asarray(outline, dtype=np.float64)
        edge = edge.mean(axis=-1) if edge.ndim == 3 else edge
        if edge.min() < 0.5 < edge.max():  # a blank picture has no edge to draw
            limits = ax.get_xlim(), ax.get_ylim()
            ax.contour(edge, levels=[0.5], colors="0.1" if signed else "cyan", linewidths=0.7)
            ax.set_xlim(limits[0])
            ax.set_ylim(limits[1])
    if title:
        ax.set_title(title, fontsize=fonts(ax)["title"])
    if not bar:
        return None
    return _colorbar(ax.figure, ax, signed, image is not None, label, alpha, fraction=0.046, pad=0.02)


def _colorbar(fig, axes, signed: bool, overlay: bool, label: str | None, alpha: float = 0.8, **where):
    from matplotlib.cm import ScalarMappable

    norm, bar_cmap = _bar_colours(signed, overlay, alpha)
    bar = fig.colorbar(ScalarMappable(norm, bar_cmap), ax=axes, ticks=[-1, 0, 1] if signed else [0, 0.5, 1],
                       **where)
    sizes = fonts(fig)
    bar.ax.tick_params(labelsize=sizes["ticks"])
    bar.set_label(_bar_label(label, signed, overlay), fontsize=sizes["label"])
    return bar


def shared_colorbar(fig, axes, signed: bool = False, image: bool = False, label: str | None = None,
                    location: str = "right"):
    """One colour bar for every panel in `axes` (a list or array of axes) drawn on the same scale,
    instead of one bar per panel. `image`: the panels are overlays (show_heatmap's `image`)."""
    axes = list(np.asarray(axes, dtype=object).flat)
    # Placed beside every panel of the figure, not only `axes`: a bar that took its room from
    # a few panels in the middle of a grid would push them out of line with the others.
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    return _colorbar(fig, panels or axes, signed, image, label, location=location, shrink=0.8, aspect=30)


def save_figure(fig, out_dir: Path, name: str) -> Path:
    """Save into `out_dir` (created when missing) as a PNG, close the figure, say where.

    In a notebook the figure is also shown, inline, under the cell that made it.
    """
    import matplotlib.pyplot as plt

    path = Path(out_dir) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=SAVE_DPI)
        if in_kernel():
            from IPython.display import display

            display(fig)  # closed just below, so the kernel would never draw it at the cell's end
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        plt.close(fig)
    print(f"saved {path}")
    return path


# %% Lecture 1: the quick start, three helpers for a first saliency map in a few lines -----
#
#     image = utils.load_image("data/cat_chelsea.png")
#     x = utils.preprocess_image(image).requires_grad_(True)        # (1, 3, 224, 224)
#     model(x)[0, class_idx].backward()
#     utils.visualize_saliency(image, x.grad.abs().max(dim=1)[0])   # outputs/saliency.png

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the colour statistics torchvision's ImageNet weights were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224  # short side resized to 256, then the central 224 x 224: torchvision's ImageNet recipe


def load_image(path: str | Path) -> Image.Image:
    """An image file as an RGB PIL image, decoded safely (any format, 16-bit, EXIF rotation, no bombs).

    A relative path is looked for in the working folder, then in the course folder, so
    "data/cat_chelsea.png" works from anywhere. A missing file is one line naming the photos that ship.
    """
    path = Path(path)
    if file_kind(path, "load_image:") == "missing" and not path.is_absolute() and (ROOT / path).exists():
        path = ROOT / path
    if file_kind(path, "load_image:") == "missing":
        ships = ", ".join(f"data/{name}" for name in [*PHOTOS, COMPOSITE])
        raise InputError(f"{shown(path)}: no such image; the photos that ship with the course are {ships}")
    return open_image(path)


def preprocess_image(image: Image.Image) -> torch.Tensor:
    """A PIL image as the `(1, 3, 224, 224)` tensor torchvision's ImageNet networks expect.

    Resized (short side 256) and centre-cropped to 224, scaled to [0, 1], normalised with
    ImageNet's mean and std. Not for EfficientNet-Lite0, which reads [-1, 1]: use its own
    `transforms()` (lecture 1's demo does).
    """
    return preprocess([image], ImagePreset(RESIZE, CROP, IMAGENET_MEAN, IMAGENET_STD))  # (1, 3, 224, 224)


def saliency_as_map(saliency) -> np.ndarray:
    """One map `(H, W)` from a tensor or array shaped (H, W), (1, H, W), (3, H, W) or (1, C, H, W):
    channels become their largest |value| (Simonyan et al.'s reduction)."""
    heat = np.asarray(saliency.detach().float().cpu() if isinstance(saliency, torch.Tensor) else saliency,
                      dtype=np.float64)
    if heat.ndim == 4 and heat.shape[0] == 1:
        heat = heat[0]  # (C, H, W)
    if heat.ndim == 3 and heat.shape[0] in (1, 3):
        heat = np.abs(heat).max(axis=0)  # (H, W)
    if heat.ndim != 2:
        raise InputError(f"visualize_saliency: a map of shape {tuple(np.shape(saliency))}; expected one map, "
                         "(H, W), (1, H, W) or (1, C, H, W)")
    return heat


def visualize_saliency(image: Image.Image, saliency, title: str | None = None, out_dir: Path = OUTPUT_DIR,
                       name: str = "saliency.png", path: Path | None = None, show: bool | None = None) -> Path:
    """The photo and its saliency map side by side, with a colour bar; saved, and shown on a screen.

    `image` is the PIL image given to `preprocess_image` (it is cropped the same way, so the two
    panels line up); `saliency` is a map (H, W), (1, H, W) or (1, C, H, W), a tensor or an array,
    drawn as |value| scaled to its 99th percentile. The figure goes to `path`, or to `out_dir/name`
    (default outputs/saliency.png). `show=None` shows it when matplotlib has a screen to draw on.
    Returns the file's path.
    """
    import matplotlib.pyplot as plt

    heat = scale_for_display(np.abs(saliency_as_map(saliency))[None])[0]  # (H, W) in [0, 1]
    side = heat.shape
    photo = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(
        (np.clip(np.asarray(image, dtype=np.float64), 0, 1) * 255).astype(np.uint8))
    scale = max(side) * RESIZE / CROP / min(photo.size)  # the crop preprocess_image took, at the map's size
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BILINEAR)
    left, top = (photo.width - side[1]) // 2, (photo.height - side[0]) // 2
    photo = np.asarray(photo.crop((left, top, left + side[1], top + side[0])), dtype=np.float64) / 255

    fig, (ax_photo, ax_map) = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
    fig.course_fonts = SCREEN_FONTS
    for ax in (ax_photo, ax_map):
        ax.set_xticks([])
        ax.set_yticks([])
    show_image(ax_photo, photo, "the image, cropped as the network sees it")
    show_heatmap(ax_map, heat, "saliency map", label="|saliency| (1 = its 99th percentile)")
    if title:
        fig.suptitle(title, fontsize=SCREEN_FONTS["suptitle"])
    path = Path(path) if path is not None else Path(out_dir) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=SAVE_DPI)
    except OSError as error:
        plt.close(fig)
        raise InputError(f"cannot write {shown(path)}: {error.strerror or error}") from None
    print(f"saved {path}")
    interactive = plt.get_backend().lower() not in ("agg", "pdf", "ps", "svg", "cairo", "template")
    if show if show is not None else interactive:
        plt.show()
    plt.close(fig)
    return path


# %% Lecture 2: one lecture's method in another, and signed maps ------------------------


def show_signed_map(ax, grads: torch.Tensor, title: str, bar: bool = True) -> None:
    """One signed `(1, C, H, W)` map on the diverging colour map, white at zero, with its bar.

    Channels are summed (a red pixel's three gradients mostly share a sign at an edge),
    and the map is divided by its 99th percentile of |value|, so that a few huge
    values do not turn the rest white.
    """
    heat = scale_for_display(reduce_channels(grads, "sum"), percentile=99.0, signed=True)[0]
    show_heatmap(ax, heat, title, signed=True, bar=bar,
                 label="sum over channels / 99th pct" if grads.shape[1] > 1 else "1 = 99th pct of |value|")


# %% Lecture 3: many points per example, in chunks (also lectures 4 and 8) --------------


def check_batch_size(batch_size: int | None) -> int | None:
    """`batch_size` as an int (None stays None); InputError unless it is a whole number >= 1."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a whole number >= 1 or None, got {batch_size}")
    return int(batch_size)


def check_count(n: object, name: str) -> int:
    """`n` as an int when it is a whole number >= 1 (a count of samples, steps, subsets); else InputError."""
    if isinstance(n, bool) or not isinstance(n, (int, float, np.integer, np.floating)) or n != int(n) or n < 1:
        raise InputError(f"{name} must be a whole number >= 1, got {n!r}")
    return int(n)


def check_finite(x: torch.Tensor, name: str = "inputs") -> torch.Tensor:
    """`x` itself when every value is finite; InputError (a ValueError) naming the first NaN or infinity.

    A solver (least squares in lecture 8) handed a NaN fails deep inside PyTorch with an
    assertion; a method that would do so checks its inputs first.
    """
    bad = ~torch.isfinite(x)
    if bad.any():
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise InputError(f"{name} holds {int(bad.sum())} non-finite value(s) (NaN or infinity), "
                         f"the first at index {where}")
    return x


def showing_progress() -> bool:
    """Progress is shown on a terminal and in a notebook; a log file or a pipe gets none."""
    return sys.stderr.isatty() or in_kernel()


def progress_bar(iterable: Iterable, desc: str, enabled: bool = True, total: int | None = None,
                 leave: bool = False) -> Iterable:
    """tqdm's bar for a long loop, on a terminal and in a notebook (tqdm.auto: a widget where Jupyter
    has ipywidgets, text elsewhere); silent when output goes to a file or a pipe."""
    import warnings

    with warnings.catch_warnings():  # tqdm.auto warns when a kernel lacks ipywidgets, then draws text
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=not (enabled and showing_progress()))


def stage(message: str, enabled: bool = True) -> None:
    """One line on stderr for a long step without a loop to count ("stage: 9 methods on 6 inputs"),
    on a terminal and in a notebook; silent otherwise, like `progress_bar`."""
    if enabled and showing_progress():
        print(f"... {message}", file=sys.stderr, flush=True)


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


# %% Lecture 4: baselines ---------------------------------------------------------------


def as_baseline(baseline: object, x: torch.Tensor) -> torch.Tensor:
    """x' shaped like `x`: None is zeros, a number fills it, a tensor is broadcast to x (a view, no copy).

    Lecture 4's integrated gradients and lecture 8's perturbation curves read their baselines here.
    """
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, (int, float, np.integer, np.floating)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if not isinstance(baseline, torch.Tensor):
        raise InputError(f"a baseline is None, a number or a tensor like the inputs, got {type(baseline).__name__}")
    baseline = baseline.detach().to(device=x.device, dtype=x.dtype)
    try:
        return torch.broadcast_to(baseline, x.shape)
    except RuntimeError:
        raise InputError(f"a baseline of shape {tuple(baseline.shape)} does not broadcast to "
                         f"the inputs' shape {tuple(x.shape)}") from None


# %% Lecture 5: layers, hooks and comparing maps ----------------------------------------


def conv_layer_names(model: nn.Module) -> list[str]:
    """Dotted names of every `nn.Conv2d` in `model`, in definition order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def find_layer(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    """The layer a CAM method reads: a module inside `model`, its dotted name, or None.

    None means the last `nn.Conv2d`. Raises InputError (a ValueError) for a name
    that does not exist, a module outside `model`, a model without convolutions,
    and a Vision Transformer with layer=None. A ViT's patch tokens do keep their positions, so
    Grad-CAM applies to them once reshaped to the patch grid (lecture 9 does it);
    but its only conv is the patch embedding, and its later layers give tokens
    (N, 1 + patches, D), not the (N, C, h, w) maps these methods read.
    """
    convs = conv_layer_names(model)
    if layer is None and any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
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


def layer_label(layer: str | None) -> str:
    """A layer's name as a student should read it in a title ("head ReLU6 (_swish)", "layer4"): a
    network's row in plumbing/networks.py may give words for a module name that says little."""
    if layer is None:
        return "the last conv"
    return next((row.layer_words[layer] for row in NETWORKS.values() if layer in row.layer_words), layer)


def cam_for_display(cam: torch.Tensor) -> np.ndarray:
    """`(N, 1, H, W)` class activation maps -> `(N, H, W)`, each divided by its own maximum."""
    return scale_for_display(cam[:, 0].detach().cpu().numpy(), percentile=100.0)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1 of a flat array, tied values sharing their average rank (Spearman's convention)."""
    values = np.asarray(values).ravel()
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]  # where each run of ties begins
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = (first[group] + last[group] + 1) / 2.0  # the mean of ranks first+1 .. last
    return ranks


def rank_correlation(a, b) -> float:
    """Spearman's rank correlation of two maps (tensors or arrays, flattened); NaN when one is constant.

    Ties get their average rank, so a map full of zeros is not ordered by chance: on maps that
    are exactly 0 off the ink (gradient x input on digits) that decides the number.
    """
    ra, rb = (average_ranks(t.detach().double().cpu().numpy() if isinstance(t, torch.Tensor) else t) for t in (a, b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def map_similarity(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(cosine, Spearman rank correlation) of two maps, flattened: 1 and 1 for the same map."""
    a, b = a.flatten().double().cpu(), b.flatten().double().cpu()
    cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    return cosine, rank_correlation(a, b)
