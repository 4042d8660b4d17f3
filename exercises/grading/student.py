"""The student proxy: the student's file, alive in a child process; call its functions by name.

Each call is a request to the child (child.py's Forked); the reply is loaded with
torch.load(weights_only=True), so only plain values come back. After every call the course's
files are compared with their copies in memory (guard.py).
"""
from __future__ import annotations

import io
import math
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from grading import sandbox
from grading.checking import Failed, Opaque, Stopped, StudentRaised, nonfinite, one_line
from grading.child import _pack, fork_server
from grading.guard import Guard

OUTPUT_CAP = 4_000_000  # bytes of stdout + stderr the student's code may write before it is stopped
SHOWN_LINES = 10  # of each of stdout and stderr, on the grader's stderr
TIME_LIMIT = 600.0  # seconds of the child's work per exercise (the command line's --time-limit)
CALL_LIMIT = 120.0  # seconds one call may take per megabyte of inputs sent (a hang loses that check only)
OUT_OF_MEMORY = re.compile(r"can't allocate memory|Cannot allocate memory|out of memory|bad_alloc", re.I)


def _wrap(value: object) -> object:
    """Opaque descriptions from the child made into Opaque objects, recursively."""
    if isinstance(value, dict):
        if set(value) == {"__opaque__"}:
            return Opaque(str(value["__opaque__"]))
        return {k: _wrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


def _first_nonfinite(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return nonfinite(value.detach())
    if isinstance(value, float) and not math.isfinite(value):
        return f"the number {value}"
    if isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if isinstance(value, dict):
        for key, item in value.items():
            bad = _first_nonfinite(item)
            if bad:
                return f"{bad} (in [{key!r}])"
    return ""


class Student:
    """The student's file, alive in a child process; call its functions by name."""

    def __init__(self, path: Path, guard: Guard, time_limit: float = TIME_LIMIT,
                 call_limit: float = CALL_LIMIT) -> None:
        self.source, self.guard, self.time_limit, self.call_limit = path, guard, time_limit, call_limit
        self.used = 0.0  # seconds of the child's work so far
        self.uid = sandbox.new_uid()  # a uid of this grading's own (as root on Linux), else None
        self.folder = tempfile.TemporaryDirectory(prefix="grading-")
        top = Path(self.folder.name)
        top.chmod(0o711)  # the logs here are the grader's; the child works in work/
        self.work = top / "work"
        self.work.mkdir(mode=0o700)
        if self.uid is not None:
            os.chown(self.work, self.uid, self.uid)
        self.path = self.work / path.name  # the child imports a copy: the submission's folder stays out of reach
        shutil.copyfile(path, self.path)
        self.path.chmod(0o444)
        self.logs = {name: top / f"{name}.txt" for name in ("stdout", "stderr")}
        self.incidents: list[str] = []  # what was killed or refused, for the gradebook
        self.session: int | None = None
        self.process: subprocess.Popen | None = None
        self.stopped = ""  # why no further calls are made
        self.names: set[str] = set()
        self.deaths = 0
        self.memo: dict[str, tuple[bool, object]] = {}  # values derived from this run's answers (remembered())

    # the process -------------------------------------------------------------------------------

    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        request = {"path": str(self.path), "folder": str(self.work), "stdout": str(self.logs["stdout"]),
                   "stderr": str(self.logs["stderr"]), "append": bool(self.deaths), "uid": self.uid,
                   "hide": sandbox.hidden(sandbox.ROOT, self.source.parent),
                   "limits": sandbox.limits(self.time_limit)}
        try:
            self.process = fork_server().fork(to_child_r, from_child_w, request)
            self.session = self.process.pid  # the child calls setsid() first thing
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.requests, self.replies = os.fdopen(to_child_w, "wb"), from_child_r
        self._receive(limit=max(120.0, self.time_limit))  # setting up the child: not the student's time
        self.names = set(self._request(("load",), "importing your file"))

    def _receive(self, limit: float) -> object:
        """The child's next reply, within `limit` seconds, checking the size of its output meanwhile."""
        deadline = time.monotonic() + limit
        chunks, need, header = [], 8, None
        while True:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self.replies], [], [], min(wait, 0.25))
            printed = sum(p.stat().st_size for p in self.logs.values() if p.exists())
            if printed > OUTPUT_CAP:
                self.stopped = f"your code printed more than {OUTPUT_CAP // 1_000_000} MB; it was stopped"
                self.kill()
                raise Stopped(self.stopped)
            if not ready:
                if self.process.poll() is not None:
                    raise EOFError
                continue
            data = os.read(self.replies, min(need, 1 << 20))
            if not data:
                raise EOFError
            chunks.append(data)
            need -= len(data)
            if need == 0:
                if header is None:
                    header = b"".join(chunks)
                    need, chunks = int.from_bytes(header, "big"), []
                    if need == 0:
                        raise EOFError
                else:
                    return torch.load(io.BytesIO(b"".join(chunks)), map_location="cpu", weights_only=True)

    def _request(self, message: tuple, what: str) -> object:
        if self.stopped:
            raise Stopped(f"not run: {self.stopped}")
        if self.process is None:
            self._start()
        start = time.monotonic()
        packed = _pack(message)
        # one call's limit, scaled to the work: call_limit per started megabyte sent (the inputs' size)
        per_call = self.call_limit * max(1, math.ceil(len(packed) / 1e6))
        left = self.time_limit - self.used
        try:
            self.requests.write(packed)
            self.requests.flush()
            reply = self._receive(left if message[0] == "load" else min(left, per_call))
        except TimeoutError:
            self.kill()
            if message[0] != "load" and per_call < left:
                self.incidents.append(f"a call killed after {per_call:g} s")
                raise Stopped(f"your code did not answer within {per_call:g} s (the limit for one call) while "
                              f"{what}; it was stopped, and the next check starts it again") from None
            self.stopped = f"the time limit of {self.time_limit:g} s for the exercise was reached"
            self.incidents.append(f"stopped at the time limit of {self.time_limit:g} s")
            raise Stopped(f"stopped at the time limit ({self.time_limit:g} s for the whole exercise), "
                          f"while {what}") from None
        except (EOFError, BrokenPipeError, OSError, RuntimeError, ValueError) as error:
            status = self.kill()
            self.deaths += 1
            if self.deaths >= 3 or message[0] == "load":
                self.stopped = "your code ended the grading process"
            if status == -getattr(signal, "SIGXCPU", 24):
                limit = sandbox.limits(self.time_limit)["cpu"]
                self.incidents.append(f"killed after {limit} s of CPU time")
                raise Stopped(f"your code used more than {limit} s of CPU time (the grading's limit) while {what}")
            raise Stopped(f"your code ended the grading process (exit status {status}) while {what}"
                          + ("" if isinstance(error, (EOFError, BrokenPipeError)) else f": {one_line(error, 80)}"))
        finally:
            self.used += time.monotonic() - start
            damaged = self.guard.damage()
            if damaged:
                self.kill()
                self.stopped = "your code changed the course's files"
                raise Stopped(f"your code {'; '.join(damaged)} while {what}: leave the course's files alone")
        if not isinstance(reply, tuple) or not reply:
            raise Stopped(f"the grading process sent something unreadable while {what}")
        if reply[0] == "raised":
            _, kinds, message_text, where, todo = reply
            if "MemoryError" in kinds or OUT_OF_MEMORY.search(str(message_text)):
                gigabytes = sandbox.MEMORY_LIMIT / sandbox.GB
                self.incidents.append(f"refused more than {gigabytes:g} GB of memory")
                raise Stopped(f"your code used more than {gigabytes:g} GB of memory (the grading's limit) while "
                              f"{what}: work in smaller batches")
            raise StudentRaised(list(kinds), str(message_text), str(where), bool(todo))
        return _wrap(reply[1])

    def kill(self) -> object:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        status = self.process.wait()
        self.process = None
        self.sweep()
        for stream in (self.requests, ):
            try:
                stream.close()
            except OSError:
                pass
        try:
            os.close(self.replies)
        except OSError:
            pass
        return status

    def close(self) -> None:
        if self.process is not None:
            try:
                self.requests.write(_pack(("quit",)))
                self.requests.close()  # end of file for the child, should it ignore the message
            except OSError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.kill()
        self.sweep()

    def sweep(self) -> None:
        """Kill every process the student's code started (sandbox.sweep), and say so in the incidents."""
        killed = sandbox.sweep(self.uid, self.session)
        if killed:
            self.incidents.append(f"{killed} process{'es' if killed > 1 else ''} left running, killed")

    # what the checks use ---------------------------------------------------------------------

    def load(self) -> None:
        """Start the child and import the file (raises StudentRaised or Stopped when it does not import)."""
        self._start()

    def function(self, name: str) -> Callable:
        """The student's function `name`, called in the child; missing names are a failed check."""
        if name not in self.names:
            raise Failed(f"a function or value named {name}", "nothing by that name", "keep the starter's names")
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def call(self, name: str, *args, **kwargs) -> object:
        value = self._request(("call", name, args, kwargs), f"running {name}")
        bad = _first_nonfinite(value)
        if bad:
            raise Failed(f"finite numbers from {name}", bad,
                         "NaN comes from 0 / 0, inf - inf or a NaN input; infinity from dividing by zero "
                         "(clamp the denominator)")
        return value

    def _value(self, name: str) -> object:
        """A module-level value of the student's file (WRITTEN, METHODS), as plain values."""
        return self._request(("value", name), f"reading {name}")

    def side_effects(self, name: str, model: nn.Module, x: torch.Tensor, *args, **kwargs) -> dict:
        if name not in self.names:
            raise Failed(f"a function named {name}", "nothing by that name", "keep the starter's names")
        return self._request(("side_effects", name, model, x, args, kwargs), f"running {name}")

    def modes(self, name: str, model: nn.Module, x: torch.Tensor, *args, **kwargs) -> dict:
        """{'eval': kept, 'train': kept}: whether `name` leaves a model handed over in each mode in that mode."""
        return self._request(("modes", name, model, x, args, kwargs), f"running {name}")

    def output_summary(self) -> list[str]:
        """A few lines of what the student's code printed, and how much was cut."""
        lines = []
        for stream, path in self.logs.items():
            if not path.exists() or not path.stat().st_size:
                continue
            with open(path, "rb") as handle:
                head = handle.read(20_000).decode("utf-8", "replace")
            total = sum(1 for _ in open(path, "rb"))
            shown = head.splitlines()[:SHOWN_LINES]
            lines += [f"your code's {stream} | {one_line(line, 200)}" for line in shown]
            if total > len(shown):
                lines.append(f"your code's {stream}: {total - len(shown):,} more lines cut "
                             f"({path.stat().st_size:,} bytes in all)")
        return lines
