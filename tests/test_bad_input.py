"""Every lecture meets a user's mistake with one line on stderr and exit status 2.

No traceback, and every file the user already had is left exactly as it was.
The cases are the same for every script, so they are written once, here.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import course.cli
import course.demo
import utils
from conftest import ROOT, lecture
from helpers import png_header_only

SCRIPTS = sorted(p.stem for p in ROOT.glob("0[1-9]_*.py"))


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


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

        monkeypatch.setattr(course.cli.tempfile, "mkstemp", refuse)
        return ["--out-dir", str(tmp / "read_only")]
    if case == "missing weights file":
        return ["--model", "resnet18", "--weights", str(tmp / "missing.pth")]
    if case == "corrupt weights file":
        (tmp / "corrupt.pth").write_bytes(checkpoint.read_bytes()[:5000])
        return ["--model", "resnet18", "--weights", str(tmp / "corrupt.pth")]
    if case == "weights of another architecture":
        return ["--model", "resnet50", "--weights", str(checkpoint)]
    raise AssertionError(case)


CASES = ["missing image", "folder without images", "file that is not an image", "truncated image",
         "image over the decompression-bomb limit", "ImageNet class out of range", "digit class out of range",
         "class that is not a number", "device that is not there", "out-dir is a file", "out-dir below a file",
         "out-dir that cannot be made", "out-dir that is read-only", "missing weights file",
         "corrupt weights file", "weights of another architecture"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("script", SCRIPTS)
def test_one_line_and_exit_status_2(script, case, tmp_path, resnet18_checkpoint, capsys, monkeypatch):
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
    demo = utils.setup_demo(args)
    assert demo.names == ["clear", "cmyk", "deep", "palette", "rotated", "tiny", "wide"]
    assert demo.x.shape == ((7, 1, 28, 28) if model == "mnist" else (7, 3, 224, 224))
    assert torch.isfinite(demo.x).all() and demo.model(demo.x).shape[0] == 7
