"""What the submissions here share: the instructor solution of an exercise, loaded as a module.

A submission takes the solution and replaces one function by a wrong one (in the solution's
own module, so the solution's other functions call the wrong one too), then exposes every name.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

SOLUTIONS = Path(__file__).resolve().parents[2] / "exercises" / "solutions"


def _number(name: str) -> int:
    return int(name[:2]) if name[:2].isdigit() else 0


FILES = {_number(p.name): p.name for p in sorted(SOLUTIONS.glob("[0-9][0-9]_*.py"))}  # as grading/catalogue.py


SOURCES: dict[int, str] = {}  # set in a bundled submission (bundle()): the solutions' texts it carries


def solution(exercise: int):
    if SOURCES:  # bundled: the solutions came inside the submission
        module = type(importlib)(f"solution_{exercise}")
        module.__file__ = __file__
        exec(compile(SOURCES[exercise], f"solution_{exercise}.py", "exec"), module.__dict__)
        return module
    path = SOLUTIONS / FILES[exercise]
    spec = importlib.util.spec_from_file_location(f"solution_{exercise}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def names(module) -> dict:
    """Every public name of `module`, for a submission's globals()."""
    return {k: v for k, v in vars(module).items() if not k.startswith("__")}


def bundle(path: Path, folder: Path, course: Path = SOLUTIONS.parents[1]) -> Path:
    """The submission at `path` as one self-contained file in `folder`, as a student would hand it in.

    The grader copies only the file it grades into the child's folder (its neighbours, this _base.py
    and the course's solutions/ are out of the child's reach), so the file carries this module and the
    solutions' sources with it. Paths a hostile submission aims at the course through its own location
    (Path(__file__).resolve().parents[2]) are aimed at the real course folder instead.
    """
    text = path.read_text()
    sources = {number: (SOLUTIONS / name).read_text() for number, name in FILES.items()}
    base = Path(__file__).read_text()
    head = ("import sys as _bundle_sys, types as _bundle_types\n"
            f"_bundle = _bundle_types.ModuleType('_base')\n"
            f"_bundle.__file__ = __file__\n"
            f"exec(compile({base!r}, '_base.py', 'exec'), _bundle.__dict__)\n"
            f"_bundle.SOURCES = {sources!r}\n"
            "_bundle_sys.modules['_base'] = _bundle\n")
    text = text.replace("Path(__file__).resolve().parents[2]", f"Path({str(course)!r})")
    future = "from __future__ import annotations\n"
    if future in text:
        text = text.replace(future, "")
        head = future + head
    target = folder / path.name
    target.write_text(head + text)
    return target
