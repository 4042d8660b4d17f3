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


def solution(exercise: int):
    path = SOLUTIONS / FILES[exercise]
    spec = importlib.util.spec_from_file_location(f"solution_{exercise}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def names(module) -> dict:
    """Every public name of `module`, for a submission's globals()."""
    return {k: v for k, v in vars(module).items() if not k.startswith("__")}
