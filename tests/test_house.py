"""The house the course lives in: imports run one way, and each kind of thing has one table.

Floors, from the ground up (a file imports only what stands on its own floor or below it):
    0  plumbing/   what the lectures need but do not teach
    1  utils.py    what a student reads inside the methods
    2  demos/      the demos' set-up and lecture 8's and 9's machinery
    3  the lectures, NN_name.py (a lecture may load an earlier one's method with load_lecture)
Everything else (tests, benchmarks, exercises, tools) stands on top and may use any floor; no
floor imports it. An import of the course inside a function (to dodge a loop) is not allowed.
The imports are read with `ast`, so nothing is run; `load_lecture("NN_...")` counts as an import.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from plumbing import lectures as found
from plumbing.methods import METHODS, Method, compared
from plumbing.networks import NETWORKS, Network

FLOORS = {"plumbing": 0, "utils": 1, "demos": 2}
LECTURE_FLOOR = 3


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int | None:
    """The floor of a module of the course, None for anything else (a test, a library)."""
    top = module.split(".")[0]
    if top in FLOORS:
        return FLOORS[top]
    if len(top) > 3 and top[:2].isdigit() and top[2] == "_":
        return LECTURE_FLOOR
    return None


def course_files(root: Path) -> list[Path]:
    files = [root / "utils.py", *sorted(root.glob("[0-9][0-9]_*.py"))]
    for package in ("plumbing", "demos"):
        files += sorted((root / package).glob("*.py"))
    return [f for f in files if f.is_file()]


def imports_of(path: Path, root: Path) -> list[tuple[str, int, bool]]:
    """(module of the course it imports, line, inside a function?) for every import of the course in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path, root)
    found_imports = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                # `from plumbing import relevance` imports the module plumbing.relevance
                names = [f"{child.module}.{alias.name}" if floor(child.module) is not None and
                         (root / child.module.replace(".", "/") / f"{alias.name}.py").is_file()
                         else child.module for alias in child.names]
            elif isinstance(child, ast.Call) and getattr(child.func, "attr", getattr(child.func, "id", "")) in (
                    "load_lecture", "import_module") and child.args and isinstance(child.args[0], ast.Constant):
                names = [str(child.args[0].value)]
            for name in names:
                if floor(name) is not None and name != here:
                    found_imports.append((name, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found_imports


def problems(root: Path) -> list[str]:
    """Every upward import, import inside a function, and import cycle among the course's files."""
    graph: dict[str, set[str]] = {}
    where: dict[str, Path] = {}
    found_problems = []
    for path in course_files(root):
        here = module_name(path, root)
        where[here] = path
        graph.setdefault(here, set())
        for name, line, in_function in imports_of(path, root):
            shown = f"{path.relative_to(root)}:{line} imports {name}"
            if in_function:
                found_problems.append(f"{shown} inside a function")
            if floor(name) > floor(here):
                found_problems.append(f"{shown}, a floor above it ({floor(name)} > {floor(here)})")
            graph[here].add(name)
    # Cycles: a depth-first search that reports the first back edge it meets, with the loop's files.
    state: dict[str, int] = {}
    stack: list[str] = []

    def search(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                loop = stack[stack.index(target):] + [target]
                found_problems.append("import cycle: " + " -> ".join(loop))
            elif target in graph and target not in state:
                search(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            search(node)
    return found_problems


def test_imports_run_one_way_without_cycles():
    assert problems(ROOT) == []


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_check_finds_a_cycle_an_upward_import_and_an_import_in_a_function(tmp_path):
    root = write(tmp_path, {
        "utils.py": "from plumbing import cli\n",
        "plumbing/__init__.py": "",
        "plumbing/cli.py": "from plumbing import errors\n",
        "plumbing/errors.py": "import plumbing.cli\n",  # a loop on the ground floor
        "plumbing/paths.py": "import utils\n",  # upward
        "demos/__init__.py": "",
        "demos/common.py": "def f():\n    from plumbing import paths\n",  # to dodge a loop
        "01_first.py": "import utils\n",
        "02_second.py": "import utils\nx = utils.load_lecture('01_first')\n",
    })
    found_problems = problems(root)
    assert any(p.startswith("import cycle: ") and "plumbing.cli" in p and "plumbing.errors" in p
               for p in found_problems), found_problems
    assert any("plumbing/paths.py:1 imports utils, a floor above it" in p for p in found_problems)
    assert any("demos/common.py:2 imports plumbing.paths inside a function" in p for p in found_problems)
    assert len(found_problems) == 3, found_problems  # 02 loading 01 is on one floor: allowed


def test_a_lecture_that_loads_itself_back_is_a_cycle(tmp_path):
    root = write(tmp_path, {"utils.py": "", "01_a.py": "import utils\nutils.load_lecture('02_b')\n",
                            "02_b.py": "import utils\nutils.load_lecture('01_a')\n"})
    assert [p for p in problems(root) if p.startswith("import cycle")] == ["import cycle: 01_a -> 02_b -> 01_a"]


# %% One table per kind of thing ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_row_matches_its_function(name):
    """The row's settings are the function's parameters after `target`, in order, with its defaults."""
    row = METHODS[name]
    assert row.lecture in found.lectures().values(), f"{name}: no lecture {row.lecture}"
    parameters = list(inspect.signature(row.load()).parameters.values())
    assert [p.name for p in parameters[:3]] == ["model", "inputs", "target"]
    own = {p.name: p.default for p in parameters[3:]}
    assert list(row.settings) == [p for p in own if p in row.settings], f"{name}: settings out of order"
    assert set(row.settings) <= set(own), f"{name}: settings the function does not take"
    for setting, spec in row.settings.items():
        assert spec.default == own[setting], f"{name}.{setting}: row says {spec.default!r}, function {own[setting]!r}"
        if spec.low is not None and spec.default is not None:
            assert spec.low <= spec.default <= spec.high
        if spec.choices:
            assert spec.default in spec.choices
    assert set(row.quick) <= set(row.settings)
    assert row.output in ("pixel", "cam") and row.networks in ("any", "conv", "relu")


@pytest.mark.parametrize("name", list(NETWORKS))
def test_each_network_row_builds_and_names_layers_that_exist(name):
    import torch

    row = NETWORKS[name]
    if name == "efficientnet_lite0":
        pytest.importorskip("efficientnet_lite_pytorch")
    with torch.device("meta"):
        model = row.architecture()
    layers = dict(model.named_modules())
    for layer in [row.cam_layer, *row.stages, *row.layer_words]:
        assert layer is None or layer in layers, f"{name}: no layer {layer}"
    assert row.state_key in model.state_dict(), f"{name}: its state dicts hold no {row.state_key}"


def dummy_method() -> Method:
    """A method registered for one test: lecture 1's gradient under another name."""
    return Method("dummy gradient", "dummy", "01_vanilla_gradient_saliency", "vanilla_gradient", False, "pixel",
                  "any", "1 forward + 1 backward", compared=True, marker="*")


@pytest.fixture
def registered(monkeypatch) -> Method:
    row = dummy_method()
    monkeypatch.setitem(METHODS, row.name, row)
    return row


def test_a_registered_method_is_picked_up_by_the_contract_test(registered):
    import test_contract

    assert registered.function in [m.name for m in test_contract.table_methods()]


def test_a_registered_method_is_picked_up_by_the_benchmark(registered):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_methods
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert registered.name in [row.name for row in bench_methods.timed_methods()]


def test_a_registered_method_is_picked_up_by_lecture_8(registered):
    import types

    from demos import evaluation

    assert registered in compared()
    run = types.SimpleNamespace(args=types.SimpleNamespace(seed=0), settings=evaluation.QUICK_RUN, layer=None)
    listed = evaluation.methods(run)
    assert "dummy gradient" in listed
    import torch
    from torch import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(2, 1, 2, 2)
    torch.testing.assert_close(listed["dummy gradient"](model, x, torch.tensor([0, 1])),
                               registered.load()(model, x, torch.tensor([0, 1])))


def test_a_registered_network_is_offered_by_the_flags_and_read_by_the_demos(monkeypatch):
    import torch
    from torch import nn

    from plumbing.cli import make_parser

    def tiny() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 1000))

    row = Network("tiny", "imagenet", tiny, NETWORKS["resnet18"].weights, "1", ("0", "1"), input_size=16)
    monkeypatch.setitem(NETWORKS, "tiny", row)
    args = make_parser(None).parse_args(["--model", "tiny", "--quick"])
    assert args.model == "tiny"
    from demos import common

    args.layer = None
    common.check_cam_layer(args)  # reads the row's layer, input size and channels on the meta device
    args.layer = "2"  # the pooling to 1x1: refused in one line
    with pytest.raises(ValueError, match="1x1"):
        common.check_cam_layer(args)
    assert dataclasses.replace(row, name="x").architecture()(torch.zeros(1, 3, 16, 16)).shape == (1, 1000)


def test_a_sixth_exercise_is_its_starter_its_solution_and_its_checks(tmp_path):
    """The graders find exercises from their files: a starter (or solution) NN_name.py beside a checks
    module grading/exN.py is an exercise; nothing else lists them."""
    sys.path.insert(0, str(ROOT / "exercises"))
    try:
        from grading import catalogue
    finally:
        sys.path.remove(str(ROOT / "exercises"))
    shipped = catalogue.exercise_files()
    assert shipped == catalogue.FILES and sorted(shipped) == list(range(1, len(shipped) + 1))
    copy = write(tmp_path, {**{f"{name}": "" for name in shipped.values()},
                            **{f"grading/ex{n}.py": "" for n in shipped},
                            "06_dummy.py": "", "solutions/06_dummy.py": "", "grading/ex6.py": "",
                            "07_no_checks_yet.py": ""})  # a starter without its checks is not an exercise
    assert catalogue.exercise_files(copy) == {**shipped, 6: "06_dummy.py"}
