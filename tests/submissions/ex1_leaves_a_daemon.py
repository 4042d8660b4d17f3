"""Exercise 1, hostile: at import, starts a daemon (fork, setsid, fork again) that waits until the
process that graded it has ended, then 2 s more, and writes a marker file where the next student's
grading could read it. The daemon's pid goes to /tmp/saliency-grading-daemon.pid at once, so a test
can see whether it is still alive."""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

PID_FILE, MARKER = "/tmp/saliency-grading-daemon.pid", "/tmp/saliency-grading-daemon.marker"
_grading = os.getpid()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        try:
            with open(PID_FILE, "w") as handle:
                handle.write(str(os.getpid()))
            while os.path.exists(f"/proc/{_grading}"):
                time.sleep(0.2)
            time.sleep(2)
            with open(MARKER, "w") as handle:
                handle.write("the daemon outlived its grading")
        finally:
            os._exit(0)
    os._exit(0)
os.wait()
globals().update(names(solution(1)))
