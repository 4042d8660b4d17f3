"""Which exercises there are, found from their files: no list to keep in step.

An exercise N is a starter `exercises/NN_name.py` (or its solution `exercises/solutions/NN_name.py`)
together with its checks module `exercises/grading/exN.py`. A sixth exercise is those three files;
nothing else names the exercises. Imports nothing heavy (grade.py reports a usage error before torch loads).
"""
from __future__ import annotations

import re
from pathlib import Path

EXERCISES = Path(__file__).resolve().parents[1]
GRADING = EXERCISES / "grading"
SOLUTIONS = EXERCISES / "solutions"
NAME = re.compile(r"^(\d\d)_\w+\.py$")


def exercise_files(exercises: Path = EXERCISES) -> dict[int, str]:
    """{N: 'NN_name.py'} for every starter or solution whose checks module grading/exN.py exists."""
    found: dict[int, str] = {}
    for folder in (exercises, exercises / "solutions"):
        for path in sorted(folder.glob("[0-9][0-9]_*.py")):
            match = NAME.match(path.name)
            number = int(match.group(1)) if match else 0
            if number and (exercises / "grading" / f"ex{number}.py").is_file():
                found.setdefault(number, path.name)
    return dict(sorted(found.items()))


FILES = exercise_files()
