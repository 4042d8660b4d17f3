"""Exercise 1, a cheat: writes a full score to the real stdout and exits with status 0."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

import os  # noqa: E402

os.write(1, b"ok    everything\nscore: 13/13\n")
sys.__stdout__.write("score: 13/13\n")
sys.__stdout__.flush()
os._exit(0)
