"""The notebooks are the lectures in a second form: generated from the scripts, never edited by hand.

`python tools/make_notebooks.py` writes notebooks/NN_*.ipynb from NN_*.py (Jupytext, plus the splits
Jupytext cannot make). These tests check that every committed notebook is what that command makes from
its script now, and that lecture 1's notebook runs top to bottom in a real kernel on the digit track:
no error, its numbers printed, its figure inline. CI (.ci/run) executes all nine the same way.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "tools" / "make_notebooks.py")
make_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_notebooks)

SCRIPTS = make_notebooks.lecture_files()


def test_there_is_a_notebook_for_every_lecture_and_no_other():
    made = sorted(path.name for path in (ROOT / "notebooks").glob("*.ipynb"))
    assert made == sorted(f"{script.stem}.ipynb" for script in SCRIPTS), \
        f"run: {make_notebooks.COMMAND} (and remove the notebooks of lectures that are gone)"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem[:2] for s in SCRIPTS])
def test_every_notebook_is_what_its_script_generates(script):
    path = make_notebooks.notebook_path(script)
    assert path.is_file(), f"{path.name} is missing; run: {make_notebooks.COMMAND} {script.stem[:2]}"
    assert path.read_text(encoding="utf-8") == make_notebooks.notebook_text(script), \
        f"notebooks/{path.name} is stale (its script changed); run: {make_notebooks.COMMAND} {script.stem[:2]}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem[:2] for s in SCRIPTS])
def test_a_notebook_reads_as_a_lecture(script):
    """Header and sections in Markdown, a first cell for Colab, the demo in top-level cells, no outputs."""
    notebook = json.loads(make_notebooks.notebook_path(script).read_text(encoding="utf-8"))
    cells = notebook["cells"]
    sources = ["".join(cell["source"]) for cell in cells]
    assert cells[0]["cell_type"] == "markdown" and sources[0].startswith("# Part "), sources[0][:80]
    assert cells[1]["cell_type"] == "code" and "git\", \"clone\"" in sources[1]
    sections = [s for c, s in zip(cells, sources) if c["cell_type"] == "markdown" and s.startswith("## ")]
    assert len(sections) >= 2, "each `# %% Title` cell should be a Markdown section"
    code = [s for c, s in zip(cells, sources) if c["cell_type"] == "code"]
    assert not any("def main(" in s or s.strip() == "main()" for s in code), "the demo is its cells, not main()"
    first_demo = next(i for i, s in enumerate(code) if s.startswith("argv = None"))
    assert sum("parse_args(argv)" in s or "parse_arguments(" in s for s in code) == 1  # flags parsed once
    assert len(code) - first_demo >= 2, "the demo should be several cells"
    assert all(not cell.get("outputs") and cell.get("execution_count") is None
               for cell in cells if cell["cell_type"] == "code"), "committed notebooks carry no outputs"


def test_lecture_1_notebook_runs_in_a_kernel_on_the_digit_track(tmp_path):
    """In a subprocess: this process's sockets are patched (conftest.py), and a kernel needs its own."""
    env = {**os.environ, "SALIENCY_NOTEBOOK_FLAGS": f"--model mnist --quick --out-dir {tmp_path / 'figures'}",
           "TORCH_HOME": str(tmp_path / "torch_home"), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "make_notebooks.py"), "01", "--check",
                           "--execute", "--executed-dir", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    executed = json.loads((tmp_path / "01_vanilla_gradient_saliency.ipynb").read_text(encoding="utf-8"))
    outputs = [o for cell in executed["cells"] for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    errors = "".join("".join(o["text"]) for o in outputs if o.get("name") == "stderr")
    assert "Error" not in errors and "Traceback" not in errors and "Warning" not in errors, errors[-2000:]
    printed = "".join("".join(o["text"]) for o in outputs if o.get("name") == "stdout")
    assert "Top-5 predictions, digit CNN" in printed and "Sanity check" in printed
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the figure should show inline"
    assert (tmp_path / "figures" / "01_vanilla_gradient_mnist.png").is_file()  # and still be saved
    assert (tmp_path / "01_vanilla_gradient_saliency.html").stat().st_size > 10_000


def test_in_a_kernel_the_parser_reads_the_notebook_flags_not_the_kernels_argv(monkeypatch):
    from plumbing import cli

    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "/tmp/kernel-1.json"])
    monkeypatch.delenv(cli.NOTEBOOK_FLAGS_VARIABLE, raising=False)
    monkeypatch.setattr(cli, "in_kernel", lambda: True)
    args = cli.make_parser(None).parse_args()
    assert (args.model, args.quick) == ("mnist", True)  # the quick digit track
    monkeypatch.setenv(cli.NOTEBOOK_FLAGS_VARIABLE, "--model efficientnet_lite0 --seed 3")
    args = cli.make_parser(None).parse_args()
    assert (args.model, args.quick, args.seed) == ("efficientnet_lite0", False, 3)
    assert cli.make_parser(None).parse_args(["--quick"]).model is None  # a list given is read as given
    monkeypatch.setattr(cli, "in_kernel", lambda: False)
    with pytest.raises(SystemExit) as exit_:  # outside a kernel, sys.argv as always: -f is no flag of ours
        cli.make_parser(None).parse_args()
    assert exit_.value.code == 2


def test_a_cell_can_set_the_notebook_flags(monkeypatch):
    from plumbing import cli

    monkeypatch.setattr(cli, "NOTEBOOK_FLAGS", list(cli.NOTEBOOK_FLAGS))  # restored after the test
    monkeypatch.delenv(cli.NOTEBOOK_FLAGS_VARIABLE, raising=False)
    assert cli.notebook_flags("--model efficientnet_lite0 --quick") == ["--model", "efficientnet_lite0", "--quick"]
    assert cli.notebook_flags() == ["--model", "efficientnet_lite0", "--quick"]


def test_progress_is_silent_when_output_is_neither_a_terminal_nor_a_kernel(capsys):
    import utils

    assert list(utils.progress_bar(range(3), "counting")) == [0, 1, 2]
    utils.stage("a long step")
    assert capsys.readouterr().err == ""  # pytest's captured stderr is no terminal, and no kernel runs


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="the course is not a git clone here")
def test_outside_the_course_the_first_cell_clones_it_installs_and_imports(tmp_path):
    """Colab's case, played here: a kernel whose folder holds no course. Given the course's git address,
    the first cell clones it beside the notebook, installs requirements.txt (already satisfied here, so
    pip needs no network) and puts it on the import path."""
    cell = make_notebooks.SETUP_CELL.format(repository=repr(f"file://{ROOT}"))
    code = cell + "\nimport utils\nprint(utils.__file__)\n"
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == str(tmp_path.resolve() / "saliency-maps" / "utils.py")


def test_without_an_address_outside_the_course_the_first_cell_says_what_to_do(tmp_path):
    code = make_notebooks.SETUP_CELL.format(repository="None")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "set REPOSITORY above" in run.stderr.strip().splitlines()[-1], run.stderr
