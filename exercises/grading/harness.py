"""The grader's harness: the student's file runs in a child process; every verdict is made here.

How a grading run goes (grade()):
1. The course's files the grading relies on (COURSE_FILES) are read into memory; a missing
   one stops the grading before it starts (the student is not to blame).
2. A child process (forked by runner.py's fork server, cwd a fresh temporary folder) imports
   the student's file. Each check asks it to call one of the student's functions
   (Student.call); the child sends back plain values (tensors, numbers, strings, lists,
   dicts), loaded here with torch.load(weights_only=True), and the check compares them
   with the grader's own answer.
   So nothing the student's code does to its own process (patching the grader's modules,
   printing a score, exiting with 0) can award a point.
3. The whole exercise has a time limit for the child's work (time_limit seconds); when it
   strikes, the check running says so and the rest are not run. The child's stdout and stderr
   go to files, capped at OUTPUT_CAP bytes; a summary goes to the grader's stderr.
4. After every call the course's files are compared with their copies in memory: a file the
   student's code deleted or changed is written back, and the check that was running fails
   and says which file it was.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import io
import json
import math
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

EXERCISES = Path(__file__).resolve().parents[1]
ROOT = EXERCISES.parent
RUNNER = Path(__file__).resolve().parent / "runner.py"
OUTPUT_CAP = 4_000_000  # bytes of stdout + stderr the student's code may write before it is stopped
SHOWN_LINES = 10  # of each of stdout and stderr, on the grader's stderr
TIME_LIMIT = 600.0  # seconds of the child's work per exercise (the command line's --time-limit)


# %% Failures and how they read --------------------------------------------------------------------


class Failed(Exception):
    """A check that did not pass: what was expected, what came, and a hint."""

    def __init__(self, expected: object, got: object, hint: str = "") -> None:
        super().__init__(expected, got, hint)
        self.expected, self.got, self.hint = expected, got, hint


class StudentRaised(Exception):
    """The student's code raised: `kinds` is its class's MRO by name, `todo` the starter's own marker."""

    def __init__(self, kinds: list[str], message: str, where: str, todo: bool) -> None:
        super().__init__(message)
        self.kinds, self.message, self.where, self.todo = kinds, message, where, todo


class Stopped(Exception):
    """The child cannot go on for this check: time limit, exit, flood of output, a course file damaged."""


class Opaque:
    """Something the student returned that the grader does not read (a meta tensor, an object)."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __repr__(self) -> str:
        return self.description


Check = tuple[str, Callable[[], None]]  # (what is checked, a callable that raises Failed)


def one_line(text: object, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def nonfinite(value: torch.Tensor) -> str:
    """'' when finite, else e.g. '3 NaN and 1 infinite of 784 values'."""
    if not value.is_floating_point():
        return ""
    nan, inf = int(torch.isnan(value).sum()), int(torch.isinf(value).sum())
    if not nan and not inf:
        return ""
    return f"{nan} NaN and {inf} infinite of {value.numel()} values"


def show(value: object) -> str:
    """A value in words: a shape and range, NaN named; no value to copyable precision."""
    if isinstance(value, torch.Tensor):
        v = value.detach()
        bad = nonfinite(v)
        if bad:
            return f"tensor {tuple(v.shape)} with {bad}"
        if v.numel() <= 12:
            data = v.double().squeeze().tolist() if v.is_floating_point() else v.squeeze().tolist()
            return str(_rounded(data))
        if v.numel() == 0:
            return f"an empty tensor {tuple(v.shape)}"
        return (f"tensor {tuple(v.shape)} {str(v.dtype).replace('torch.', '')} from {float(v.min()):.2g} "
                f"to {float(v.max()):.2g}")
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} (not a finite number)"
    return repr(value)


def _rounded(data: object) -> object:
    if isinstance(data, list):
        return [_rounded(d) for d in data]
    return round(data, 3) if isinstance(data, float) else data


def close(ours: object, theirs: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Equal to float32 precision, `atol` relative to the reference's scale; NaN is never close."""
    if not isinstance(ours, torch.Tensor) or ours.shape != theirs.shape or ours.is_complex():
        return False
    scale = max(float(theirs.abs().max()), 1e-12) if theirs.numel() else 1.0
    return bool(torch.allclose(ours.detach().to(theirs.dtype), theirs, rtol=rtol, atol=atol * scale))


def worst(ours: object, theirs: torch.Tensor) -> str:
    """How far off an answer is, in words (a relative difference, never the expected values)."""
    if not isinstance(ours, torch.Tensor):
        return repr(ours) if isinstance(ours, Opaque) else f"a {type(ours).__name__}, not a tensor"
    if ours.shape != theirs.shape:
        return f"shape {tuple(ours.shape)} instead of {tuple(theirs.shape)}"
    bad = nonfinite(ours.detach())
    if bad:
        return f"{bad}"
    difference = float((ours.detach().double() - theirs.double()).abs().max())
    scale = float(theirs.abs().max())
    return f"a largest difference of {difference / scale:.1%} of the largest value" if scale > 0 else \
        f"a largest difference of {difference:.2g} (the answer is all zero)"


# %% The course's files, guarded ----------------------------------------------------------------------


def course_files() -> list[Path]:
    """What grading reads or runs: the exercises' data, the digit CNN's weights, the grader's own code,
    and the course code the references come from (the lectures, utils.py, plumbing/ and demos/)."""
    files = sorted((EXERCISES / "data").glob("*")) + [ROOT / "data" / "mnist_cnn.pt", EXERCISES / "tasks.py",
                                                      EXERCISES / "grade.py"]
    code = sorted(ROOT.glob("[0-9][0-9]_*.py")) + [ROOT / "utils.py"] + sorted((ROOT / "plumbing").glob("*.py")) \
        + sorted((ROOT / "demos").glob("*.py"))
    return files + sorted((EXERCISES / "grading").glob("*.py")) + code


def course_name(path: Path) -> str:
    """A path as the course's README names it (relative to the course folder when inside it)."""
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


class Guard:
    """Copies of the course's files in memory; `damage()` restores any that changed and names them."""

    def __init__(self, files: Sequence[Path]) -> None:
        missing = [f for f in files if not f.is_file()]
        if missing:
            names = ", ".join(course_name(f) for f in missing)
            raise FileNotFoundError(f"the course's file {names} is missing (not your doing): restore it with "
                                    f"git checkout -- {names}, or python exercises/make_exercise_data.py")
        self.copies = {f: f.read_bytes() for f in files}
        self.digests = {f: hashlib.sha256(data).digest() for f, data in self.copies.items()}

    def damage(self) -> list[str]:
        """The files changed or deleted since the copies were taken, each written back."""
        damaged = []
        for path, data in self.copies.items():
            try:
                same = path.is_file() and not path.is_symlink() and \
                    hashlib.sha256(path.read_bytes()).digest() == self.digests[path]
            except OSError:
                same = False
            if not same:
                what = "changed" if path.exists() else "deleted"
                try:
                    if path.is_symlink() or path.is_dir():
                        path.unlink() if path.is_symlink() else os.rename(path, f"{path}.moved-by-grading")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    damaged.append(f"{what} {course_name(path)} (restored)")
                except OSError as error:
                    damaged.append(f"{what} {course_name(path)} (could not restore: {error})")
        return damaged


# %% The child process and the student's functions ---------------------------------------------------


def _pack(message: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    return len(data).to_bytes(8, "big") + data


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


class ForkServer:
    """runner.py --fork-server, started on first use and kept for this process: it imports torch,
    tasks.py and the course once, and forks a child per file graded (see runner.serve_forks)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, str(RUNNER), "--fork-server", str(theirs.fileno())], pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            env={**os.environ, "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"})
        theirs.close()
        self.socket = ours
        self.socket.settimeout(300.0)  # its first reply waits for torch's import; a stopped server is killed

    def ask(self, message: str, fds: Sequence[int] = ()) -> int:
        try:
            socket.send_fds(self.socket, [message.encode()], list(fds))
            reply = b""
            while len(reply) < 8:
                chunk = self.socket.recv(8 - len(reply))
                if not chunk:
                    raise EOFError("the grader's fork server ended")
                reply += chunk
        except OSError:  # socket.timeout included
            self.process.kill()  # and its children with it (runner.child)
            raise EOFError("the grader's fork server did not answer") from None
        return int.from_bytes(reply, "big")

    def fork(self, read_fd: int, write_fd: int, request: dict) -> "Forked":
        """A child serving the file `request["path"]` on the pipes whose ends are `read_fd` and `write_fd`."""
        status_r, status_w = os.pipe()
        try:
            pid = self.ask(json.dumps(request), (read_fd, write_fd, status_w))
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        return Forked(self, pid, status_r)

    def stop(self) -> None:
        self.socket.close()  # end of file: the server kills what children are left and exits
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_SERVER: list[ForkServer] = []


def fork_server() -> ForkServer:
    """This process's fork server, started again if it has ended (a student's code may kill it)."""
    if _SERVER and _SERVER[0].process.poll() is not None:
        _SERVER.pop().stop()
    if not _SERVER:
        _SERVER.append(ForkServer())
        atexit.register(_SERVER[0].stop)
    return _SERVER[0]


class Forked:
    """A child of the fork server, with the part of subprocess.Popen's interface that Student uses."""

    def __init__(self, server: ForkServer, pid: int, status_fd: int) -> None:
        self.server, self.pid, self.status_fd = server, pid, status_fd
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self.status_fd], [], [], 0)[0]:
            self._read_status()
        return self.returncode

    def _read_status(self) -> None:
        data = b""
        while len(data) < 4:
            chunk = os.read(self.status_fd, 4 - len(data))
            if not chunk:  # the server ended before it could say: as good as killed
                break
            data += chunk
        os.close(self.status_fd)
        self.returncode = int.from_bytes(data, "big", signed=True) if len(data) == 4 else -9

    def kill(self) -> None:
        if self.poll() is None:
            try:
                self.server.ask(f"kill {self.pid}")
            except (OSError, EOFError):  # the server is gone, and its children with it
                pass

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self.status_fd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"grading child {self.pid}", timeout)
            self._read_status()
        return self.returncode


class Student:
    """The student's file, alive in a child process; call its functions by name."""

    def __init__(self, path: Path, guard: Guard, time_limit: float = TIME_LIMIT) -> None:
        self.path, self.guard, self.time_limit = path, guard, time_limit
        self.used = 0.0  # seconds of the child's work so far
        self.folder = tempfile.TemporaryDirectory(prefix="grading-")
        self.logs = {name: Path(self.folder.name) / f"{name}.txt" for name in ("stdout", "stderr")}
        self.process: subprocess.Popen | None = None
        self.stopped = ""  # why no further calls are made
        self.names: set[str] = set()
        self.deaths = 0
        self.memo: dict[str, tuple[bool, object]] = {}  # values derived from this run's answers (remembered())

    # the process -------------------------------------------------------------------------------

    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        request = {"path": str(self.path), "folder": self.folder.name, "stdout": str(self.logs["stdout"]),
                   "stderr": str(self.logs["stderr"]), "append": bool(self.deaths)}
        try:
            self.process = fork_server().fork(to_child_r, from_child_w, request)
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
        try:
            self.requests.write(_pack(message))
            self.requests.flush()
            reply = self._receive(self.time_limit - self.used)
        except TimeoutError:
            self.kill()
            self.stopped = f"the time limit of {self.time_limit:g} s for the exercise was reached"
            raise Stopped(f"stopped at the time limit ({self.time_limit:g} s for the whole exercise), "
                          f"while {what}") from None
        except (EOFError, BrokenPipeError, OSError, RuntimeError, ValueError) as error:
            status = self.kill()
            self.deaths += 1
            if self.deaths >= 3 or message[0] == "load":
                self.stopped = "your code ended the grading process"
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
            raise StudentRaised(list(kinds), str(message_text), str(where), bool(todo))
        return _wrap(reply[1])

    def kill(self) -> object:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        status = self.process.wait()
        self.process = None
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


def need(student: Student | None, name: str) -> Callable:
    """The student's function `name` (called in the child), or a failed check that says it is missing."""
    if student is None:
        raise Failed(f"a function named {name}", "nothing: the file did not import", "fix the import first")
    return student.function(name)


# %% Shared checks ---------------------------------------------------------------------------------------


def written_check(student: Student | None, keys: Sequence[str]) -> Callable[[], None]:
    """A check that each written answer in the student's WRITTEN dict has 15 words or more."""

    def check() -> None:
        if student is None:
            raise Failed("WRITTEN", "nothing: the file did not import", "fix the import first")
        if "WRITTEN" not in student.names:
            raise Failed("a dict named WRITTEN", "nothing by that name", "keep the starter's names")
        written = student._value("WRITTEN")
        short = [key for key in keys
                 if not isinstance(written, dict) or len(str(written.get(key, "")).split()) < 15]
        if short:
            raise Failed("a few sentences (15 words or more) for each written question", f"too short: {short}",
                         "your teacher reads these; the grader only checks they are there")

    return check


def expect_value_error(call: Callable[[], object], what: str) -> None:
    """`call()` must raise ValueError (or a subclass, such as utils.InputError)."""
    try:
        call()
    except StudentRaised as error:
        if "ValueError" in error.kinds:
            return
        if error.todo:
            raise
        raise Failed(f"ValueError for {what}", f"{error.kinds[0]}: {one_line(error.message, 120)}",
                     "raise ValueError (utils.resolve_target does it for targets)") from None
    raise Failed(f"ValueError for {what}", "no error", "check the argument before using it")


def side_effect_check(student: Student | None, name: str, model: nn.Module, x: torch.Tensor, *args, **kwargs) -> None:
    """Nothing of the caller's changes: inputs, requires_grad, training mode, .grad, hooks; works under no_grad.

    The child calls the function three ways (plumbing.side_effects.observe: inputs that require
    grad; a model in training mode; under torch.no_grad()) and sends back the state it left;
    the verdict is made here, against this process's own copy of `x`.
    """
    if student is None:
        raise Failed(f"a function named {name}", "nothing: the file did not import", "fix the import first")
    sent = x.clone()
    facts = student.side_effects(name, model, x, *args, **kwargs)
    keys = {"requires_grad_after", "grad_after", "training_after", "under_no_grad", "inputs_after",
            "parameter_grads", "hooks_left"}
    if not isinstance(facts, dict) or not keys <= set(facts):
        raise Failed("a report of the side effects", show(facts), "")
    if facts["requires_grad_after"] is not True or facts["grad_after"] is not None:
        raise Failed("inputs keep requires_grad=True and get no .grad", "they changed",
                     "work on inputs.detach() (or a clone); take no .backward() on the caller's tensor")
    if facts["training_after"] is not True:
        raise Failed("a model in training mode stays in training mode", "it was switched to eval",
                     "never call model.eval() inside a method; the caller decides")
    out = facts["under_no_grad"]
    if not isinstance(out, torch.Tensor) or nonfinite(out.detach()) or not torch.isfinite(out).all():
        raise Failed("finite values under the caller's torch.no_grad()", show(out),
                     "use torch.enable_grad() where you need gradients")
    after = facts["inputs_after"]
    if not isinstance(after, torch.Tensor) or after.shape != sent.shape or not torch.equal(after, sent):
        raise Failed("inputs unchanged", "your method wrote into them", "clone before you edit")
    if facts["parameter_grads"]:
        raise Failed("no .grad on the model's parameters", f"{len(facts['parameter_grads'])} had a .grad",
                     "use torch.autograd.grad, or torch.no_grad() for forward passes only")
    if facts["hooks_left"]:
        raise Failed("no hooks left on the model", ", ".join(map(str, facts["hooks_left"])),
                     "remove hooks in finally")


# %% Small models the checks send to the student's code (module level, so the child can unpickle them) ---


class GradingCNN(nn.Module):
    """A small random CNN for any image size: conv, ReLU, conv, ReLU, 2x2 average pool, linear (5 classes)."""

    def __init__(self, channels: int = 3, classes: int = 5, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 2).flatten(1))


class SumModel(nn.Module):
    """Logits (sum of all pixels, 0): the drop of a patch is the sum of what it hides."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(1)
        return torch.stack([total, torch.zeros_like(total)], dim=1)


class SumOrConstant(nn.Module):
    """Logits (sum of all pixels, `constant`): hiding enough of the image flips the prediction to class 1."""

    def __init__(self, constant: float) -> None:
        super().__init__()
        self.constant = constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(1)
        return torch.stack([total, torch.full_like(total, self.constant)], dim=1)


class WeightedSum(nn.Module):
    """Logits (w . x, -w . x) for a weight tensor shaped like one example."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.weights).flatten(1).sum(1)
        return torch.stack([s, -s], 1)


class LinearTwoClass(nn.Module):
    """Logits (sum of w * x, 0): p_0 = sigmoid(w . x), by hand."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.weights).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


class ConstantModel(nn.Module):
    """Logits (2, 0, -1) whatever the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([2.0, 0.0, -1.0], dtype=x.dtype).expand(x.shape[0], 3)


# %% Variations -------------------------------------------------------------------------------------------


class Variation:
    """What a grading run draws from `--seed S`: seed None is the shipped variation."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def generator(self, name: str) -> torch.Generator:
        """A generator for one drawing, seeded from the variation's seed and `name`."""
        key = f"{self.seed}:{name}".encode()
        return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:6], "big"))

    def seeded(self, name: str, default: int) -> torch.Generator:
        """A generator for a check's random inputs: seeded with `default` in the shipped variation,
        else drawn from the variation's seed and `name` (so that answers kept from one run fit no other)."""
        return torch.Generator().manual_seed(default) if self.seed is None else self.generator(name)

    def integer(self, name: str, low: int, high: int, default: int) -> int:
        """`default` in the shipped variation, else an integer in [low, high]."""
        if self.seed is None:
            return default
        return int(torch.randint(low, high + 1, (1,), generator=self.generator(name)))

    def choice(self, name: str, options: Sequence, default):
        if self.seed is None:
            return default
        return options[int(torch.randint(len(options), (1,), generator=self.generator(name)))]


# %% Running the checks ------------------------------------------------------------------------------------


def binder(student: Student | None, variation: Variation) -> Callable[..., Callable[[], None]]:
    """`bind(check, *args)`: the check function with the student, the variation and `args` bound."""
    return lambda check, *args: functools.partial(check, student, variation, *args)


def run_check(check: Check) -> tuple[bool, str]:
    """One line: `ok` or `FAIL` with the reason; the verdict is this process's own."""
    name, function = check
    try:
        function()
    except Failed as failure:
        hint = f"; hint: {failure.hint}" if failure.hint else ""
        return False, f"FAIL  {name}: expected {one_line(failure.expected)}; got {one_line(failure.got)}{hint}"
    except StudentRaised as error:
        if error.todo:
            return False, f"FAIL  {name}: not done yet ({one_line(error.message)})"
        return False, (f"FAIL  {name}: your code raised {error.kinds[0]}: {one_line(error.message, 200)} "
                       f"(at {error.where})")
    except Stopped as stop:
        return False, f"FAIL  {name}: {one_line(stop, 400)}"
    except Exception as error:  # noqa: BLE001  (the answer was of a kind the check could not read)
        return False, (f"FAIL  {name}: the grader could not read your answer ({type(error).__name__}: "
                       f"{one_line(error, 160)}); return what the docstring says")
    return True, f"ok    {name}"


def grade(exercise: int, path: Path, checks_of: Callable, variation: Variation | None = None,
          time_limit: float = TIME_LIMIT, out=None, err=None) -> tuple[int, int]:
    """Run every check of `exercise` on the file at `path`; print one line each and the score.

    Raises FileNotFoundError (before anything runs) when a course file is missing.
    """
    out, err = out or sys.stdout, err or sys.stderr
    variation = variation or Variation()
    guard = Guard(course_files())
    student = Student(Path(path).resolve(), guard, time_limit)
    try:
        try:
            student.load()
        except (StudentRaised, Stopped) as error:
            reason = (f"{error.kinds[0]}: {one_line(error.message, 200)} (at {error.where})"
                      if isinstance(error, StudentRaised) else one_line(error, 300))
            print(f"FAIL  {Path(path).name} does not import: {reason}", file=out)
            results = [(False, f"FAIL  {name}: not run, the file does not import")
                       for name, _ in checks_of(None, variation)]
            for _, line in results:
                print(line, file=out, flush=True)
        else:
            results = []
            for check in checks_of(student, variation):
                results.append(run_check(check))
                print(results[-1][1], file=out, flush=True)
    finally:
        student.close()
        for line in student.output_summary():
            print(line, file=err)
        late = guard.damage()
        if late:
            print(f"note: after grading, the course's files were {'; '.join(late)}", file=err)
        student.folder.cleanup()
    passed = sum(ok for ok, _ in results)
    print(f"score: {passed}/{len(results)}", file=out, flush=True)
    return passed, len(results)


# %% Values kept across calls: grader-side per process, the student's per grading run -------------------


_MEMO: dict[tuple, tuple[bool, object]] = {}  # (function, seed, digest of its files) -> (ok, value or error)


def _kept(store: dict, key: object, compute: Callable[[], object]) -> object:
    """`compute()` once per key in `store`; a failure is remembered and re-raised each time it is asked for."""
    if key not in store:
        try:
            store[key] = (True, compute())
        except Exception as error:  # remembered, so every check that needs it fails alike
            store[key] = (False, error)
    ok, value = store[key]
    if not ok:
        raise value
    return value


def files_digest(files: Sequence[Path]) -> str:
    """sha256 over the files' names and contents (a missing file counts as such)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"missing")
    return digest.hexdigest()


def memoised(*files: Path) -> Callable:
    """For grader-side values `function(variation)` that read only the variation and the course's `files`.

    Computed once per process for each (variation.seed, digest of `files`), so grading many
    files in one process computes them once; a changed file computes them again. Never for
    anything the student's code returned. Callers must not mutate what they get (clone first).
    """
    def decorate(function: Callable[[Variation], object]) -> Callable[[Variation], object]:
        @functools.wraps(function)
        def get(variation: Variation) -> object:
            key = (function.__module__, function.__qualname__, variation.seed, files_digest(files))
            return _kept(_MEMO, key, lambda: function(variation))

        return get

    return decorate


def remembered(student: Student, key: str, compute: Callable[[], object]) -> object:
    """`compute()` once per grading run (kept on `student`); a failure is re-raised each time it is asked for."""
    return _kept(student.memo, key, compute)
