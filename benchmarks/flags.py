"""What the three benchmarks share: the lectures found by file name, and flags checked before any work.

A mistake in a flag is one line on stderr and exit status 2 when the flags are parsed, not a
traceback after minutes of work; a results file is written only where `--out` asks.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from plumbing.cli import OneLineParser, int_in_range, path_flag  # noqa: E402,F401 (re-used)
from plumbing.errors import file_kind, shown  # noqa: E402,F401 (re-used)
from plumbing.lectures import lectures  # noqa: E402,F401 (re-used)


def count(text: str) -> int:
    """A count of something (runs, steps, images, threads): a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: a count must be at least 1")
    return value


def side(text: str) -> int:
    """An image side in pixels: the networks halve it five times, so at least 32."""
    return int_in_range(32, 4096)(text)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def out_file(text: str) -> Path:
    """`--out`: a file in a folder that exists and takes a new file; it may replace an older table.

    Tried, not guessed from permission bits (root ignores them): a temporary file is made in the
    folder and removed. Nothing is created on the way, and nothing the user has is touched.
    """
    path = path_flag(text)
    try:
        kind, folder_kind = file_kind(path, "--out"), file_kind(path.parent, "--out")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--out ")) from None
    if kind not in ("missing", "file"):
        raise argparse.ArgumentTypeError(f"{shown(path)} is {'a folder' if kind == 'folder' else kind}; "
                                         "give the name of a Markdown file, e.g. results_mine.md")
    if folder_kind != "folder":
        raise argparse.ArgumentTypeError(f"{shown(path)}: the folder {shown(path.parent)} does not exist")
    try:
        handle, probe = tempfile.mkstemp(dir=path.parent, prefix=".write_test_")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{shown(path)}: cannot write in {shown(path.parent)} "
                                         f"({error.strerror or error})") from None
    return path


def pick_lectures(wanted: list[str] | None, parser: argparse.ArgumentParser) -> list[str]:
    """`--lectures 3 04 05_gradcam` -> the lectures' module names; a name that is none of them is an error."""
    found = lectures()
    if wanted is None:
        return list(found.values())
    picked = []
    for text in wanted:
        number = text.split("_")[0]
        key = number.zfill(2) if number.isdigit() else None
        if key not in found or text not in (number, found[key]):  # "3", "03" or the whole name
            parser.error(f"argument --lectures: no lecture {text!r}; the lectures are {', '.join(found)} "
                         f"({found[min(found)]} to {found[max(found)]})")
        picked.append(found[key])
    return list(dict.fromkeys(picked))
