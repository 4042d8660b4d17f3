"""Exercise 1: the file raises at import."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

raise RuntimeError("oops")
