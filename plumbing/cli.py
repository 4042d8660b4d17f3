"""The command line every lecture shares: its flags, defined once, each checked before any slow step.

A bad flag is one line on stderr and exit status 2 (`OneLineParser`; `errors.command_line` does the
same for a mistake found later). Run cell by cell in a kernel (Jupyter, Colab, VS Code), a lecture's
`parse_args()` reads no flags from the kernel's own command line (`-f kernel.json`): it takes the
notebook's flags, the quick digit track unless a cell sets others (`notebook_flags`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch

from plumbing.errors import InputError, file_kind, shown
from plumbing.networks import model_choices
from plumbing.paths import OUTPUT_DIR


NOTEBOOK_FLAGS = ["--model", "mnist", "--quick"]  # a notebook's default: the digit track, in seconds
NOTEBOOK_FLAGS_VARIABLE = "SALIENCY_NOTEBOOK_FLAGS"  # or this environment variable, e.g. "--model efficientnet_lite0"


def in_kernel() -> bool:
    """True inside a Jupyter kernel (Jupyter, Colab, VS Code's notebooks and Interactive Window)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and getattr(shell, "kernel", None) is not None


def notebook_flags(flags: str | list[str] | None = None) -> list[str]:
    """The flags a lecture reads in a kernel; with an argument, set them for the cells that follow.

        utils.notebook_flags("--model efficientnet_lite0")   # in a notebook's first cell: the photos

    Without a call, the environment variable SALIENCY_NOTEBOOK_FLAGS, else NOTEBOOK_FLAGS.
    """
    global NOTEBOOK_FLAGS
    if flags is not None:
        NOTEBOOK_FLAGS = shlex.split(flags) if isinstance(flags, str) else list(flags)
        return list(NOTEBOOK_FLAGS)
    chosen = os.environ.get(NOTEBOOK_FLAGS_VARIABLE, "").strip()  # empty counts as unset
    return shlex.split(chosen) if chosen else list(NOTEBOOK_FLAGS)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (usage stays behind --help).

    In a kernel, `parse_args()` without arguments reads `notebook_flags()`, never the kernel's own
    `sys.argv` (`-f kernel.json`); flags given as a list are read as given, everywhere.
    """

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if args is None and in_kernel():
            args = notebook_flags()
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


NAME_MAX = 255  # the longest file or folder name most file systems allow (ext4, APFS, NTFS: 255)
SEED_MAX = 2**32 - 1  # every generator the lectures seed takes 0 to 2**32 - 1 (NumPy's seed is the narrowest)


def path_flag(text: str) -> Path:
    """An argparse type for a path: a name longer than a file system allows is refused at once."""
    path = Path(text)
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise argparse.ArgumentTypeError(f"{shown(text, 40)}: one name in it is {len(os.fsencode(part))} bytes "
                                             f"long; file and folder names may have at most {NAME_MAX}")
    return path


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


def make_parser(doc: str | None, default_model: str = "resnet50") -> OneLineParser:
    """The flags every lecture shares, defined once. Scripts add their own after this."""
    summary = (doc or "").strip().split("\n\n")[0]
    parser = OneLineParser(description=summary, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=model_choices(), default=None,
                        help=f"network to explain (default {default_model}; resnet18 with --quick; "
                             "efficientnet_lite0 needs requirements-dev.txt and works offline; "
                             "'mnist' is the small digit CNN that ships with the course)")
    parser.add_argument("--weights", type=path_flag, default=None,
                        help="a local state dict for --model, instead of torchvision's download")
    parser.add_argument("--image", type=path_flag, action="append", default=None,
                        help="an image file or a folder of images (repeatable; default: data/)")
    parser.add_argument("--target", default=None,
                        help="class to explain, an index or an exact class name (default: the prediction)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                        help="auto picks CUDA, then Apple MPS, then the CPU")
    parser.add_argument("--seed", type=int_in_range(0, SEED_MAX), default=0,
                        help=f"random seed, 0 to {SEED_MAX} (noise, random baselines)")
    parser.add_argument("--out-dir", type=path_flag, default=OUTPUT_DIR,
                        help="folder for the figures (created when missing)")
    parser.add_argument("--quick", action="store_true",
                        help="a small, fast run (seconds on a CPU): what the tests and CI use")
    parser.set_defaults(default_model=default_model)
    return parser


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


def check_out_dir(out_dir: Path) -> Path:
    """Make sure figures can be written to `--out-dir`, before any slow step; leave no trace.

    Permission bits do not tell (root ignores them, a read-only file system does not
    show in them), so it tries: it makes the missing folders and a temporary file in
    the last one, then removes exactly what it made. Nothing the user has is touched.
    """
    out_dir = Path(out_dir)
    missing = []
    for folder in (out_dir, *out_dir.parents):
        kind = file_kind(folder, "--out-dir")
        if kind != "missing":
            if kind != "folder":
                what = "an existing file" if kind == "file" else kind
                raise InputError(f"--out-dir {shown(out_dir)}: {shown(folder)} is {what}, not a folder")
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
        where = shown(error.filename or out_dir)
        raise InputError(f"--out-dir {shown(out_dir)}: cannot write there ({where}: {error.strerror or error})") from None
    finally:
        for folder in reversed(made):  # innermost first; save_figure makes them again when it writes
            with contextlib.suppress(OSError):  # something appeared in it meanwhile: leave it be
                folder.rmdir()
    return out_dir
