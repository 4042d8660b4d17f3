"""A class graded at once (grade.py --gradebook), hostile submissions among the students: every file gets
its row, the hostile ones lose their points, and afterwards no process they started is alive, no file of
the course is new or changed, and the machine kept its memory.

One gradebook run is shared by the assertions (the `book` fixture); it runs as the instructor would,
through the command line with --seed (so the seed travels as grade.py hands it on, not in a command line).
"""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
sys.path.insert(0, str(EXERCISES))

import grade  # noqa: E402
from grading import sandbox  # noqa: E402
from grading.guard import tree  # noqa: E402

HOSTILE = ["ex1_plants_a_reference", "ex1_writes_bytecode", "ex1_reads_the_seed", "ex1_imports_solutions",
           "ex1_leaves_a_daemon", "ex1_fifty_children", "ex1_memory_hog", "ex1_terminal_escapes",
           "ex1_hangs_in_one_call"]
DAEMON_PID, DAEMON_MARKER = Path("/tmp/saliency-grading-daemon.pid"), Path("/tmp/saliency-grading-daemon.marker")
CHILDREN_PIDS = Path("/tmp/saliency-grading-children.pids")
LINUX = sys.platform.startswith("linux")


def _base():
    spec = importlib.util.spec_from_file_location("submissions_base_sandbox", SUBMISSIONS / "_base.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def course_state() -> dict[str, str]:
    """sha256 of every file in the course but .git, outputs and bytecode outside exercises/ (which the
    lectures' tests, running beside these, may write)."""
    state = {}
    for path in sorted(tree(ROOT)):  # but virtual environments inside the course (CI's .ci/venv)
        relative = path.relative_to(ROOT)
        if not path.is_file() or path.is_symlink():
            continue
        if "__pycache__" in relative.parts and relative.parts[0] != "exercises":
            continue
        state[relative.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def available_memory() -> int:
    with open("/proc/meminfo") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:"))


def alive(pid: int) -> bool:
    """A process that runs (a zombie waiting for its parent to read its status does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """The gradebook of a class: a solution, an untouched starter, and the hostile files."""
    if not LINUX:
        pytest.skip("the memory hog and /proc checks need Linux")
    for stale in (DAEMON_PID, DAEMON_MARKER, CHILDREN_PIDS):
        stale.unlink(missing_ok=True)
    folder = tmp_path_factory.mktemp("class")
    shutil.copyfile(EXERCISES / "solutions" / grade.FILES[1], folder / "alice_solution.py")
    shutil.copyfile(EXERCISES / grade.FILES[1], folder / "bob_starter.py")
    base = _base()
    for name in HOSTILE:
        base.bundle(SUBMISSIONS / f"{name}.py", folder)
    before, low = course_state(), [available_memory()]
    running = True

    def sample() -> None:
        while running:
            low.append(available_memory())
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    gradebook = tmp_path_factory.mktemp("book") / "grades.csv"
    try:
        run = subprocess.run([sys.executable, str(EXERCISES / "grade.py"), "1", str(folder), "--gradebook",
                              str(gradebook), "--seed", "4242", "--time-limit", "120", "--call-limit", "8"],
                             capture_output=True, text=True, cwd=ROOT, timeout=900)
    finally:
        running = False
        sampler.join()
    time.sleep(4)  # the daemon would write its marker 2 s after its grading ended
    rows = {Path(row["file"]).stem: row for row in csv.DictReader(io.StringIO(gradebook.read_text()))}
    yield {"run": run, "rows": rows, "header": gradebook.read_text().splitlines()[0], "before": before,
           "after": course_state(), "low": min(low), "start": low[0], "text": gradebook.read_text()}
    for stale in (DAEMON_PID, DAEMON_MARKER, CHILDREN_PIDS):
        stale.unlink(missing_ok=True)


def cell(row: dict, words: str) -> str:
    """The result of the check whose name contains `words`."""
    return next(value for key, value in row.items() if words in key)


def test_every_submission_gets_its_row_and_a_summary(book):
    run, rows = book["run"], book["rows"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(rows) == {"alice_solution", "bob_starter", *HOSTILE}, rows.keys()
    assert run.stdout.startswith(f"gradebook: {len(rows)} submissions graded"), run.stdout
    # progress lines only on a terminal; without root, one note that the files are graded one at a time
    notes = [] if sandbox.privileged() else ["note: not run as root on Linux"]
    assert [line[:30] for line in run.stderr.splitlines()] == notes, run.stderr
    header = next(csv.reader(io.StringIO(book["header"])))
    assert header[:4] == ["file", "score", "total", "seconds"] and header[-1] == "killed or refused"
    assert len(header) == 4 + 14 + 1
    alice, bob = rows["alice_solution"], rows["bob_starter"]
    assert alice["score"] == alice["total"] == "14", alice
    assert bob["score"] == "0" and bob["total"] == "14" and "not done yet" in cell(bob, "patch_corners")
    escapes = rows["ex1_terminal_escapes"]
    assert escapes["score"] == "0" and "not done yet" not in cell(escapes, "patch_corners")


def test_planted_references_bytecode_and_stolen_solutions_award_nothing(book):
    rows = book["rows"]
    assert int(rows["ex1_plants_a_reference"]["score"]) < 14
    assert "equals" not in "".join(k for k, v in rows["ex1_plants_a_reference"].items() if v == "ok" and "Captum" in k)
    assert rows["ex1_writes_bytecode"]["score"] == "0"
    if sandbox.privileged():  # without root the child reads what its user reads (exercises/README.md says so)
        assert rows["ex1_imports_solutions"]["score"] == "0"
    assert int(rows["ex1_reads_the_seed"]["score"]) < 14  # it answers only when it finds the seed


def test_no_file_of_the_course_is_new_or_changed(book):
    before, after = book["before"], book["after"]
    assert {k for k in after if k not in before} == set()
    assert {k for k in before if before[k] != after.get(k)} == set()
    for folder in (ROOT, EXERCISES, EXERCISES / "grading"):
        assert not (folder / "captum").exists()


def test_no_process_survives_its_grading(book):
    assert not DAEMON_MARKER.exists(), DAEMON_MARKER.read_text()
    if DAEMON_PID.exists():
        assert not alive(int(DAEMON_PID.read_text()))
    if CHILDREN_PIDS.exists():
        pids = [int(p) for p in CHILDREN_PIDS.read_text().split()]
        assert pids and not any(alive(pid) for pid in pids)
    rows = book["rows"]
    assert rows["ex1_leaves_a_daemon"]["score"] == "14" and rows["ex1_fifty_children"]["score"] == "14"
    if sandbox.privileged():  # the sweep of the grading's uid found them and says so
        assert "killed" in rows["ex1_fifty_children"]["killed or refused"]
    # the daemon is killed as soon as it is orphaned (the fork server is a subreaper), or by the sweep


def test_a_memory_hog_gets_a_fail_line_and_the_machine_keeps_its_memory(book):
    row = book["rows"]["ex1_memory_hog"]
    gigabytes = f"{sandbox.MEMORY_LIMIT / sandbox.GB:g}"
    assert f"used more than {gigabytes} GB" in cell(row, "the mean over covering patches"), row
    assert row["score"] == "13", row
    assert f"refused more than {gigabytes} GB" in row["killed or refused"]
    assert book["low"] > book["start"] / 2, (book["low"], book["start"])


def test_a_call_that_never_returns_loses_only_its_check(book):
    row = book["rows"]["ex1_hangs_in_one_call"]
    assert "did not answer within 8 s" in cell(row, "f(x) = w . x"), row
    assert row["score"] == "13", row


def test_nothing_echoed_from_a_student_reaches_a_terminal_unescaped(book):
    assert "\x1b" not in book["text"] and "\x07" not in book["text"]
    row = book["rows"]["ex1_terminal_escapes"]
    assert row["score"] == "0" and "\\x1b[2J" in cell(row, "patch_corners")


def test_terminal_escapes_and_a_fake_score_in_the_summary_are_escaped(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    path = _base().bundle(SUBMISSIONS / "ex1_terminal_escapes.py", tmp_path)
    passed, total = grade.grade(1, path, out=out, err=err, time_limit=60)
    text = out.getvalue() + err.getvalue()
    assert passed == 0 and "\x1b" not in text and "\x07" not in text
    assert not [line for line in err.getvalue().splitlines() if line.startswith(("score:", "ok "))]
    assert out.getvalue().strip().splitlines()[-1] == f"score: 0/{total}"


def test_the_childs_copy_holds_no_solutions_and_no_grading_sources():
    copy = sandbox.course_copy()
    names = {p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()}
    assert "exercises/tasks.py" in names and "utils.py" in names and "exercises/grading/models.py" in names
    assert not [n for n in names if n.startswith("exercises/solutions") or n.endswith(".pyc")]
    assert not {"exercises/grade.py", "exercises/grading/harness.py", "exercises/grading/ex5.py",
                "exercises/grading/variations.py", "exercises/grading/checking.py"} & names
    assert all(not os.access(copy / n, os.W_OK) or os.geteuid() == 0 for n in names)
    assert all((copy / n).stat().st_mode & 0o222 == 0 for n in names)


@pytest.mark.parametrize("argv, words", [
    (["1", "a.py", "b.py"], "a class needs --gradebook"),
    (["1", "--gradebook", "grades.txt", "tests"], "--gradebook takes a .csv file"),
    (["1", "--gradebook", "grades.csv", "no-such-folder"], "is not a Python file or a folder"),
    (["1", "--gradebook", "grades.csv", "tests/submissions", "--jobs", "0"], "--jobs takes a whole number"),
    (["1", "--call-limit", "-3"], "--call-limit takes a number of seconds"),
    (["1", "--seed", "3", "--seed-fd", "9"], "not both"),
    (["\x1b[2J"], "N must be one of")])
def test_bad_class_mode_arguments_print_one_line_and_exit_2(argv, words):
    run = subprocess.run([sys.executable, str(EXERCISES / "grade.py"), *argv], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert run.returncode == 2 and run.stdout == "", run.stdout
    assert len(run.stderr.strip().splitlines()) == 1 and words in run.stderr, run.stderr
    assert "\x1b" not in run.stderr


def test_without_root_a_planted_module_is_moved_aside_and_named(tmp_path, monkeypatch):
    """Where the grader is not root (here: as if it were not), the child can write into the course: what it
    plants is moved to a quarantine folder after the call that planted it, and that check says so."""
    monkeypatch.setattr(sandbox, "privileged", lambda: False)
    before = course_state()
    out, err = io.StringIO(), io.StringIO()
    path = _base().bundle(SUBMISSIONS / "ex1_plants_a_reference.py", tmp_path)
    passed, total = grade.grade(1, path, out=out, err=err, time_limit=120)
    assert passed == 0, out.getvalue()
    assert "planted captum (moved to " in out.getvalue() and "planted exercises/captum (moved to " in out.getvalue()
    assert course_state() == before
    for folder in (ROOT, EXERCISES, EXERCISES / "grading"):
        assert not (folder / "captum").exists()


def _try_lock(mode: str) -> bool:
    """Whether another process gets the course folder's lock in `mode` (SH or EX) at once."""
    code = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "try:\n    fcntl.flock(fd, fcntl.LOCK_%s | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(1)\n" % mode)
    return subprocess.run([sys.executable, "-c", code, str(ROOT)], timeout=60).returncode == 0


@pytest.mark.skipif(not LINUX, reason="flock on a folder, as on Linux")
@pytest.mark.parametrize("root", [False, True])
def test_a_grading_whose_child_can_write_takes_the_course_alone(monkeypatch, root):
    """Not root, a child can plant a file in the course, which another grading's guard would blame on its
    own student: so that grading locks the course folder alone; as root, gradings share it."""
    monkeypatch.setattr(sandbox, "privileged", lambda: root)
    with sandbox.course_lock():
        (fd,) = sandbox._HELD
        assert _try_lock("SH") is root  # (a grading on the other test worker holds it shared at most)
        assert not _try_lock("EX")
        with sandbox.course_lock():  # entered again in the same process: no deadlock
            assert sandbox._HELD == [fd]
    assert not sandbox._HELD  # released: its descriptor is closed
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_class_run_without_root_grades_one_file_at_a_time(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "privileged", lambda: False)
    running, most = [], []
    lock = threading.Lock()

    def fake(exercise, path, seed, time_limit, call_limit):
        with lock:
            running.append(path)
            most.append(len(running))
        time.sleep(0.2)
        with lock:
            running.remove(path)
        return {"file": str(path), "passed": 1, "total": 1, "seconds": 0.2, "checks": [("c", True, "ok    c")],
                "incidents": []}

    monkeypatch.setattr(grade, "grade_one_in_a_process", fake)
    paths = [tmp_path / f"s{i}.py" for i in range(3)]
    assert grade.gradebook(1, paths, tmp_path / "book.csv", None, None, jobs=3) == 0
    assert max(most) == 1 and "one at a time" in capsys.readouterr().err


def test_the_guard_watches_the_course_but_not_a_virtual_environment_inside_it(tmp_path):
    """A package writing into its own folder of a venv inside the course (gradio's hash_seed.txt, written
    by another test's process while a grading ran) is no student's doing; a file anywhere else is seen."""
    (tmp_path / ".ci" / "venv" / "lib").mkdir(parents=True)
    (tmp_path / ".ci" / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tmp_path / "exercises").mkdir()
    before = tree(tmp_path)
    (tmp_path / ".ci" / "venv" / "lib" / "hash_seed.txt").write_text("1")
    (tmp_path / "exercises" / "captum.py").write_text("")
    (tmp_path / ".ci" / "captum.py").write_text("")
    assert tree(tmp_path) - before == {tmp_path / "exercises" / "captum.py", tmp_path / ".ci" / "captum.py"}


@pytest.mark.skipif(not LINUX, reason="/proc")
def test_without_a_uid_the_sweep_finds_and_kills_a_session(tmp_path):
    """What kills a student's processes where the grader is not root: every process of the child's session,
    found in /proc/PID/stat (its fourth field after the name). Run as a normal user for the first time,
    a class run left fifty children alive: that field was misread."""
    leader = subprocess.Popen([sys.executable, "-c", "import os, time\nos.fork()\ntime.sleep(120)"],
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(sandbox.processes_of(session=leader.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        found = sandbox.processes_of(session=leader.pid)
        assert leader.pid in found and len(found) == 2, found
        assert sandbox.sweep(None, leader.pid) == 2
        leader.wait(timeout=30)
        assert not [pid for pid in found if alive(pid)]
    finally:
        if leader.poll() is None:
            leader.kill()
