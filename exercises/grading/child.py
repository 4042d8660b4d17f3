"""The child process and its fork server: runner.py --fork-server, started once per grader process,
forks a fresh child per file graded; Forked is such a child, seen from here (see runner.serve_forks)."""
from __future__ import annotations

import atexit
import io
import json
import os
import select
import socket
import subprocess
import sys
from typing import Sequence

from pathlib import Path

import torch

from grading import sandbox

RUNNER = Path(__file__).resolve().parent / "runner.py"
PASSED_ON = ("PATH", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "SYSTEMROOT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _pack(message: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    return len(data).to_bytes(8, "big") + data


class ForkServer:
    """runner.py --fork-server, started on first use and kept for this process: it imports torch,
    tasks.py and the course once, and forks a child per file graded (see runner.serve_forks)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.copy = sandbox.course_copy()  # runs from the read-only copy: no solutions, no grading sources
        runner = self.copy / RUNNER.relative_to(sandbox.ROOT)
        env = {key: os.environ[key] for key in PASSED_ON if key in os.environ}  # not the grader's environment
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-B", str(runner), "--fork-server", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=str(self.copy),
            env={**env, "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"})
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
