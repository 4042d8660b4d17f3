"""The course's shape: each lecture's header says where it stands, and nothing lists the lectures by hand.

A lecture is a numbered script, `NN_name.py`. Its header (the module docstring) opens with
"Part N of M", N its own number and M the number of lectures, and names the scripts before
and after it, so a student can walk the course from any file. The tests and the benchmarks
find the lectures from the file names, so a lecture added or renamed is picked up everywhere.
"""
from __future__ import annotations

import ast
import re

import pytest

from conftest import ROOT

LECTURES = sorted(path.stem for path in ROOT.glob("[0-9][0-9]_*.py"))


def header(name: str) -> str:
    return ast.get_docstring(ast.parse((ROOT / f"{name}.py").read_text(encoding="utf-8"))) or ""


def test_the_lectures_are_numbered_from_one_without_gaps():
    assert [int(name[:2]) for name in LECTURES] == list(range(1, len(LECTURES) + 1))


@pytest.mark.parametrize("index, name", list(enumerate(LECTURES)), ids=LECTURES)
def test_the_header_says_part_n_of_9_and_names_its_neighbours(index, name):
    text = header(name)
    first = text.splitlines()[0] if text else ""
    assert re.match(rf"Part {int(name[:2])} of {len(LECTURES)}\b", first), f"{name}: first line {first!r}"
    previous = re.findall(r"Previous:\s*(\S+?\.py)", text)
    following = re.findall(r"Next:\s*(\S+?\.py)", text)
    assert previous == ([f"{LECTURES[index - 1]}.py"] if index > 0 else []), f"{name}: Previous: {previous}"
    assert following == ([f"{LECTURES[index + 1]}.py"] if index + 1 < len(LECTURES) else []), \
        f"{name}: Next: {following}"


def lecture_lists(path) -> list[tuple[int, list[str]]]:
    """Literal lists, tuples, sets and dicts in a file that hold three or more lecture names."""
    names = set(LECTURES) | {f"{name}.py" for name in LECTURES}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        items = node.keys + node.values if isinstance(node, ast.Dict) else \
            node.elts if isinstance(node, (ast.List, ast.Tuple, ast.Set)) else []
        held = [item.value for item in items if isinstance(item, ast.Constant) and item.value in names]
        if len(held) >= 3:
            found.append((node.lineno, held))
    return found


@pytest.mark.parametrize("folder", ["tests", "benchmarks"])
def test_tests_and_benchmarks_find_the_lectures_by_file_name(folder):
    lists = {str(path.relative_to(ROOT)): lecture_lists(path) for path in sorted((ROOT / folder).glob("*.py"))}
    assert not {path: found for path, found in lists.items() if found}, "lectures listed by hand"


def test_the_finders_see_every_numbered_script():
    import sys

    import test_bad_input
    import test_contract

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import flags
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert test_bad_input.SCRIPTS == LECTURES
    assert sorted(test_contract.LECTURES.values()) == LECTURES
    assert list(flags.lectures().values()) == LECTURES
