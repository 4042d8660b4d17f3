"""Make the starters from the solutions: one source per exercise.

    python exercises/make_starters.py           # writes exercises/0N_....py from exercises/solutions/
    python exercises/make_starters.py --check   # exit 1 (and name them) when a starter is not current

A solution marks its answers as nbgrader does:

    ### BEGIN SOLUTION
    ...the instructor's code...
    ### STARTER
    #> ...what the student gets instead (each line after "#> ", at the marker's indentation)...
    ### END SOLUTION

The starter keeps everything outside the blocks, replaces each block by its STARTER lines
(none when there is no STARTER part), and drops "(instructor solution)" from the title.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

EXERCISES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXERCISES))
from grading.catalogue import FILES as NUMBERED  # noqa: E402  (found from the files: a new exercise is picked up)

FILES = tuple(name for name in NUMBERED.values() if (EXERCISES / "solutions" / name).is_file())
TITLE_MARK = "       (instructor solution)"
MARKER = re.compile(r"^(\s*)### (BEGIN SOLUTION|STARTER|END SOLUTION)\s*$")


def starter(solution: str) -> str:
    """The starter's text for a solution's text."""
    lines, out, state = solution.splitlines(), [], "outside"
    for number, line in enumerate(lines, 1):
        marker = MARKER.match(line)
        if marker:
            indent, kind = marker.groups()
            expected = {"BEGIN SOLUTION": "outside", "STARTER": "solution", "END SOLUTION": ("solution", "starter")}
            if state not in (expected[kind] if isinstance(expected[kind], tuple) else (expected[kind],)):
                raise ValueError(f"line {number}: ### {kind} out of place")
            state = {"BEGIN SOLUTION": "solution", "STARTER": "starter", "END SOLUTION": "outside"}[kind]
            block_indent = indent
            continue
        if state == "outside":
            out.append(line)
        elif state == "starter":
            text = line[len(block_indent):] if line.startswith(block_indent) else line.lstrip()
            if not text.startswith("#>"):
                raise ValueError(f"line {number}: a STARTER line starts with '#>'")
            rest = text[3:] if text.startswith("#> ") else text[2:]
            out.append(block_indent + rest if rest else "")
    if state != "outside":
        raise ValueError("a block is not closed with ### END SOLUTION")
    if out and out[0].endswith(TITLE_MARK):
        out[0] = out[0][:-len(TITLE_MARK)]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print("error: the only option is --check (usage: python exercises/make_starters.py [--check])",
              file=sys.stderr)
        return 2
    stale = []
    for name in FILES:
        text = starter((EXERCISES / "solutions" / name).read_text())
        target = EXERCISES / name
        if target.is_file() and target.read_text() == text:
            continue
        if check:
            stale.append(name)
        else:
            target.write_text(text)
            print(f"wrote exercises/{name}")
    if stale:
        print(f"not current (run python exercises/make_starters.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
