"""Grade an exercise: one line per check, then `score: P/T`.

    python exercises/grade.py N [FILE] [--seed S] [--time-limit SECONDS]
    python exercises/grade.py N FOLDER_OR_FILES... --gradebook grades.csv [--seed S] [--jobs J]
    python exercises/grade.py --notes          # the instructor notes' numbers, computed now

N is the exercise (one of grading/catalogue.py's FILES); FILE is your file (default: the starter,
exercises/0N_....py). --seed S grades on a variation drawn from S (other digits, step counts,
marker corners, scans and hidden models); without it, the shipped variation. A failed check says
what was expected, what came, by how much, and a hint.

With --gradebook, every file given (a folder stands for its *.py files) is graded in a process of
its own, J at a time (default: the machine's cores), and grades.csv gets one row per file: score,
total, seconds, each check's result, and what was killed, refused or removed; a summary line ends.

Your file runs in a separate, confined process (exercises/grading/sandbox.py) with a time limit for
the whole exercise and one per call; its prints are kept out of the check lines (a summary goes to
stderr, control characters escaped). The seed never appears in a command line the student's code
could read: grade.py hands it to a fresh copy of itself through a pipe. Exit status: 0 when every
check passes (or the gradebook was written), 1 otherwise, 2 for a usage error or a course file missing.
The checks live in exercises/grading/ (the harness and its rooms, and one exN.py per exercise).
"""
from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

EXERCISES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXERCISES.parent))  # utils.py, plumbing/ and demos/, as in the lectures
sys.path.insert(0, str(EXERCISES))  # tasks.py and grading/

from grading.catalogue import FILES  # noqa: E402  (N -> starter's name, found from the files)

NUMBERS = ", ".join(map(str, FILES))
USAGE = ("usage: python exercises/grade.py N [FILE] [--seed S] [--time-limit SECONDS] [--call-limit SECONDS] | "
         "N FILES_OR_FOLDERS... --gradebook CSV [--seed S] [--jobs J] | --notes")
VALUED = ("--seed", "--time-limit", "--call-limit", "--gradebook", "--jobs", "--seed-fd")


def __getattr__(name: str) -> object:
    """`grade.tasks`, imported on first use: a usage error is reported before torch loads."""
    if name == "tasks":
        import tasks

        return tasks
    raise AttributeError(f"module 'grade' has no attribute {name!r}")


def checks_module(exercise: int) -> ModuleType:
    """exercises/grading/exN.py, whose checks(student, variation) lists the exercise's checks."""
    return importlib.import_module(f"grading.ex{exercise}")


def preload(exercise: int) -> None:
    """Import every reference the checks of `exercise` use (Captum, the lectures they load) now, in the
    grader, before any student code runs: nothing planted later is ever imported by the grader."""
    module = checks_module(exercise)
    source = Path(module.__file__).read_text()
    import utils

    for lecture in sorted(set(re.findall(r"load_lecture\(\"([^\"]+)\"\)", source))):
        utils.load_lecture(lecture)
    if "captum" in source:
        try:
            import captum.attr  # noqa: F401
        except ImportError:
            pass


def grade(exercise: int, path: Path, out=None, err=None, seed: int | None = None,
          time_limit: float | None = None, call_limit: float | None = None,
          report: dict | None = None) -> tuple[int, int]:
    """Grade the file at `path` on exercise `exercise`; prints the check lines and the score to `out`."""
    preload(exercise)
    from grading import harness, student, variations

    return harness.grade(exercise, Path(path), checks_module(exercise).checks, variations.Variation(seed),
                         student.TIME_LIMIT if time_limit is None else time_limit, out=out, err=err,
                         call_limit=student.CALL_LIMIT if call_limit is None else call_limit, report=report)


def load(path: Path) -> ModuleType:
    """Import a file in this process (for running a starter's main() in the tests; never for grading)."""
    spec = importlib.util.spec_from_file_location(f"loaded_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parse(argv: list[str]) -> tuple[dict | None, str]:
    """The command line as {exercise, paths, seed, time_limit, gradebook, jobs} or {notes}, or None and
    one error line."""
    positional, options, rest = [], {}, list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in VALUED:
            if not rest:
                return None, f"{arg} needs a value"
            options[arg] = rest.pop(0)
        elif arg.startswith(tuple(f"{v}=" for v in VALUED)):
            key, value = arg.split("=", 1)
            options[key] = value
        elif arg == "--notes":
            options[arg] = True
        elif arg.startswith("-") and arg != "-":
            return None, f"unknown option {printable(arg)}"
        else:
            positional.append(arg)
    if "--notes" in options:
        if positional or len(options) > 1:
            return None, "--notes takes nothing else"
        return {"notes": True}, ""
    if not positional:
        return None, f"which exercise? N is one of {NUMBERS}"
    gradebook = Path(options["--gradebook"]) if "--gradebook" in options else None
    if len(positional) > 2 and gradebook is None:
        return None, f"one exercise and one file, got {len(positional)} arguments (a class needs --gradebook CSV)"
    if positional[0] not in {str(n) for n in FILES}:
        return None, f"N must be one of {NUMBERS}, got {printable(repr(positional[0]))}"
    exercise = int(positional[0])
    paths = []
    for given in positional[1:] or ([] if gradebook else [str(EXERCISES / FILES[exercise])]):
        path = Path(given)
        if gradebook is not None and path.is_dir():
            paths += sorted(p for p in path.glob("*.py") if p.is_file())
        elif not path.is_file() or path.suffix != ".py":
            return None, f"{printable(path)} is not a Python file" + (" or a folder" if gradebook else "")
        else:
            paths.append(path)
    if gradebook is not None:
        if not paths:
            return None, "no submissions: give the files, or folders holding *.py files"
        if gradebook.suffix != ".csv" or gradebook.is_dir() or not gradebook.resolve().parent.is_dir():
            return None, f"--gradebook takes a .csv file in an existing folder, got {printable(gradebook)}"
    seed = time_limit = None
    jobs = os.cpu_count() or 1
    if "--seed" in options and "--seed-fd" in options:
        return None, "--seed or --seed-fd, not both"
    if "--seed-fd" in options:  # grade.py's own re-run: the seed comes through a pipe
        try:
            fd = int(options["--seed-fd"])
            options["--seed"] = os.read(fd, 64).decode().strip()
            os.close(fd)
        except (ValueError, OSError):
            return None, "--seed-fd takes the number of an open pipe (grade.py passes it to itself)"
    if "--seed" in options:
        try:
            seed = int(options["--seed"])
        except ValueError:
            return None, f"--seed takes a whole number, got {printable(repr(options['--seed']))}"
        if seed < 0:
            return None, f"--seed takes a whole number >= 0, got {seed}"
    if "--time-limit" in options:
        try:
            time_limit = float(options["--time-limit"])
        except ValueError:
            time_limit = -1.0
        if not 0 < time_limit < 1e6:
            return None, f"--time-limit takes a number of seconds > 0, got {printable(repr(options['--time-limit']))}"
    call_limit = None
    if "--call-limit" in options:
        try:
            call_limit = float(options["--call-limit"])
        except ValueError:
            call_limit = -1.0
        if not 0 < call_limit < 1e6:
            return None, f"--call-limit takes a number of seconds > 0, got {printable(repr(options['--call-limit']))}"
    if "--jobs" in options:
        try:
            jobs = int(options["--jobs"])
        except ValueError:
            jobs = 0
        if not 1 <= jobs <= 256:
            return None, f"--jobs takes a whole number from 1 to 256, got {printable(repr(options['--jobs']))}"
    return {"exercise": exercise, "path": paths[0], "paths": paths, "seed": seed, "time_limit": time_limit,
            "call_limit": call_limit, "gradebook": gradebook, "jobs": jobs, "seed_given": "--seed" in argv or any(
                a.startswith("--seed=") for a in argv)}, ""


def printable(text: object) -> str:
    """`text` with control characters escaped (a file name or argument echoed to the terminal)."""
    text = str(text)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def without_seed(argv: list[str]) -> list[str]:
    """`argv` with --seed S (or --seed=S) taken out."""
    out, rest = [], list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--seed":
            rest = rest[1:]
        elif not arg.startswith("--seed="):
            out.append(arg)
    return out


def rerun_without_seed(argv: list[str], seed: int) -> None:
    """Become a fresh grade.py whose command line holds no seed: the seed comes through a pipe, so the
    student's code cannot read it in /proc/PID/cmdline (POSIX only; elsewhere nothing is done)."""
    if os.name != "posix":
        return
    read, write = os.pipe()
    os.write(write, str(seed).encode())
    os.close(write)
    os.set_inheritable(read, True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, str(Path(__file__).resolve()), *without_seed(argv),
                              "--seed-fd", str(read)])


def worker_command(exercise: int, path: Path, seed_fd: int | None, time_limit: float | None,
                   call_limit: float | None) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), str(exercise), str(path), "--report-json"]
    if call_limit is not None:
        command += ["--call-limit", repr(call_limit)]
    if seed_fd is not None:
        command += ["--seed-fd", str(seed_fd)]
    if time_limit is not None:
        command += ["--time-limit", repr(time_limit)]
    return command


def grade_one_in_a_process(exercise: int, path: Path, seed: int | None, time_limit: float | None,
                           call_limit: float | None = None) -> dict:
    """One submission graded by a grade.py of its own (so a submission that brings its grader down costs
    only its own row); its report, or one that says what went wrong."""
    started = time.monotonic()
    fds = ()
    read = None
    if seed is not None:
        read, write = os.pipe()
        os.write(write, str(seed).encode())
        os.close(write)
        fds = (read,)
    limit = (time_limit or 600.0) * 2 + 600.0  # the exercise's limit, its calls restarted, and setting up
    process = subprocess.Popen(worker_command(exercise, path, read, time_limit, call_limit), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, pass_fds=fds,
                               start_new_session=True)
    if read is not None:
        os.close(read)
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return {"file": str(path), "passed": 0, "total": None, "seconds": round(time.monotonic() - started, 1),
                "checks": [], "incidents": [f"the grader gave up after {limit:g} s"]}
    lines = out.decode("utf-8", "replace").splitlines()
    if lines and lines[-1].startswith("report: "):
        report = json.loads(lines[-1][len("report: "):])
        report["file"] = str(path)
        return report
    tail = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()][-1:]
    return {"file": str(path), "passed": 0, "total": None, "seconds": round(time.monotonic() - started, 1),
            "checks": [], "incidents": [f"the grader failed (exit status {process.returncode}): "
                                        f"{printable(tail[0])[:200] if tail else 'no message'}"]}


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run as a formula (=, +, -, @ at the start get a quote)."""
    text = printable(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def gradebook(exercise: int, paths: list[Path], csv_path: Path, seed: int | None, time_limit: float | None,
              jobs: int, call_limit: float | None = None) -> int:
    """Grade every file in `paths`, `jobs` at a time; one CSV row each and a summary line."""
    from grading import sandbox

    progress = sys.stderr.isatty()
    reports: list[dict] = [{} for _ in paths]
    if jobs > 1 and len(paths) > 1 and not sandbox.privileged():
        print("note: not run as root on Linux, a student's code can write into the course folder, and gradings "
              "running side by side could not tell whose file it was: they run one at a time", file=sys.stderr)
        jobs = 1
    done = 0

    def run(index: int) -> None:
        nonlocal done
        reports[index] = grade_one_in_a_process(exercise, paths[index], seed, time_limit, call_limit)
        done += 1
        if progress:
            r = reports[index]
            total = r["total"] if r["total"] is not None else "?"
            print(f"[{done}/{len(paths)}] {printable(paths[index].name)}: {r['passed']}/{total} "
                  f"({r['seconds']:g} s){'; ' + '; '.join(r['incidents']) if r['incidents'] else ''}",
                  file=sys.stderr, flush=True)

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(paths)))) as pool:
        list(pool.map(run, range(len(paths))))
    names: list[str] = []
    for report in reports:
        for name, _, _ in report["checks"]:
            if name not in names:
                names.append(name)
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "score", "total", "seconds", *names, "killed or refused"])
        for report in reports:
            results = {name: ("ok" if ok else line.split(f"{name}: ", 1)[-1]) for name, ok, line in report["checks"]}
            writer.writerow([safe_cell(report["file"]), report["passed"],
                             "" if report["total"] is None else report["total"], report["seconds"],
                             *(safe_cell(results.get(name, "not run")) for name in names),
                             safe_cell("; ".join(report["incidents"]))])
    totals = [r["total"] for r in reports if r["total"]]
    full = sum(1 for r in reports if r["total"] and r["passed"] == r["total"])
    troubled = sum(1 for r in reports if r["incidents"])
    mean = sum(r["passed"] for r in reports) / len(reports)
    print(f"gradebook: {len(reports)} submissions graded, mean score {mean:.1f}/{max(totals) if totals else '?'}, "
          f"{full} with every point, {troubled} with something killed, refused or removed; "
          f"written to {printable(csv_path)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    command_line = argv is None
    argv = sys.argv[1:] if argv is None else argv
    report_json = "--report-json" in argv  # grade.py's own worker in a class run: the report as the last line
    argv = [a for a in argv if a != "--report-json"]
    parsed, error = parse(argv)
    if parsed is None:
        print(f"error: {error} ({USAGE})", file=sys.stderr)
        return 2
    if parsed.get("notes"):
        from grading import notes

        print(notes.text())
        return 0
    if command_line and parsed["seed_given"] and parsed["seed"] is not None:
        rerun_without_seed(argv, parsed["seed"])  # does not return on POSIX
    sys.dont_write_bytecode = True  # the grader writes nothing into the course folder
    if parsed["gradebook"] is not None:
        return gradebook(parsed["exercise"], parsed["paths"], parsed["gradebook"], parsed["seed"],
                         parsed["time_limit"], parsed["jobs"], parsed["call_limit"])
    report: dict = {}
    try:
        passed, total = grade(parsed["exercise"], parsed["path"].resolve(), seed=parsed["seed"],
                              time_limit=parsed["time_limit"], call_limit=parsed["call_limit"], report=report)
    except FileNotFoundError as missing:
        print(f"error: grading refused: {missing}", file=sys.stderr)
        return 2
    if report_json:
        print("report: " + json.dumps(report), flush=True)
    return 0 if passed == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
