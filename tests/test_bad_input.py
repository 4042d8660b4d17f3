"""Every lecture meets a user's mistake with one line on stderr and exit status 2.

No traceback, and every file the user already had is left exactly as it was.
The cases are the same for every script, so they are written once, here.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import demos.common
import plumbing.cli
import plumbing.images
import plumbing.weights
import utils
from conftest import ROOT, lecture
from plumbing.cli import SEED_MAX
from helpers import png_header_only

SCRIPTS = sorted(p.stem for p in ROOT.glob("[0-9][0-9]_*.py"))  # every numbered script, found by name
TOO_LONG = 300  # characters in one path component; file systems allow 255 bytes


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "other"
            for p in sorted(folder.rglob("*")) if "__pycache__" not in p.parts}


def make_case(case: str, tmp: Path, checkpoint: Path, monkeypatch) -> list[str]:
    """The command-line flags of one mistake, with the files it needs made inside `tmp`."""
    if case == "missing image":
        return ["--image", str(tmp / "no_such_photo.jpg")]
    if case == "folder without images":
        (tmp / "empty").mkdir()
        (tmp / "empty" / "notes.txt").write_text("no pictures here")
        return ["--image", str(tmp / "empty")]
    if case == "file that is not an image":
        (tmp / "fake.png").write_text("I am text")
        return ["--image", str(tmp / "fake.png")]
    if case == "truncated image":
        full = tmp / "full.png"
        Image.fromarray((np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)).save(full)
        (tmp / "cut.png").write_bytes(full.read_bytes()[:3000])
        return ["--image", str(tmp / "cut.png")]
    if case == "ImageNet class out of range":
        return ["--model", "resnet18", "--weights", str(checkpoint), "--target", "1000"]
    if case == "digit class out of range":
        return ["--model", "mnist", "--target", "10"]
    if case == "class that is not a number":
        return ["--model", "mnist", "--target", "cat"]
    if case == "device that is not there":
        return ["--device", "cuda"]
    if case == "image over the decompression-bomb limit":
        (tmp / "huge.png").write_bytes(png_header_only(20_000, 20_000))  # 400 M pixels in 80 bytes
        return ["--image", str(tmp / "huge.png")]
    if case == "out-dir is a file":
        (tmp / "my_notes.txt").write_text("the user's own file")
        return ["--out-dir", str(tmp / "my_notes.txt")]
    if case == "out-dir below a file":
        (tmp / "my_notes.txt").write_text("the user's own file")
        return ["--out-dir", str(tmp / "my_notes.txt" / "figures")]
    if case == "out-dir that cannot be made":
        return ["--out-dir", "/proc/no_such_process/figures"]
    if case == "out-dir that is read-only":
        # Root (as in CI) writes through permission bits, so the failing write is simulated.
        def refuse(*args, dir=None, **kwargs):
            raise PermissionError(13, "Permission denied", str(dir))

        monkeypatch.setattr(plumbing.cli.tempfile, "mkstemp", refuse)
        return ["--out-dir", str(tmp / "read_only")]
    if case == "missing weights file":
        return ["--model", "resnet18", "--weights", str(tmp / "missing.pth")]
    if case == "corrupt weights file":
        (tmp / "corrupt.pth").write_bytes(checkpoint.read_bytes()[:5000])
        return ["--model", "resnet18", "--weights", str(tmp / "corrupt.pth")]
    if case == "weights of another architecture":
        return ["--model", "resnet50", "--weights", str(checkpoint)]
    if case == "out-dir with a name too long":
        return ["--out-dir", str(tmp / ("d" * TOO_LONG) / "figures")]
    if case == "image with a name too long":
        return ["--image", str(tmp / ("p" * TOO_LONG + ".png"))]
    if case == "weights with a name too long":
        return ["--model", "mnist", "--weights", str(tmp / ("w" * TOO_LONG + ".pt"))]
    if case == "seed above the range":
        return ["--seed", str(2**32)]
    if case == "seed far above the range":
        return ["--seed", str(2**64)]
    if case == "negative seed":
        return ["--seed", "-1"]
    if case == "image that is a named pipe":
        os.mkfifo(tmp / "camera.png")
        return ["--image", str(tmp / "camera.png")]
    if case == "folder holding only a named pipe":
        (tmp / "pipes").mkdir()
        os.mkfifo(tmp / "pipes" / "camera.png")
        return ["--image", str(tmp / "pipes")]
    if case == "weights that are a folder":
        return ["--model", "mnist", "--weights", str(tmp)]
    if case == "ImageNet weights that are a folder":
        return ["--model", "resnet18", "--weights", str(tmp)]
    if case == "weights that are a named pipe":
        os.mkfifo(tmp / "weights.pt")
        return ["--model", "mnist", "--weights", str(tmp / "weights.pt")]
    if case == "digit weights of another network":
        return ["--model", "mnist", "--weights", str(ROOT / "data" / "digit_vit.pt")]
    raise AssertionError(case)


CASES = ["missing image", "folder without images", "file that is not an image", "truncated image",
         "image over the decompression-bomb limit", "ImageNet class out of range", "digit class out of range",
         "class that is not a number", "device that is not there", "out-dir is a file", "out-dir below a file",
         "out-dir that cannot be made", "out-dir that is read-only", "missing weights file",
         "corrupt weights file", "weights of another architecture", "out-dir with a name too long",
         "image with a name too long", "weights with a name too long", "seed above the range",
         "seed far above the range", "negative seed", "image that is a named pipe",
         "folder holding only a named pipe", "weights that are a folder", "ImageNet weights that are a folder",
         "weights that are a named pipe", "digit weights of another network"]
SAYS = {  # what the one line must say, beyond being one line
    "seed above the range": "0 to 4294967295|\\[0, 4294967295\\]", "seed far above the range": "4294967295",
    "negative seed": "4294967295", "image that is a named pipe": "named pipe",
    "weights that are a folder": "folder.*weights file", "ImageNet weights that are a folder": "folder",
    "weights that are a named pipe": "named pipe", "digit weights of another network": "Vision Transformer.*digit CNN",
    "weights of another architecture": "ResNet", "out-dir with a name too long": "255",
    "image with a name too long": "255", "weights with a name too long": "255",
}


# What a weights file is and what was expected, in under 200 characters.
WEIGHTS_MESSAGES = {"weights that are a folder", "ImageNet weights that are a folder", "weights that are a named pipe",
                    "digit weights of another network", "weights of another architecture"}


@pytest.fixture
def no_hang():
    """A test that could block (reading a named pipe) fails after 60 s instead of hanging."""
    def give_up(signum, frame):
        raise TimeoutError("blocked: a named pipe was opened for reading")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("script", SCRIPTS)
def test_one_line_and_exit_status_2(script, case, tmp_path, resnet18_checkpoint, capsys, monkeypatch, no_hang):
    if case == "device that is not there" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    flags = make_case(case, tmp_path, resnet18_checkpoint, monkeypatch)
    # Two missing folders: a run that fails must not leave the ones it checked behind.
    out_dir = [] if "--out-dir" in flags else ["--out-dir", str(tmp_path / "new" / "figures")]
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        lecture(script).main(["--quick", *flags, *out_dir])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and err.startswith("error: ")
    assert snapshot(tmp_path) == before  # nothing written, nothing overwritten
    if case in SAYS:
        assert re.search(SAYS[case], err), err
    if case in WEIGHTS_MESSAGES and "weights" in err:  # (a lecture may refuse the model first)
        assert len(err.strip()) < 200, f"{len(err.strip())} characters: {err}"


def test_a_real_command_line_from_another_folder(tmp_path):
    """The script as a user runs it: from any folder, one line, status 2, no traceback."""
    env = {**os.environ, "TORCH_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, str(ROOT / "01_vanilla_gradient_saliency.py"), "--model", "mnist",
                             "--target", "ten", "--out-dir", str(tmp_path / "out")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def odd_but_valid_images(folder: Path) -> Path:
    """Images a user may well have: tiny, very wide, CMYK, 16-bit, palette, transparent, EXIF-rotated."""
    folder.mkdir()
    rgb = Image.fromarray((np.random.default_rng(2).random((40, 60, 3)) * 255).astype(np.uint8))
    Image.new("RGB", (1, 1), "red").save(folder / "tiny.png")
    rgb.resize((600, 9)).save(folder / "wide.png")
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)).save(folder / "deep.png")
    rgb.convert("P").save(folder / "palette.gif")
    rgb.convert("RGBA").save(folder / "clear.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    rgb.save(folder / "rotated.jpg", exif=exif)
    return folder


@pytest.mark.parametrize("model", ["resnet18", "mnist"])
def test_odd_but_valid_images_make_a_batch_on_both_tracks(model, cached_resnet18, tmp_path):
    """Every odd image becomes one normalised example the model can explain (both tracks)."""
    folder = odd_but_valid_images(tmp_path / "photos")
    args = utils.make_parser(None).parse_args(["--quick", "--model", model, "--image", str(folder),
                                               "--out-dir", str(tmp_path / "out")])
    demo = demos.setup_demo(args)
    assert demo.names == ["clear", "cmyk", "deep", "palette", "rotated", "tiny", "wide"]
    assert demo.x.shape == ((7, 1, 28, 28) if model == "mnist" else (7, 3, 224, 224))
    assert torch.isfinite(demo.x).all() and demo.model(demo.x).shape[0] == 7


def test_a_named_pipe_as_image_does_not_block_a_real_run(tmp_path):
    """Nothing ever writes to this pipe: a script that opened it would wait forever."""
    os.mkfifo(tmp_path / "webcam.jpg")
    result = subprocess.run([sys.executable, str(ROOT / "01_vanilla_gradient_saliency.py"), "--model", "mnist",
                             "--image", str(tmp_path / "webcam.jpg"), "--out-dir", str(tmp_path / "out")],
                            cwd=tmp_path, env={**os.environ, "TORCH_HOME": str(tmp_path)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "named pipe" in result.stderr
    assert not (tmp_path / "out").exists()


def test_long_names_are_input_errors_wherever_a_path_is_read(tmp_path, no_hang):
    """The helpers behind the flags, called directly (as the exercises and tests do): one InputError each."""
    long_name = tmp_path / ("n" * TOO_LONG)
    os.mkfifo(tmp_path / "pipe.png")
    calls = [lambda: plumbing.images.find_images(long_name), lambda: utils.open_image(long_name),
             lambda: plumbing.cli.check_out_dir(long_name / "figures"), lambda: plumbing.weights.read_state_dict(long_name),
             lambda: utils.load_mnist_cnn(long_name), lambda: utils.load_imagenet_model("resnet18", long_name),
             lambda: utils.open_image(tmp_path / "pipe.png"), lambda: plumbing.weights.read_state_dict(tmp_path / "pipe.png"),
             lambda: plumbing.images.find_images(tmp_path / "pipe.png"), lambda: utils.load_image(long_name),
             lambda: plumbing.images.find_images("photo\0.png"), lambda: plumbing.cli.check_out_dir(Path("out\0")),
             lambda: plumbing.images.find_images(Path(tmp_path, *["x" * 200] * 25))]  # 5,000 characters: over PATH_MAX
    for call in calls:
        with pytest.raises(utils.InputError) as error:
            call()
        assert "\n" not in str(error.value) and len(str(error.value)) < 200, error.value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.png"]


def test_the_seed_range_is_what_every_generator_takes():
    """--seed's range, 0 to SEED_MAX, fits every generator a lecture seeds (lecture 8 adds up to a few
    to it); one more is refused by the flag itself, before it could reach one."""
    top = SEED_MAX
    assert top == 2**32 - 1
    torch.manual_seed(top)
    torch.Generator().manual_seed(top + 10)
    np.random.default_rng(top)
    np.random.seed(top)  # NumPy's legacy seed is the narrowest: 0 to 2**32 - 1
    random.seed(top)
    with pytest.raises(ValueError):
        np.random.seed(top + 1)
    parser = utils.make_parser(None)
    assert parser.parse_args(["--seed", str(top)]).seed == top
    with pytest.raises(SystemExit):
        parser.parse_args(["--seed", str(top + 1)])


# %% The benchmarks check their flags before any work, and write only where --out says ------------

BENCHMARKS = ROOT / "benchmarks"


def benchmark(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


BAD_BENCHMARK_FLAGS = [
    ("bench_course", ["--lectures", "99"]), ("bench_course", ["--lectures", "1", "gradcam"]),
    ("bench_course", ["--lectures", "05_gradcm"]), ("bench_course", ["--timeout", "-5"]),
    ("bench_course", ["--timeout", "0"]), ("bench_course", ["--timeout", "nan"]),
    ("bench_course", ["--out", "{tmp}/missing/table.md"]), ("bench_course", ["--out", "{tmp}"]),
    *[("bench_methods", [flag, "0"]) for flag in ("--threads", "--steps", "--batches", "--repeats", "--vgg-steps",
                                                  "--mem-steps", "--batch-size")],
    ("bench_methods", ["--batches", "8", "0"]), ("bench_methods", ["--size", "8"]),
    ("bench_methods", ["--mem-size", "0"]), ("bench_methods", ["--out", "{tmp}/missing/table.md"]),
    ("bench_methods", ["--vgg-size", "-3"]),
    ("bench_ig_accuracy", ["--photos", "0"]), ("bench_ig_accuracy", ["--photos", "99"]),
    ("bench_ig_accuracy", ["--batch-size", "0"]), ("bench_ig_accuracy", ["--max-steps", "1"]),
    ("bench_ig_accuracy", ["--size", "0"]), ("bench_ig_accuracy", ["--out", "{tmp}/missing/table.md"]),
]


@pytest.mark.parametrize("name, flags", BAD_BENCHMARK_FLAGS, ids=[f"{n} {' '.join(f)}" for n, f in BAD_BENCHMARK_FLAGS])
def test_benchmark_flags_are_checked_before_any_work(name, flags, tmp_path, capsys):
    before = snapshot(tmp_path), snapshot(BENCHMARKS)
    with pytest.raises(SystemExit) as exit_info:
        benchmark(name).main([f.format(tmp=tmp_path) for f in flags])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert flags[0] in err
    assert (snapshot(tmp_path), snapshot(BENCHMARKS)) == before


def test_an_out_folder_that_cannot_be_written_is_refused(tmp_path, capsys, monkeypatch):
    # Root (as in CI) writes through permission bits, so the failing write is simulated.
    flags = benchmark("flags")

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(flags.tempfile, "mkstemp", refuse)
    with pytest.raises(SystemExit) as exit_info:
        benchmark("bench_course").main(["--out", str(tmp_path / "table.md")])
    assert exit_info.value.code == 2 and "cannot write" in capsys.readouterr().err


def test_lectures_are_named_with_or_without_the_leading_zero():
    flags = benchmark("flags")
    parser = plumbing.cli.OneLineParser()
    assert flags.pick_lectures(["1", "03", "05_gradcam", "3"], parser) == [SCRIPTS[0], SCRIPTS[2], SCRIPTS[4]]
    assert flags.pick_lectures(None, parser) == SCRIPTS


def test_a_course_benchmark_writes_a_table_only_where_out_says(tmp_path, monkeypatch, capsys):
    bench_course = benchmark("bench_course")
    monkeypatch.setattr(bench_course, "run", lambda *args: {"seconds": 1.0, "cpu": 1.0, "peak_mb": 900.0, "status": "ok",
                                                            "network": "mnist"})
    committed = snapshot(BENCHMARKS)
    assert bench_course.main(["--tracks", "mnist"]) == 0
    assert snapshot(BENCHMARKS) == committed and not list(tmp_path.iterdir())
    assert bench_course.main(["--tracks", "mnist", "--lectures", "2", "--out", str(tmp_path / "mine.md")]) == 0
    assert "02_gradient_input_saliency" in (tmp_path / "mine.md").read_text()
    assert snapshot(BENCHMARKS) == committed
