"""Grade an exercise: one line per check, then `score: P/T`.

    python exercises/grade.py N [FILE] [--seed S] [--time-limit SECONDS]
    python exercises/grade.py --notes          # the instructor notes' numbers, computed now

N is the exercise (one of grading/catalogue.py's FILES); FILE is your file (default: the starter, exercises/0N_....py).
--seed S grades on a variation drawn from S (other digits, step counts, marker corners,
scans and hidden models); without it, the shipped variation. A failed check says what
was expected, what came, by how much, and a hint.

Your file runs in a separate process with a time limit for the whole exercise; its
prints are kept out of the check lines (a summary goes to stderr). Exit status: 0
when every check passes, 1 otherwise, 2 for a usage error or a course file missing.
The checks live in exercises/grading/ (the harness and its rooms, and one exN.py per exercise).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXERCISES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXERCISES.parent))  # utils.py, plumbing/ and demos/, as in the lectures
sys.path.insert(0, str(EXERCISES))  # tasks.py and grading/

from grading.catalogue import FILES  # noqa: E402  (N -> starter's name, found from the files)

NUMBERS = ", ".join(map(str, FILES))
USAGE = "usage: python exercises/grade.py N [FILE] [--seed S] [--time-limit SECONDS] | --notes"


def __getattr__(name: str) -> object:
    """`grade.tasks`, imported on first use: a usage error is reported before torch loads."""
    if name == "tasks":
        import tasks

        return tasks
    raise AttributeError(f"module 'grade' has no attribute {name!r}")


def checks_module(exercise: int) -> ModuleType:
    """exercises/grading/exN.py, whose checks(student, variation) lists the exercise's checks."""
    return importlib.import_module(f"grading.ex{exercise}")


def grade(exercise: int, path: Path, out=None, err=None, seed: int | None = None,
          time_limit: float | None = None) -> tuple[int, int]:
    """Grade the file at `path` on exercise `exercise`; prints the check lines and the score to `out`."""
    from grading import harness

    return harness.grade(exercise, Path(path), checks_module(exercise).checks, harness.Variation(seed),
                         harness.TIME_LIMIT if time_limit is None else time_limit, out=out, err=err)


def load(path: Path) -> ModuleType:
    """Import a file in this process (for running a starter's main() in the tests; never for grading)."""
    spec = importlib.util.spec_from_file_location(f"loaded_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parse(argv: list[str]) -> tuple[dict | None, str]:
    """The command line as {exercise, path, seed, time_limit} or {notes}, or None and one error line."""
    positional, options, rest = [], {}, list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in ("--seed", "--time-limit"):
            if not rest:
                return None, f"{arg} needs a value"
            options[arg] = rest.pop(0)
        elif arg.startswith(("--seed=", "--time-limit=")):
            key, value = arg.split("=", 1)
            options[key] = value
        elif arg == "--notes":
            options[arg] = True
        elif arg.startswith("-") and arg != "-":
            return None, f"unknown option {arg}"
        else:
            positional.append(arg)
    if "--notes" in options:
        if positional or len(options) > 1:
            return None, "--notes takes nothing else"
        return {"notes": True}, ""
    if not positional:
        return None, f"which exercise? N is one of {NUMBERS}"
    if len(positional) > 2:
        return None, f"one exercise and one file, got {len(positional)} arguments"
    if positional[0] not in {str(n) for n in FILES}:
        return None, f"N must be one of {NUMBERS}, got {positional[0]!r}"
    exercise = int(positional[0])
    path = Path(positional[1]) if len(positional) == 2 else EXERCISES / FILES[exercise]
    if not path.is_file() or path.suffix != ".py":
        return None, f"{path} is not a Python file"
    seed = time_limit = None
    if "--seed" in options:
        try:
            seed = int(options["--seed"])
        except ValueError:
            return None, f"--seed takes a whole number, got {options['--seed']!r}"
        if seed < 0:
            return None, f"--seed takes a whole number >= 0, got {seed}"
    if "--time-limit" in options:
        try:
            time_limit = float(options["--time-limit"])
        except ValueError:
            time_limit = -1.0
        if not 0 < time_limit < 1e6:
            return None, f"--time-limit takes a number of seconds > 0, got {options['--time-limit']!r}"
    return {"exercise": exercise, "path": path, "seed": seed, "time_limit": time_limit}, ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parsed, error = parse(argv)
    if parsed is None:
        print(f"error: {error} ({USAGE})", file=sys.stderr)
        return 2
    if parsed.get("notes"):
        from grading import notes

        print(notes.text())
        return 0
    try:
        passed, total = grade(parsed["exercise"], parsed["path"].resolve(), seed=parsed["seed"],
                              time_limit=parsed["time_limit"])
    except FileNotFoundError as missing:
        print(f"error: grading refused: {missing}", file=sys.stderr)
        return 2
    return 0 if passed == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
