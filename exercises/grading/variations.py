"""Variations (what a grading run draws from `--seed S`) and values kept across calls."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch

if TYPE_CHECKING:
    from grading.student import Student


class Variation:
    """What a grading run draws from `--seed S`: seed None is the shipped variation."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def generator(self, name: str) -> torch.Generator:
        """A generator for one drawing, seeded from the variation's seed and `name`."""
        key = f"{self.seed}:{name}".encode()
        return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:6], "big"))

    def seeded(self, name: str, default: int) -> torch.Generator:
        """A generator for a check's random inputs: seeded with `default` in the shipped variation,
        else drawn from the variation's seed and `name` (so that answers kept from one run fit no other)."""
        return torch.Generator().manual_seed(default) if self.seed is None else self.generator(name)

    def integer(self, name: str, low: int, high: int, default: int) -> int:
        """`default` in the shipped variation, else an integer in [low, high]."""
        if self.seed is None:
            return default
        return int(torch.randint(low, high + 1, (1,), generator=self.generator(name)))

    def choice(self, name: str, options: Sequence, default):
        if self.seed is None:
            return default
        return options[int(torch.randint(len(options), (1,), generator=self.generator(name)))]


# %% Values kept across calls: grader-side per process, the student's per grading run -------------------


_MEMO: dict[tuple, tuple[bool, object]] = {}  # (function, seed, digest of its files) -> (ok, value or error)


def _kept(store: dict, key: object, compute: Callable[[], object]) -> object:
    """`compute()` once per key in `store`; a failure is remembered and re-raised each time it is asked for."""
    if key not in store:
        try:
            store[key] = (True, compute())
        except Exception as error:  # remembered, so every check that needs it fails alike
            store[key] = (False, error)
    ok, value = store[key]
    if not ok:
        raise value
    return value


def files_digest(files: Sequence[Path]) -> str:
    """sha256 over the files' names and contents (a missing file counts as such)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"missing")
    return digest.hexdigest()


def memoised(*files: Path) -> Callable:
    """For grader-side values `function(variation)` that read only the variation and the course's `files`.

    Computed once per process for each (variation.seed, digest of `files`), so grading many
    files in one process computes them once; a changed file computes them again. Never for
    anything the student's code returned. Callers must not mutate what they get (clone first).
    """
    def decorate(function: Callable[[Variation], object]) -> Callable[[Variation], object]:
        @functools.wraps(function)
        def get(variation: Variation) -> object:
            key = (function.__module__, function.__qualname__, variation.seed, files_digest(files))
            return _kept(_MEMO, key, lambda: function(variation))

        return get

    return decorate


def remembered(student: Student, key: str, compute: Callable[[], object]) -> object:
    """`compute()` once per grading run (kept on `student`); a failure is re-raised each time it is asked for."""
    return _kept(student.memo, key, compute)
