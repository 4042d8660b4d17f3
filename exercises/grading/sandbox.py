"""Where the student's code runs, seen from the grader: a read-only copy of what the child needs,
a uid of its own, its limits, and the sweep that kills whatever it started.

The child (runner.py's confine()) applies what is decided here. On Linux as root:
- it runs on COPY, a read-only copy of the course's code and data that holds no solutions/, no
  grade.py and no grading module but models.py and runner.py (so nothing it could replace
  is ever read by the grader, and nothing there tells it the hidden variations);
- the course folder itself and the submission's folder are covered in its mount namespace;
- it runs as a uid used by no other process (UID_BASE and up), so it can write only to its own
  folder, cannot read the grader's /proc files, and every process it starts, daemons that
  double-fork and call setsid included, keeps that uid: sweep() kills them all;
- limits: LIMITS below (memory beyond what the fork server already maps, file size, CPU
  seconds, processes).
Not root (or not Linux): no uid and no namespace; the child still gets its own session, the
limits, and the copy; sweep() kills its session and the fork server kills the orphans it
adopts (a subreaper). exercises/README.md's instructor section says what that leaves open.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path

EXERCISES = Path(__file__).resolve().parents[1]
ROOT = EXERCISES.parent
GRADING = Path(__file__).resolve().parent

GB = 1 << 30
MEMORY_LIMIT = 4 * GB  # bytes the student's code may map beyond what the fork server (torch, the course) maps
FILE_SIZE_LIMIT = 64 << 20  # bytes: the largest file the child may write
PROCESS_LIMIT = 256  # processes and threads of the grading's uid (root only: otherwise the user's own count)
UID_BASE = 1_700_000_000  # uids from here on are used by gradings alone (no account has them)

# What the child may read: the lectures and utils.py (a student's file may use them), the course
# package, the data, tasks.py and its data, and the two grading modules the child itself runs.
PACKAGES = ("plumbing", "demos")  # the course's packages beside utils.py, the floors below and above it
COPIED = ("[0-9][0-9]_*.py", "utils.py", *(f"{package}/*.py" for package in PACKAGES), "data/**/*",
          "exercises/tasks.py", "exercises/data/*", "exercises/grading/__init__.py", "exercises/grading/models.py",
          "exercises/grading/runner.py")

_COPY: list[Path] = []


def privileged() -> bool:
    """True where the child can get a uid and a mount namespace of its own (Linux, grader running as root)."""
    return sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0


_HELD: list[int] = []  # this process's lock on the course folder, while it grades


@contextlib.contextmanager
def course_lock():
    """The course folder locked for one grading (flock on the folder itself).

    Every grading's guard (guard.py) walks the course folder and blames its own student for what
    appears there. Where the child can write into the course (not root), a file it plants would be
    seen, and blamed, by any other grading running meanwhile, from another terminal or another
    test: so such a grading takes the folder alone (exclusive), and gradings whose children cannot
    write there (root) share it. Re-entered in the same process, it does nothing."""
    try:
        import fcntl
    except ImportError:  # Windows: grade.py does not run there
        yield
        return
    if _HELD:
        yield
        return
    fd = os.open(ROOT, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if privileged() else fcntl.LOCK_EX)
        _HELD.append(fd)
        yield
    finally:
        _HELD.clear()
        os.close(fd)  # closing the folder's descriptor releases the lock


def course_copy() -> Path:
    """This process's read-only copy of what the child needs (made once; removed at exit)."""
    if _COPY and (_COPY[0] / "exercises" / "grading" / "runner.py").is_file():
        return _COPY[0]
    folder = Path(tempfile.mkdtemp(prefix="saliency-course-"))
    for pattern in COPIED:
        for source in sorted(ROOT.glob(pattern)):
            if source.is_file() and "__pycache__" not in source.parts:
                target = folder / source.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
    for path in sorted(folder.rglob("*"), reverse=True):  # read-only for everyone, the grader's user included
        path.chmod(0o555 if path.is_dir() else 0o444)
    folder.chmod(0o555)
    _COPY[:] = [folder]
    atexit.register(remove, folder)
    return folder


def remove(folder: Path) -> None:
    """A folder made read-only here, removed (write permission given back first)."""
    if not folder.exists():
        return
    for path in [folder, *folder.rglob("*")]:
        try:
            if path.is_dir() and not path.is_symlink():
                path.chmod(stat.S_IRWXU)
        except OSError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def processes_of(uid: int | None = None, session: int | None = None) -> list[int]:
    """The pids (Linux /proc) whose real uid is `uid`, or whose session is `session`."""
    found = []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return found
    for entry in entries:
        try:
            if uid is not None:
                with open(f"/proc/{entry}/status") as handle:
                    fields = dict(ln.split(":", 1) for ln in handle if ":" in ln)
                if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
                    found.append(int(entry))
            elif session is not None:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
                if int(fields[3]) == session and fields[0] != b"Z":  # state, ppid, pgrp, session
                    found.append(int(entry))
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return found


def new_uid() -> int | None:
    """A uid for one grading, used by no process now; None where the child keeps the grader's user."""
    if not privileged():
        return None
    while True:
        uid = UID_BASE + random.SystemRandom().randrange(1 << 28)
        if not processes_of(uid=uid):
            return uid


def limits(time_limit: float, cores: int | None = None) -> dict:
    """The child's resource limits (runner.confine applies them): memory beyond the fork server's own
    mappings, file size, CPU seconds (the exercise's time on every core, and a minute to spare), processes."""
    cores = cores or os.cpu_count() or 1
    return {"memory_extra": MEMORY_LIMIT, "file_size": FILE_SIZE_LIMIT,
            "cpu": int(min(time_limit, 1e5) * cores) + 60, "processes": PROCESS_LIMIT}


def hidden(*folders: Path) -> list[str]:
    """Of `folders`, those the child's mount namespace can cover: not holding the child's copy or folder."""
    keep = [Path(tempfile.gettempdir()).resolve(), *(p.resolve() for p in _COPY)]
    out = []
    for folder in folders:
        folder = folder.resolve()
        if folder == Path("/") or any(k == folder or folder in k.parents for k in keep):
            continue
        if str(folder) not in out:
            out.append(str(folder))
    return out


def sweep(uid: int | None, session: int | None) -> int:
    """Kill every process of the grading: all of `uid`'s (as root), else those of `session`.

    As the grading's uid, kill(-1, SIGKILL) reaches every process of that uid and no other, in one
    call, however fast they fork; it is repeated until /proc shows none. Returns how many were seen.
    """
    seen: set[int] = set()
    for _ in range(50):
        left = processes_of(uid=uid) if uid is not None else processes_of(session=session) if session else []
        left = [pid for pid in left if pid != os.getpid()]
        if not left:
            break
        seen.update(left)
        if uid is not None:
            helper = os.fork()
            if helper == 0:  # only async-signal-safe calls here: the grader may have threads
                try:
                    os.setgroups([])
                    os.setgid(uid)
                    os.setuid(uid)
                    os.kill(-1, signal.SIGKILL)
                finally:
                    os._exit(0)
            os.waitpid(helper, 0)
        else:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.02)
    return len(seen)


def hide_from_children() -> None:
    """The grader's own memory and environment unreadable by processes of its user (PR_SET_DUMPABLE 0)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
