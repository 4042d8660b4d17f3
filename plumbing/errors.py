"""How a user's mistake becomes one line: the course's two errors, and the words for a path in them.

A mistake in what the user asked for raises `InputError` (a ValueError, so a method can raise it
where a ValueError is promised); `@command_line` prints it as one line on stderr and exits 2.
Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import functools
import os
import stat
import sys
from pathlib import Path
from typing import Callable, Sequence


class InputError(ValueError):
    """A mistake in what the user asked for: shown as one line, exit status 2.

    It is a ValueError, so the methods can raise it where the course promises one.
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


def _input_errors_in_one_line(kind, error, trace, previous=sys.excepthook) -> None:
    """Outside a lecture's `main` too (a student's own script calling utils), a mistake in what was
    asked is one line, "error: ...", not a traceback; any other exception keeps its traceback."""
    if issubclass(kind, InputError):
        print(f"error: {error}", file=sys.stderr)
    else:
        previous(kind, error, trace)


sys.excepthook = _input_errors_in_one_line


def shown(path: object, width: int = 70) -> str:
    """A path for a one-line message: a very long one keeps its start and its end."""
    text = str(path)
    return text if len(text) <= width else f"{text[:width // 2 - 2]}...{text[-(width // 2 - 2):]}"


SPECIAL_FILES = [(stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                 (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]


def file_kind(path: Path, flag: str) -> str:
    """What `path` is: "missing", "file", "folder", or in words ("a named pipe (FIFO)", ...).

    Only `os.stat` looks at it, so a named pipe is never opened (opening one for reading blocks
    until something writes to it). A name too long for the file system, a loop of links or a
    folder we may not enter is an InputError that names `flag`.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as error:
        reason = "the path, or a name in it, is too long for the file system" \
            if error.errno == errno.ENAMETOOLONG else (error.strerror or str(error)).lower()
        raise InputError(f"{flag} {shown(path)}: {reason}") from None
    except ValueError:  # a NUL character, which no file name can hold
        raise InputError(f"{flag} {shown(repr(str(path)))}: a path cannot contain a NUL character") from None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return next((kind for is_kind, kind in SPECIAL_FILES if is_kind(mode)), "not a regular file")
