"""The course's files, guarded: copies in memory, written back when the student's code changed them."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

EXERCISES = Path(__file__).resolve().parents[1]
ROOT = EXERCISES.parent


def course_files() -> list[Path]:
    """What grading reads or runs: the exercises' data, the digit CNN's weights, the grader's own code,
    and the course code the references come from (the lectures, utils.py, plumbing/ and demos/)."""
    files = sorted((EXERCISES / "data").glob("*")) + [ROOT / "data" / "mnist_cnn.pt", EXERCISES / "tasks.py",
                                                      EXERCISES / "grade.py"]
    code = sorted(ROOT.glob("[0-9][0-9]_*.py")) + [ROOT / "utils.py"] + sorted((ROOT / "plumbing").glob("*.py")) \
        + sorted((ROOT / "demos").glob("*.py"))
    return files + sorted((EXERCISES / "grading").glob("*.py")) + code


def course_name(path: Path) -> str:
    """A path as the course's README names it (relative to the course folder when inside it)."""
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


class Guard:
    """Copies of the course's files in memory; `damage()` restores any that changed and names them."""

    def __init__(self, files: Sequence[Path]) -> None:
        missing = [f for f in files if not f.is_file()]
        if missing:
            names = ", ".join(course_name(f) for f in missing)
            raise FileNotFoundError(f"the course's file {names} is missing (not your doing): restore it with "
                                    f"git checkout -- {names}, or python exercises/make_exercise_data.py")
        self.copies = {f: f.read_bytes() for f in files}
        self.digests = {f: hashlib.sha256(data).digest() for f, data in self.copies.items()}

    def damage(self) -> list[str]:
        """The files changed or deleted since the copies were taken, each written back."""
        damaged = []
        for path, data in self.copies.items():
            try:
                same = path.is_file() and not path.is_symlink() and \
                    hashlib.sha256(path.read_bytes()).digest() == self.digests[path]
            except OSError:
                same = False
            if not same:
                what = "changed" if path.exists() else "deleted"
                try:
                    if path.is_symlink() or path.is_dir():
                        path.unlink() if path.is_symlink() else os.rename(path, f"{path}.moved-by-grading")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    damaged.append(f"{what} {course_name(path)} (restored)")
                except OSError as error:
                    damaged.append(f"{what} {course_name(path)} (could not restore: {error})")
        return damaged
