"""What the submissions here share: the instructor solution of an exercise, loaded as a module.

A submission takes the solution and replaces one function by a wrong one (in the solution's
own module, so the solution's other functions call the wrong one too), then exposes every name.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

SOLUTIONS = Path(__file__).resolve().parents[2] / "exercises" / "solutions"
FILES = {1: "01_occlusion.py", 2: "02_misclassified.py", 3: "03_evaluation_protocol.py",
         4: "04_domain_model.py", 5: "05_find_the_shortcut.py"}


def solution(exercise: int):
    path = SOLUTIONS / FILES[exercise]
    spec = importlib.util.spec_from_file_location(f"solution_{exercise}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def names(module) -> dict:
    """Every public name of `module`, for a submission's globals()."""
    return {k: v for k, v in vars(module).items() if not k.startswith("__")}
