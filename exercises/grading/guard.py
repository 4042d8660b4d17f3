"""The course's files, guarded: copies in memory, written back when the student's code changed them,
and the course's tree listed, so that a file or folder planted in it (a module the grader would
import, bytecode it would run) is removed."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Sequence

EXERCISES = Path(__file__).resolve().parents[1]
ROOT = EXERCISES.parent
UNWATCHED = {".git", "outputs", ".pytest_cache"}  # top-level folders of the course whose changes are not damage


def tree(root: Path = ROOT) -> set[Path]:
    """Every file, folder and link under `root` but the UNWATCHED folders and the inside of any virtual
    environment (a folder holding pyvenv.cfg: a student's .venv, CI's .ci/venv). Packages write into
    their own folders there (gradio's hash_seed.txt), from any process on the machine, and a student's
    code that writes there could write to any environment of its user's, which is outside the course
    (as root, the child can write to neither)."""
    found: set[Path] = set()
    for folder, folders, files in os.walk(root):
        here = Path(folder)
        if here == root:
            folders[:] = [f for f in folders if f not in UNWATCHED]
        folders[:] = [f for f in folders if not (here / f / "pyvenv.cfg").is_file()]
        found.update(here / name for name in folders + files)
    return found


def course_files() -> list[Path]:
    """What grading reads or runs: the exercises' data, the digit CNN's weights, the grader's own code,
    and the course code the references come from (the lectures, utils.py, plumbing/ and demos/)."""
    files = sorted((EXERCISES / "data").glob("*")) + [ROOT / "data" / "mnist_cnn.pt", EXERCISES / "tasks.py",
                                                      EXERCISES / "grade.py"]
    from grading.sandbox import PACKAGES

    code = sorted(ROOT.glob("[0-9][0-9]_*.py")) + [ROOT / "utils.py"] + [
        path for package in PACKAGES for path in sorted((ROOT / package).glob("*.py"))]
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
        self.listed = tree()
        self.bytecode = {p: _stamp(p) for p in self.listed if p.suffix == ".pyc"}
        self.removed: set[Path] = set()
        self.tidied: list[str] = []  # bytecode removed (not blamed: another process may have written it)

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
        return damaged + self.planted()

    def planted(self) -> list[str]:
        """Files and folders new in the course's tree, removed; bytecode new or changed, removed (and
        noted in `tidied`, not blamed: Python regenerates it, and a test elsewhere may have written it)."""
        planted = []
        for path in sorted(tree() - self.listed, key=lambda p: len(p.parts)):
            if not os.path.lexists(path) or any(parent in self.removed for parent in path.parents):
                continue
            if path.suffix == ".pyc" or path.name == "__pycache__" and all(
                    p.suffix == ".pyc" for p in path.rglob("*") if p.is_file()):
                self.tidied.append(f"removed new bytecode {course_name(path)}")
                _remove(path)
            else:  # moved aside, not deleted: it may be someone's work written meanwhile
                planted.append(f"planted {course_name(path)} (moved to {quarantine(path)})")
            self.removed.add(path)
        for path, stamp in self.bytecode.items():
            if os.path.lexists(path) and _stamp(path) != stamp:
                _remove(path)
                self.tidied.append(f"removed changed bytecode {course_name(path)}")
        self.removed = {p for p in self.removed if os.path.lexists(p)}
        return planted


_QUARANTINE: list[Path] = []


def quarantine(path: Path) -> str:
    """Move `path` out of the course into this process's quarantine folder (made on first use); where it went."""
    import tempfile

    if not _QUARANTINE:
        _QUARANTINE.append(Path(tempfile.mkdtemp(prefix="grading-quarantine-")))
    target = _QUARANTINE[0] / course_name(path).replace("/", "__")
    try:
        shutil.move(str(path), str(target))
    except OSError as error:
        _remove(path)
        return f"nowhere: removed ({error})"
    return str(target)


def _stamp(path: Path) -> tuple:
    try:
        info = path.lstat()
        return info.st_size, info.st_mtime_ns, info.st_ino
    except OSError:
        return ()


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except OSError:
        pass
