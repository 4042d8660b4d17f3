"""The grader's harness: the student's file runs in a child process; every verdict is made here.

How a grading run goes (grade()):
1. The course's files the grading relies on (guard.course_files()) are read into memory; a missing
   one stops the grading before it starts (the student is not to blame).
2. A child process (forked by runner.py's fork server, cwd a fresh temporary folder) imports
   the student's file. Each check asks it to call one of the student's functions
   (Student.call); the child sends back plain values (tensors, numbers, strings, lists,
   dicts), loaded here with torch.load(weights_only=True), and the check compares them
   with the grader's own answer.
   So nothing the student's code does to its own process (patching the grader's modules,
   printing a score, exiting with 0) can award a point.
3. The whole exercise has a time limit for the child's work (time_limit seconds); when it
   strikes, the check running says so and the rest are not run. The child's stdout and stderr
   go to files, capped at OUTPUT_CAP bytes; a summary goes to the grader's stderr.
4. After every call the course's files are compared with their copies in memory: a file the
   student's code deleted or changed is written back, and the check that was running fails
   and says which file it was.

The rooms (each small enough to hold in mind):
    checking.py    failures and how they read, comparisons, the checks every exercise shares, run_check
    student.py     the student proxy: Student, which calls the student's functions in the child
    child.py       the child process seen from here: the fork server (runner.py) and its children
    sandbox.py     where the child runs: a read-only copy, a uid of its own, limits, the sweep after it
    guard.py       the course's files, copied in memory and restored
    models.py      the small models the checks send to the child (the child unpickles them)
    variations.py  what --seed draws, and values kept across calls
    catalogue.py   which exercises there are, found from their files
    harness.py     grade(): one grading run, from the first check to the score
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from grading import sandbox
from grading.checking import Stopped, StudentRaised, one_line, run_check
from grading.guard import Guard, course_files
from grading.student import CALL_LIMIT, TIME_LIMIT, Student
from grading.variations import Variation


def grade(exercise: int, path: Path, checks_of: Callable, variation: Variation | None = None,
          time_limit: float = TIME_LIMIT, out=None, err=None, call_limit: float = CALL_LIMIT,
          report: dict | None = None) -> tuple[int, int]:
    """Run every check of `exercise` on the file at `path`; print one line each and the score.

    Raises FileNotFoundError (before anything runs) when a course file is missing. `report`, when
    given, is filled for the gradebook: each check's (name, ok, line), the seconds taken, and what
    was killed, refused or removed.
    """
    out, err = out or sys.stdout, err or sys.stderr
    variation = variation or Variation()
    sandbox.hide_from_children()
    with sandbox.course_lock():
        return _grade(exercise, path, checks_of, variation, time_limit, out, err, call_limit, report)


def _grade(exercise: int, path: Path, checks_of: Callable, variation: Variation, time_limit: float, out, err,
           call_limit: float, report: dict | None) -> tuple[int, int]:
    """grade(), with the course folder locked."""
    guard = Guard(course_files())
    started = time.monotonic()
    student = Student(Path(path).resolve(), guard, time_limit, call_limit)
    names = [name for name, _ in checks_of(None, variation)]
    try:
        try:
            student.load()
        except (StudentRaised, Stopped) as error:
            reason = (f"{one_line(error.kinds[0], 80)}: {one_line(error.message, 200)} (at {one_line(error.where, 120)})"
                      if isinstance(error, StudentRaised) else one_line(error, 300))
            print(f"FAIL  {one_line(Path(path).name, 120)} does not import: {reason}", file=out)
            results = [(False, f"FAIL  {name}: not run, the file does not import") for name in names]
            for _, line in results:
                print(line, file=out, flush=True)
        else:
            results = []
            for check in checks_of(student, variation):
                results.append(run_check(check))
                print(results[-1][1], file=out, flush=True)
    finally:
        student.close()
        for line in student.output_summary():
            print(line, file=err)
        late = guard.damage()
        if late:
            print(f"note: after grading, the course's files were {'; '.join(late)}", file=err)
            student.incidents += late
        student.folder.cleanup()
    passed = sum(ok for ok, _ in results)
    print(f"score: {passed}/{len(results)}", file=out, flush=True)
    if report is not None:
        report.update(passed=passed, total=len(results), seconds=round(time.monotonic() - started, 1),
                      checks=[(name, ok, line) for name, (ok, line) in zip(names, results)],
                      incidents=student.incidents + [line for line in guard.tidied])
    return passed, len(results)
