"""The child process of the grader: imports the student's file and calls its functions on request.

    python exercises/grading/runner.py --fork-server SOCKET_FD

The grader (harness.py) starts this once as a fork server: it imports torch, tasks.py and
the course, then forks a fresh child for every file to grade (serve_forks()), so that
grading many files pays that import once. Each child starts from the server's state, never
from another child's, and holds nothing of the grader's.

The child decides nothing. The grader sends a request (pickled with torch.save:
a function name and arguments), the child calls the student's function and sends
back what came out, made of plain values only (tensors, numbers, strings, lists,
tuples, dicts), which the grader loads with torch.load(weights_only=True) and
checks in its own process. Anything the student's code does here (patching modules,
printing, exiting) stays here.

The serving loop and what it calls run from copies made before the student's file is
imported (seal()), with their own table of global names, so that a file which patches
this module, plumbing.side_effects.observe or its code object changes nothing the grader
reads. What no process can keep from code running inside it (rewriting torch itself,
writing to the reply pipe) it does not try to: such a file is a hack, not an answer, and
the side-effect report it could forge is the state of the grader's own input, compared
with the grader's copy.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
import types
import warnings
from pathlib import Path

EXERCISES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXERCISES.parent))
sys.path.insert(0, str(EXERCISES))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tasks  # noqa: E402,F401  (the course folder on sys.path; the models' classes for unpickling)
from plumbing import side_effects  # noqa: E402  (what the tests check, observed the same way)

UNPICKLING = tasks  # the models' classes the grader sends live in tasks.py
observe = side_effects.observe  # serve()'s name for it; main() hands serve a sealed copy instead


def receive(stream) -> object:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError
    data = stream.read(int.from_bytes(header, "big"))
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)  # from the grader: trusted


def send(stream, message: object) -> None:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    stream.write(len(data).to_bytes(8, "big") + data)
    stream.flush()


def plain(value: object, depth: int = 0) -> object:
    """`value` made of what torch.load(weights_only=True) accepts; anything else described in words."""
    if depth > 6:
        return {"__opaque__": "a value nested too deeply"}
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, torch.Tensor):
        if value.device.type != "cpu":
            return {"__opaque__": f"a tensor on the {value.device.type} device (the grader reads CPU tensors)"}
        if value.is_sparse or value.is_quantized or value.is_complex():
            return {"__opaque__": f"a tensor of layout {value.layout} and dtype {value.dtype} (the grader reads "
                    "dense real tensors)"}
        out = value.detach().clone().contiguous()
        out = torch.Tensor(out) if type(out) is not torch.Tensor else out
        return out.requires_grad_(True) if value.requires_grad and out.is_floating_point() else out
    if isinstance(value, np.ndarray):
        return plain(torch.from_numpy(np.array(value)), depth + 1) if value.dtype != object else \
            {"__opaque__": "a numpy array of objects"}
    if isinstance(value, np.generic):
        return plain(value.item(), depth + 1)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        items = [plain(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {(k if type(k) in (str, int) else repr(k)): plain(v, depth + 1) for k, v in value.items()}
    return {"__opaque__": f"a {type(value).__name__}"}


def failure(error: BaseException, path: Path) -> tuple:
    """('raised', kinds, message, where, todo): todo only for the starter's own NotImplementedError."""
    frames = traceback.extract_tb(error.__traceback__)
    last = frames[-1] if frames else None
    where = f"{Path(last.filename).name}:{last.lineno}" if last else "?"
    in_student = bool(last) and Path(last.filename).resolve() == path
    todo = type(error) is NotImplementedError and in_student
    kinds = [k.__name__ for k in type(error).__mro__]
    return ("raised", kinds, str(error)[:2000], where, todo)


def seal(functions: list, namespace: dict) -> dict:
    """Copies of `functions` that look their global names up in a snapshot of `namespace`, taken now.

    The copies call each other (and themselves) through the snapshot, so patching the
    module afterwards, or the originals' __code__, does not reach them.
    """
    private = dict(namespace)
    copies = {}
    for function in functions:
        copy = types.FunctionType(function.__code__, private, function.__name__, function.__defaults__,
                                  function.__closure__)
        copy.__kwdefaults__ = function.__kwdefaults__
        copies[function.__name__] = copy
    private.update(copies)
    return copies


def serve(requests, replies, path: Path) -> None:
    """Answer the grader's requests until it closes the pipe or says quit."""
    send(replies, ("ready",))
    module = None
    while True:
        try:
            request = receive(requests)
        except EOFError:
            return
        kind = request[0]
        if kind == "quit":
            return
        try:
            if kind == "load":
                spec = importlib.util.spec_from_file_location(f"graded_{path.stem}", path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
                reply = ("ok", sorted(n for n in vars(module) if not n.startswith("__")))
            elif kind == "call":
                _, name, args, kwargs = request
                reply = ("ok", plain(getattr(module, name)(*args, **kwargs)))
            elif kind == "value":
                reply = ("ok", plain(getattr(module, request[1])))
            elif kind == "side_effects":
                _, name, model, x, args, kwargs = request
                reply = ("ok", plain(observe(getattr(module, name), model, x, *args, **kwargs)))
            elif kind == "modes":  # handed over in eval mode, then in training mode: is each kept?
                _, name, model, x, args, kwargs = request
                kept = {}
                for mode in (False, True):
                    model.train(mode)
                    getattr(module, name)(model, x.clone(), *args, **kwargs)
                    kept["train" if mode else "eval"] = all(m.training == mode for m in model.modules())
                reply = ("ok", kept)
            else:
                reply = ("ok", None)
        except BaseException as error:  # noqa: BLE001  (the student's code: any error is a reply)
            reply = failure(error, path)
        send(replies, reply)


def main(read_fd: int, write_fd: int, path: Path) -> None:
    """One child: serve the grader's requests about the file at `path` on the two pipes."""
    requests, replies = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
    warnings.simplefilter("ignore")
    observing = seal([side_effects.observe, side_effects.hooks_left], vars(side_effects))
    own = seal([receive, send, plain, failure, serve], {**globals(), "observe": observing["observe"]})
    own["serve"](requests, replies, path)


# %% The child's confinement ------------------------------------------------------------------------------

CLONE_NEWNS, MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = (
    0x00020000, 1, 2, 4, 8, 32, 4096, 8192, 0x4000, 1 << 18)


def python_needs() -> set[Path]:
    """The folders this Python reads its interpreter and packages from."""
    return {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path)
            if p and os.path.isdir(p)}


def needed_inside(folder: Path) -> set[str]:
    """Names of `folder`'s entries that hold what Python needs: a virtual environment inside the course
    folder (CI keeps one in .ci/venv) must stay in reach when the course folder is covered."""
    return {path.parts[len(folder.parts)] for path in python_needs()
            if len(path.parts) > len(folder.parts) and path.parts[:len(folder.parts)] == folder.parts}


def blocked() -> dict[Path, set[str]]:
    """{a folder others cannot enter: names of its entries Python needs}, e.g. /root: {'.pyenv'} when
    the interpreter lives in root's home (mode 0700), which the grading's uid could not reach."""
    found: dict[Path, set[str]] = {}
    for path in python_needs():
        for depth in range(1, len(path.parts) - 1):
            folder = Path(*path.parts[:depth])
            try:
                if not os.stat(folder).st_mode & 0o001:
                    found.setdefault(folder, set()).add(path.parts[depth])
                    break
            except OSError:
                break
    return found


def cover(libc, folder: Path, names: set[str], stage: Path, tag: str) -> None:
    """Cover `folder` with an empty read-only tmpfs others may enter, holding only the entries `names`
    (bind mounts of the originals, moved in through `stage`, a folder of the grader's)."""
    staged = []
    for name in sorted(names):
        target = stage / f".reach-{tag}-{len(staged)}"
        target.mkdir(exist_ok=True)
        if libc.mount(os.fsencode(folder / name), os.fsencode(target), None, MS_BIND | MS_REC, None) == 0:
            staged.append((name, target))
    if libc.mount(b"tmpfs", os.fsencode(folder), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=64k,mode=0755") != 0:
        return
    for name, target in staged:
        (folder / name).mkdir(exist_ok=True)
        libc.mount(os.fsencode(target), os.fsencode(folder / name), None, MS_MOVE, None)
    libc.mount(None, os.fsencode(folder), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def reopen(libc, stage: Path) -> None:
    """In the child's own mount namespace: each folder from blocked() is covered, keeping only the
    entries Python needs. The rest of that folder stays out of sight."""
    for number, (folder, names) in enumerate(sorted(blocked().items())):
        cover(libc, folder, names, stage, str(number))


def confine(request: dict) -> None:
    """Confine this child before the student's file is imported; every step the platform allows.

    - its own session (and process group): the grader kills it whole;
    - resource limits (request["limits"]): address space (memory), file size, CPU seconds, no core
      files, and, with a uid of its own, a number of processes;
    - as root on Linux: its own mount namespace, where the folders in request["hide"] (the course
      folder with solutions/ and the grader's code, the submission's own folder) are covered by an
      empty read-only tmpfs and /proc is mounted again with hidepid=2 (the grader's processes, and
      their command lines, are invisible); then setgid/setuid to request["uid"], a uid used by
      this grading alone, so that it can write nowhere but its own folder, and the grader can
      find and kill every process it started (a daemon that double-forks and calls setsid keeps its uid);
    - no_new_privs: no setuid program gives it back what it dropped.
    What a platform lacks (macOS, Windows: no namespaces; not root: no uid) is skipped; see
    exercises/README.md's instructor section.
    """
    os.setsid()
    if not sys.platform.startswith(("linux", "darwin")):
        return
    import resource

    limits = request.get("limits") or {}
    root = os.geteuid() == 0
    uid = request.get("uid")
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if root and uid is not None and libc.unshare(CLONE_NEWNS) == 0:
            libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
            reopen(libc, Path(request["folder"]).parent)
            for number, folder in enumerate(request.get("hide") or ()):
                keep = needed_inside(Path(folder))  # e.g. CI's .ci/venv inside the course folder
                if keep:
                    cover(libc, Path(folder), keep, Path(request["folder"]).parent, f"hide-{number}")
                else:
                    libc.mount(b"tmpfs", os.fsencode(folder), b"tmpfs",
                               MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,mode=0555")
            libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"hidepid=2")
    memory = None
    if limits.get("memory_extra") and sys.platform.startswith("linux"):  # beyond what the server maps already
        with open("/proc/self/status") as handle:
            mapped = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmSize:"))
        memory = mapped + int(limits["memory_extra"])
    for name, value in (("RLIMIT_AS", memory), ("RLIMIT_FSIZE", limits.get("file_size")),
                        ("RLIMIT_CPU", limits.get("cpu")), ("RLIMIT_CORE", 0),
                        ("RLIMIT_NPROC", limits.get("processes") if uid is not None else None)):
        if value is not None and hasattr(resource, name):
            try:
                resource.setrlimit(getattr(resource, name), (int(value), int(value)))
            except (ValueError, OSError):
                pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file too large is an OSError, not a dead child
    if root and uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if sys.platform.startswith("linux"):  # its own /proc files readable by itself again (setuid cleared it)
            ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    os.environ.update({"HOME": os.getcwd(), "TMPDIR": os.getcwd()})
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS


# %% The fork server -----------------------------------------------------------------------------------


def child(read_fd: int, write_fd: int, request: dict, server: int) -> int:
    """In a fresh fork of the server (pid `server`): set up as a new `python` would be for this file,
    then serve; the exit status."""
    if sys.platform.startswith("linux"):  # ends with the server, should the student's code kill it
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != server:
        return 1
    signal.signal(signal.SIGINT, signal.default_int_handler)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if request["append"] else os.O_TRUNC)
    for fd, name in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(name, flags, 0o600)
        os.dup2(target, fd)
        os.close(target)
    os.chdir(request["folder"])
    confine(request)
    sys.argv = [str(Path(__file__).resolve()), request["path"]]
    status = 0
    try:
        main(read_fd, write_fd, Path(request["path"]).resolve())
    except SystemExit as error:
        status = error.code if isinstance(error.code, int) else 0 if error.code is None else 1
    except BaseException:  # noqa: BLE001  (as an uncaught error would end a python process)
        traceback.print_exc()
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    return status


def adopted(server: int, children: dict) -> list[int]:
    """Processes whose parent is the server but which it did not fork: orphans reparented to it (a subreaper)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if entry.isdigit() and int(entry) not in children:
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == server:
                found.append(int(entry))
    return found


def serve_forks(control: socket.socket) -> None:
    """Fork a child per request until the grader closes `control`; report each child's exit status.

    A request is a JSON object (the file, the child's folder, its stdout and stderr files,
    whether to append to them) with three file descriptors: the child's ends of its two pipes
    and the write end of a pipe on which its exit status will come (4 bytes, as
    subprocess.Popen.returncode counts it). The reply is the child's pid. `kill PID` kills a
    child of this server that has not been reaped, and no other process (its reply: PID). One
    request at a time: the grader waits for each reply before it sends the next.
    """
    children: dict[int, int] = {}  # pid -> where its exit status goes
    server, swept = os.getpid(), 0.0
    if sys.platform.startswith("linux"):  # orphans of the student's code come here, and are killed (below)
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: its memory is not readable by the children
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the grader's to handle
    while True:
        ready, _, _ = select.select([control], [], [], 0.05)
        while True:  # its children, and the orphans it adopted
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in children:
                end = children.pop(pid)
                os.write(end, os.waitstatus_to_exitcode(status).to_bytes(4, "big", signed=True))
                os.close(end)
        if time.monotonic() - swept >= 0.5:
            swept = time.monotonic()
            for orphan in adopted(server, children):  # a daemon a student's child left behind
                try:
                    os.kill(orphan, signal.SIGKILL)
                except OSError:
                    pass
        if not ready:
            continue
        message, fds, _, _ = socket.recv_fds(control, 1 << 16, 3)
        if not message:
            break
        words = message.decode()
        if words.startswith("kill "):
            pid = int(words.split()[1])
            if pid in children:
                kill_group(pid)
            for fd in fds:
                os.close(fd)
            control.sendall(pid.to_bytes(8, "big"))
            continue
        read_fd, write_fd, status_end = fds
        pid = os.fork()
        if pid == 0:
            for end in (status_end, *children.values()):
                os.close(end)
            control.close()
            os._exit(child(read_fd, write_fd, json.loads(words), server))
        os.close(read_fd), os.close(write_fd)
        children[pid] = status_end
        control.sendall(pid.to_bytes(8, "big"))
    for pid in children:
        kill_group(pid)


def kill_group(pid: int) -> None:
    """SIGKILL to the child `pid` and its process group (its own, from setsid in confine())."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


if __name__ == "__main__":
    if sys.argv[1:2] != ["--fork-server"] or len(sys.argv) != 3:
        sys.exit("usage: python exercises/grading/runner.py --fork-server SOCKET_FD (the grader starts it)")
    serve_forks(socket.socket(fileno=int(sys.argv[2])))
