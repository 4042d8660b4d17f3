"""Generate the lectures' notebooks from their scripts: the script stays the one thing you edit.

    python tools/make_notebooks.py              # write notebooks/NN_*.ipynb, without outputs
    python tools/make_notebooks.py --check      # exit 1 and name every notebook that differs from its script
    python tools/make_notebooks.py --execute    # also run each in a kernel: outputs/notebooks/NN_*.ipynb + .html
    python tools/make_notebooks.py --check --execute   # CI: fail on a stale notebook, else run them all
    python tools/make_notebooks.py 01 03        # only these lectures

Each lecture is already in Jupytext's percent format (`# %% Title` cells). Jupytext reads the
text this script writes from it and makes the notebook; this script does only what Jupytext
cannot, by the lecture's structure and never by its name:
  - the header docstring becomes a Markdown cell (title, links to the previous and next
    notebooks, indented formulas in LaTeX where FORMULAS knows the line, otherwise as written);
  - each `# %% Title` cell becomes a `## Title` Markdown cell, with the comment block that opens
    the cell as its text, then the code;
  - `main()` becomes the demo itself, several top-level cells in the order of the lesson: its body
    is dedented and split at its numbered comments (`# 1. ...`, `# 2. ...`), each comment a
    Markdown cell above its code; without numbered comments, one cell parses the flags and one
    runs the rest. The flags are parsed once, in the first of them, from `argv = None`: in a
    kernel `parse_args` reads the notebook's flags (plumbing/cli.py), the digit track by default;
  - a first cell finds the course (this repository, or in Colab a clone of it) and does nothing else.
Executed with `--execute` (nbclient), each notebook runs on the notebook flags, or on
SALIENCY_NOTEBOOK_FLAGS when that is set (tests and CI set "--model mnist --quick").
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import textwrap
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "outputs" / "notebooks"
COMMAND = "python tools/make_notebooks.py"
TIMEOUT = 1800  # seconds per cell when executing; the full photo runs of lectures 8 and 9 take minutes

# The header's formulas in LaTeX, by the exact text of their line (stripped). A line not found here,
# or a block with one such line, is shown as written, in a code block: a changed formula is never
# rendered from a stale translation.
FORMULAS = {
    # lecture 1
    "M_c(x)  = | dS_c / dx |, evaluated at x             one number per pixel and channel":
        r"M_c(x) = \left| \frac{\partial S_c}{\partial x} \right|_{x} \quad \text{one number per pixel and channel}",
    "shown as  max over the colour channels of | dS_c / dx |   (Simonyan et al.)":
        r"\text{shown as } \max_{\text{colour channels}} \left| \frac{\partial S_c}{\partial x} \right|"
        r"\quad \text{(Simonyan et al.)}",
    "S_c(x)    the logit of class c for the image x (before the softmax)":
        r"S_c(x) \quad \text{the logit of class } c \text{ for the image } x \text{ (before the softmax)}",
    # lecture 2
    "A_c(x)_i = x_i * dS_c/dx_i (x)                 signed: red raises S_c, blue lowers it":
        r"A_c(x)_i = x_i \cdot \frac{\partial S_c}{\partial x_i}(x) \quad \text{signed: red raises } S_c"
        r"\text{, blue lowers it}",
    "linear model S_c(x) = w . x + b:   sum_i A_c(x)_i + b = S_c(x)   exactly":
        r"\text{linear model } S_c(x) = w \cdot x + b: \quad \sum_i A_c(x)_i + b = S_c(x) \quad \text{exactly}",
    # lecture 3
    "SG_c(x)  = 1/n sum_{j=1..n} dS_c/dx (x + eps_j),     eps_j ~ N(0, sigma^2 I)":
        r"SG_c(x) = \frac{1}{n} \sum_{j=1}^{n} \frac{\partial S_c}{\partial x}(x + \epsilon_j), \quad"
        r" \epsilon_j \sim \mathcal{N}(0, \sigma^2 I)",
    "SG2_c(x) = 1/n sum_{j=1..n} (dS_c/dx (x + eps_j))^2    SmoothGrad-Squared":
        r"SG2_c(x) = \frac{1}{n} \sum_{j=1}^{n} \left( \frac{\partial S_c}{\partial x}(x + \epsilon_j) \right)^2"
        r" \quad \text{SmoothGrad-Squared}",
    "sigma    = noise_level * (max(x) - min(x))             per example, in input units":
        r"\sigma = \text{noise\_level} \cdot (\max(x) - \min(x)) \quad \text{per example, in input units}",
    # lecture 4
    "IG_i(x) = (x_i - x'_i) * integral_0^1  dS_c(x' + alpha (x - x')) / dx_i  d alpha":
        r"IG_i(x) = (x_i - x'_i) \int_0^1 \frac{\partial S_c(x' + \alpha (x - x'))}{\partial x_i} \, d\alpha",
    "~ (x_i - x'_i) * sum_k  w_k * dS_c(x' + alpha_k (x - x')) / dx_i":
        r"\approx (x_i - x'_i) \sum_k w_k \, \frac{\partial S_c(x' + \alpha_k (x - x'))}{\partial x_i}",
    "completeness:  sum_i IG_i(x) = S_c(x) - S_c(x')      (exact for the true integral)":
        r"\text{completeness: } \sum_i IG_i(x) = S_c(x) - S_c(x') \quad \text{(exact for the true integral)}",
    # lecture 5
    "A_k       the k-th feature map of a convolutional layer, shape (h, w)":
        r"A_k \quad \text{the } k\text{-th feature map of a convolutional layer, shape } (h, w)",
    "S_c       the logit of class c": r"S_c \quad \text{the logit of class } c",
    "alpha_k = 1/(h w) * sum over (i, j) of dS_c / dA_k[i, j]     the map's importance":
        r"\alpha_k = \frac{1}{h w} \sum_{i, j} \frac{\partial S_c}{\partial A_k[i, j]} \quad"
        r" \text{the map's importance}",
    "L_c     = ReLU( sum_k alpha_k A_k )                           a coarse (h, w) map":
        r"L_c = \mathrm{ReLU}\Big( \sum_k \alpha_k A_k \Big) \quad \text{a coarse } (h, w) \text{ map}",
    "shown as  L_c upsampled (bilinear) to the input's H x W":
        r"\text{shown as } L_c \text{ upsampled (bilinear) to the input's } H \times W",
    # lecture 6
    "forward   y = ReLU(x) = max(x, 0)                      unchanged":
        r"\text{forward} \quad y = \mathrm{ReLU}(x) = \max(x, 0) \quad \text{unchanged}",
    "backward  ordinary:  dS/dx = dS/dy * [x > 0]":
        r"\text{backward, ordinary:} \quad \frac{\partial S}{\partial x} = \frac{\partial S}{\partial y}"
        r" \cdot [x > 0]",
    "guided:    R_x   = max(R_y, 0) * [x > 0]     at every ReLU":
        r"\text{guided:} \quad R_x = \max(R_y, 0) \cdot [x > 0] \quad \text{at every ReLU}",
    "GB_c(x) = the input gradient dS_c/dx computed with the guided rule":
        r"GB_c(x) = \text{the input gradient } \partial S_c / \partial x \text{ computed with the guided rule}",
    "ReLU6 = min(max(x, 0), 6), a ReLU then a clamp (MobileNet, EfficientNet-Lite):":
        r"\mathrm{ReLU6}(x) = \min(\max(x, 0), 6) \quad \text{a ReLU then a clamp (MobileNet, EfficientNet-Lite)}",
    "guided:    R_x   = max(R_y, 0) * [0 < x < 6]           the clamp keeps its own backward":
        r"\text{guided:} \quad R_x = \max(R_y, 0) \cdot [0 < x < 6] \quad \text{the clamp keeps its own backward}",
    # lecture 7
    "GB_c(x)   guided backpropagation, shape (C, H, W)                 lecture 6":
        r"GB_c(x) \quad \text{guided backpropagation, shape } (C, H, W) \quad \text{lecture 6}",
    "L_c(x)    Grad-CAM, ReLU(sum_k alpha_k A_k), upsampled to (1, H, W)   lecture 5":
        r"L_c(x) \quad \text{Grad-CAM, } \mathrm{ReLU}\big(\sum_k \alpha_k A_k\big)\text{, upsampled to }"
        r" (1, H, W) \quad \text{lecture 5}",
    "GGC_c(x) = GB_c(x) * L_c(x)          element-wise, L_c broadcast over the C channels":
        r"GGC_c(x) = GB_c(x) \odot L_c(x) \quad \text{element-wise, } L_c \text{ broadcast over the } C"
        r" \text{ channels}",
    # lecture 8's sections
    "min_g sum_z exp(-d(z)^2 / width^2) (v(z) - g0 - z . g)^2,  d(z) = 1 - cos(z, 1)":
        r"\min_g \sum_z e^{-d(z)^2 / \text{width}^2} \, \big(v(z) - g_0 - z \cdot g\big)^2, \quad"
        r" d(z) = 1 - \cos(z, \mathbf{1})",
    "CC(R, H) = cov(R, H) / (std(R) std(H)) over the pixels, H a human attention map (Bylinskii et al.)":
        r"CC(R, H) = \frac{\mathrm{cov}(R, H)}{\mathrm{std}(R)\,\mathrm{std}(H)} \quad \text{over the pixels, }"
        r" H \text{ a human attention map (Bylinskii et al.)}",
    "max-sensitivity(x) = max over draws d ~ U[-r, r] of ||m(x + d) - m(x)|| / ||m(x)||":
        r"\text{max-sensitivity}(x) = \max_{d \sim U[-r, r]} \frac{\lVert m(x + d) - m(x) \rVert}"
        r"{\lVert m(x) \rVert}",
    "infidelity(x) = E_I [(sum_i I_i R_i - (f_c(x) - f_c(x - I)))^2],  I ~ N(0, sigma^2) per element":
        r"\text{infidelity}(x) = \mathbb{E}_I \Big[\Big(\sum_i I_i R_i - \big(f_c(x) - f_c(x - I)\big)\Big)^2\Big],"
        r" \quad I \sim \mathcal{N}(0, \sigma^2) \text{ per element}",
}

SETUP_CELL = '''\
# Where the course is. Inside the repository (Jupyter, VS Code) this only puts the course folder on the
# import path. Elsewhere (Colab, a notebook downloaded alone) it clones the course and installs its
# requirements first.
import subprocess
import sys
from pathlib import Path

REPOSITORY = {repository}  # the course's git address (pyproject.toml, [project.urls] Repository)
course = next((folder for folder in (Path.cwd(), *Path.cwd().parents, Path.cwd() / "saliency-maps")
               if (folder / "utils.py").is_file() and (folder / "plumbing").is_dir()), None)
if course is None:
    if REPOSITORY is None:
        raise RuntimeError("the course is not here: set REPOSITORY above to its git address, or open this "
                           "notebook from the course's notebooks/ folder")
    subprocess.run(["git", "clone", "--depth", "1", REPOSITORY, "saliency-maps"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r", "saliency-maps/requirements.txt"],
                   check=True)
    course = Path("saliency-maps").resolve()
if str(course) not in sys.path:
    sys.path.insert(0, str(course))'''

ARGV_LINE = ("argv = None  # no flags: in a notebook the parser reads utils.notebook_flags(), the quick digit "
             "track unless\n# a cell sets others, e.g. utils.notebook_flags(\"--model efficientnet_lite0\")")


class CannotConvert(ValueError):
    """A lecture whose structure the generator cannot turn into cells (said in one line)."""


def repository_url() -> str | None:
    """`Repository` under pyproject.toml's [project.urls], or None where it has none."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    return project.get("urls", {}).get("Repository")


def lecture_files(only: list[str] | None = None) -> list[Path]:
    files = sorted(ROOT.glob("[0-9][0-9]_*.py"))
    return [f for f in files if not only or f.stem[:2] in only or f.stem in only]


# %% Markdown from the script's text ---------------------------------------------------------------


def formula_block(lines: list[str]) -> list[str]:
    """An indented block of formulas: LaTeX when every line is known, else a code block as written."""
    stripped = [line.strip() for line in lines if line.strip()]
    if stripped and all(line in FORMULAS for line in stripped):
        return ["$$", "\\begin{aligned}", " \\\\\n".join(f"& {FORMULAS[line]}" for line in stripped),
                "\\end{aligned}", "$$"]
    return ["```text", *textwrap.dedent("\n".join(lines)).splitlines(), "```"]


def is_preformatted(line: str) -> bool:
    """A line laid out in columns ("Run:          python ..."): its spaces matter."""
    return bool(re.search(r"\S {3,}\S", line.strip()) or re.match(r"\s*(\w[\w ]*:\s+)?python ", line))


def text_to_markdown(lines: list[str], indent: int = 2) -> list[str]:
    """Plain prose stays; an indented run becomes a formula block; lines in columns keep their spaces."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(" " * indent) and line.strip():
            block = []
            while i < len(lines) and (lines[i].startswith(" " * indent) or not lines[i].strip()):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["", *formula_block(block), ""]
            continue
        if line.strip() and is_preformatted(line):
            block = []
            while i < len(lines) and lines[i].strip() and (is_preformatted(lines[i]) or
                                                           lines[i].startswith(" ")):
                block.append(lines[i])
                i += 1
            out += ["", "```text", *block, "```", ""]
            continue
        out.append(line)
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n").splitlines()


def notebook_link(text: str) -> str:
    """'01_vanilla_gradient_saliency.py' -> a link to its notebook."""
    return re.sub(r"\b(\d\d_\w+)\.py\b", r"[\1](\1.ipynb)", text)


def header_markdown(doc: str) -> list[str]:
    """The header docstring as Markdown: the title, then previous/next as links, then the lecture."""
    paragraphs = doc.strip("\n").split("\n\n", 1)
    first, rest = paragraphs[0], (paragraphs[1] if len(paragraphs) > 1 else "")
    first = " ".join(line.strip() for line in first.splitlines())
    match = re.search(r"\s(Previous:|Next:)", first)
    title, navigation = (first[:match.start()], first[match.start():]) if match else (first, "")
    lines = [f"# {title.strip().rstrip('.')}"]
    if navigation:
        steps = re.findall(r"(Previous|Next):\s*(\S+\.py|\S+)(\s*\([^)]*\))?", navigation)
        lines += ["", " · ".join(f"{word}: {notebook_link(target)}" + (f" {extra.strip()}" if extra else "")
                                 for word, target, extra in steps)]
    return [*lines, "", *text_to_markdown(textwrap.dedent(rest).splitlines(), indent=4)]


def comment_text(lines: list[str]) -> list[str]:
    """A comment block (`# ...`) as plain lines, without the `# `."""
    return [re.sub(r"^# ?", "", line.strip()) for line in lines]


# %% The script as percent-format cells ------------------------------------------------------------


def markdown_cell(lines: list[str]) -> str:
    body = "\n".join(f"# {line}" if line else "#" for line in lines)
    return f"# %% [markdown]\n{body}"


def code_cell(code: str) -> str:
    return f"# %%\n{quiet_last_value(code.strip(chr(10)))}"


def quiet_last_value(code: str) -> str:
    """A `;` after a cell's last statement when it is a bare call (`utils.save_figure(...)`), so the
    notebook shows the figure and the printed lines, not an `Out[...]` with the call's return value."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    last = tree.body[-1] if tree.body else None
    if not isinstance(last, ast.Expr) or not isinstance(last.value, ast.Call) or \
            (isinstance(last.value.func, ast.Name) and last.value.func.id == "print"):
        return code
    lines = code.splitlines()
    row = last.end_lineno - 1
    text = lines[row].encode("utf-8")
    lines[row] = (text[:last.end_col_offset] + b";" + text[last.end_col_offset:]).decode("utf-8")
    return "\n".join(lines)


def split_opening_comments(lines: list[str]) -> tuple[list[str], list[str]]:
    """A cell's opening comment block (its explanation) and the code after it."""
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    start = i
    while i < len(lines) and lines[i].startswith("#"):
        i += 1
    return lines[start:i], lines[i:]


def top_level_nodes(statements: list[ast.stmt]):
    """Every node of these statements, not entering functions, lambdas or classes defined in them."""
    stack = list(statements)
    while stack:
        node = stack.pop()
        yield node
        stack += [child for child in ast.iter_child_nodes(node)
                  if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))]


NUMBERED = re.compile(r"^# (\d+)\.\s")


def demo_cells(source: list[str], main: ast.FunctionDef) -> list[str]:
    """main()'s body as top-level cells: split at its numbered comments, the flags parsed in the first."""
    for node in top_level_nodes(main.body):
        if isinstance(node, ast.Return):
            raise CannotConvert(f"main() returns at line {node.lineno}: a notebook's top level cannot return")
    first, last = main.body[0], main.body[-1]
    start = first.lineno - 1
    body = textwrap.dedent("\n".join(source[start:last.end_lineno])).splitlines()
    offset = start
    # the line (in body) where each top-level statement starts: splits happen only there
    statement_starts = {node.lineno - 1 - offset for node in main.body}
    splits: list[int] = []
    for index, line in enumerate(body):
        if NUMBERED.match(line):
            following = next((k for k in range(index, len(body)) if body[k].strip() and not body[k].startswith("#")),
                             None)
            if following in statement_starts:
                splits.append(index)
    cells: list[str] = []
    if not splits:  # one cell parses the flags, one runs the rest
        parse = next((node for node in main.body if any(isinstance(t, ast.Name) and t.id == "args"
                                                         for n in ast.walk(node) if isinstance(n, ast.Assign)
                                                         for t in n.targets)), None)
        cut = parse.end_lineno - offset if parse is not None else len(body)
        cells.append(code_cell(ARGV_LINE + "\n" + "\n".join(body[:cut])))
        if cut < len(body):
            rest = "\n".join(body[cut:]).strip("\n")
            if rest:
                cells.append(code_cell(rest))
        return cells
    pieces = [(0, splits[0])] + [(a, b) for a, b in zip(splits, splits[1:] + [len(body)])]
    for number, (a, b) in enumerate(pieces):
        chunk = body[a:b]
        if number == 0:
            cells.append(code_cell(ARGV_LINE + "\n" + "\n".join(chunk)))
            continue
        comment, code = split_opening_comments(chunk)
        text = comment_text(comment)
        text[0] = re.sub(r"^(\d+)\.\s*", r"**\1.** ", text[0])
        cells.append(markdown_cell([" ".join(text)]))
        cells.append(code_cell("\n".join(code)))
    return cells


def percent_text(script: Path) -> str:
    """The lecture as percent-format text, Markdown cells and all, for Jupytext to read."""
    text = script.read_text(encoding="utf-8")
    source = text.splitlines()
    tree = ast.parse(text)
    doc_node = tree.body[0] if tree.body and isinstance(tree.body[0], ast.Expr) and \
        isinstance(getattr(tree.body[0], "value", None), ast.Constant) else None
    if doc_node is None:
        raise CannotConvert(f"{script.name} has no header docstring")
    main = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"), None)
    if main is None:
        raise CannotConvert(f"{script.name} has no main()")
    main_start = min([main.lineno, *(d.lineno for d in main.decorator_list)]) - 1
    guard = next((node for node in tree.body if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)),
                 None)

    cells = [markdown_cell(header_markdown(ast.get_docstring(tree, clean=True))), code_cell(SETUP_CELL.format(
        repository=repr(repository_url())))]
    # everything between the header and the first `# %%` marker: imports and the lecture's constants
    markers = [i for i, line in enumerate(source) if line.startswith("# %%")]
    body_end = guard.lineno - 1 if guard is not None else len(source)
    bounds = [doc_node.end_lineno, *markers, body_end]
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        lines = source[a:b]
        if k > 0:  # a `# %% Title ----` cell
            title = re.sub(r"[\s-]+$", "", lines[0][len("# %%"):]).strip()
            comment, code = split_opening_comments(lines[1:])
            cells.append(markdown_cell([f"## {title}" if title else "## (untitled)",
                                        *([""] + text_to_markdown(comment_text(comment)) if comment else [])]))
            lines = code
            a = b - len(code)
        if a <= main_start < b:  # the demo's cell: what stands before main(), then main()'s body
            before = source[a:main_start]
            if "\n".join(before).strip():
                cells.append(code_cell("\n".join(before)))
            cells += demo_cells(source, main)
            after = source[main.end_lineno:b]
            if "\n".join(after).strip():
                cells.append(code_cell("\n".join(after)))
        elif "\n".join(lines).strip():
            cells.append(code_cell("\n".join(lines)))
    return "\n\n".join(cells) + "\n"


def make_notebook(script: Path):
    import jupytext

    notebook = jupytext.reads(percent_text(script), fmt="py:percent")
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "source": f"{script.name} (generated by {COMMAND}: edit the script, not this notebook)",
    }
    for number, cell in enumerate(notebook.cells):
        cell.metadata = {}
        cell.id = f"{script.stem[:2]}-{number:03d}"  # stable ids: the same script gives the same file
    return notebook


def notebook_text(script: Path) -> str:
    import nbformat

    return nbformat.writes(make_notebook(script)) + "\n"


def notebook_path(script: Path) -> Path:
    return NOTEBOOKS / f"{script.stem}.ipynb"


# %% Running them ---------------------------------------------------------------------------------


def execute(script: Path, flags: str | None, executed_dir: Path = EXECUTED) -> tuple[Path, float]:
    """Run the notebook in a fresh kernel from notebooks/; write the executed copy and its HTML."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    notebook = nbformat.reads(notebook_text(script), as_version=4)
    if flags is not None:
        os.environ["SALIENCY_NOTEBOOK_FLAGS"] = flags  # the kernel inherits the environment
    started = time.perf_counter()
    executed_dir.mkdir(parents=True, exist_ok=True)
    executed = executed_dir / f"{script.stem}.ipynb"
    try:
        NotebookClient(notebook, timeout=TIMEOUT, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:  # a failed run is written too, up to the cell that failed and its traceback
        nbformat.write(notebook, executed)
        html, _ = HTMLExporter().from_notebook_node(notebook)
        executed.with_suffix(".html").write_text(html, encoding="utf-8")
    seconds = time.perf_counter() - started
    return executed, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lectures", nargs="*", help="two-digit numbers or names (default: all nine)")
    parser.add_argument("--check", action="store_true",
                        help="write no notebook; exit 1 if one is stale (with --execute: run them if none is)")
    parser.add_argument("--execute", action="store_true",
                        help="also execute each notebook (nbclient) into outputs/notebooks/, with an HTML copy")
    parser.add_argument("--executed-dir", type=Path, default=EXECUTED,
                        help="where --execute writes the executed notebooks and their HTML (default outputs/notebooks)")
    parser.add_argument("--flags", default=None,
                        help="the lectures' flags when executing (default: the notebook default, "
                             "'--model mnist --quick', or $SALIENCY_NOTEBOOK_FLAGS)")
    args = parser.parse_args(argv)
    scripts = lecture_files(args.lectures)
    if not scripts:
        parser.error(f"no lecture matches {args.lectures}")
    stale = []
    for script in scripts:
        try:
            text = notebook_text(script)
        except CannotConvert as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        path = notebook_path(script)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        names = " ".join(p.stem[:2] for p in stale)
        print(f"stale: {', '.join(str(p.relative_to(ROOT)) for p in stale)}; run: {COMMAND} {names}",
              file=sys.stderr)
        return 1
    if args.execute:
        failed = 0
        for script in scripts:
            try:
                executed, seconds = execute(script, args.flags, args.executed_dir)
                print(f"executed {executed} (+ .html) in {seconds:.0f} s", flush=True)
            except Exception as error:  # a cell's error: say which notebook, go on with the others
                failed += 1
                print(f"error: {notebook_path(script).name}: {type(error).__name__}: "
                      f"{str(error).strip().splitlines()[-1] if str(error).strip() else ''}", file=sys.stderr)
        return 1 if failed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
