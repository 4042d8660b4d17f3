"""The lectures, found from their files: a numbered script `NN_name.py` in the course folder is one.

Nothing lists the lectures by hand, so a lecture added or renamed is picked up by the method table,
the tests and the benchmarks alike.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from plumbing.errors import InputError
from plumbing.paths import ROOT


def lectures() -> dict[str, str]:
    """Every numbered script of the course, by its two digits: {"01": "01_vanilla_gradient_saliency", ...}."""
    return {path.stem[:2]: path.stem for path in sorted(ROOT.glob("[0-9][0-9]_*.py"))}


def load_lecture(name: str) -> ModuleType:
    """Import a numbered lecture as a module, the one way lectures, tests and exercises share.

        gradcam = utils.load_lecture("05_gradcam")
        cam = gradcam.grad_cam(model, x, target=281)

    A file name that starts with a digit cannot follow `import`, hence the loader. It
    works from any working directory (the course folder goes on `sys.path`), and a
    lecture is imported once, however many others use it. Only a lecture's method
    functions should cross to another lecture; shared helpers live in `utils.py`.
    """
    path = ROOT / f"{name}.py"
    if not path.is_file():
        raise InputError(f"no lecture named {name!r}; the lectures are: {', '.join(lectures().values())}")
    running = sys.modules.get("__main__")
    if getattr(running, "__file__", None) and Path(running.__file__).resolve() == path.resolve():
        return running  # the lecture run as a script: the same module, not a second copy of it
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(name)
