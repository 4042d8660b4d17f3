"""Exercise 1, hostile: the file sleeps at import for an hour."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

import time  # noqa: E402

time.sleep(3600)
