"""The exercises' graders: every solution earns all points (also on an instructor's --seed),
every starter does not, and wrong, cheating and hostile submissions (tests/submissions/) lose
points with a hint that names the mistake, with nothing hanging, flooding or damaged."""
from __future__ import annotations

import atexit
import hashlib
import importlib.util
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
sys.path.insert(0, str(EXERCISES))

import grade  # noqa: E402
from grading import child, harness, models, sandbox, variations  # noqa: E402

# Grading restores the course's files a hostile submission damages, and would blame the file it is
# grading for damage done meanwhile by another: these tests must run one after another (pyproject.toml
# runs the suite on two pytest-xdist workers with --dist loadfile, which keeps a file on one worker).
LIMIT = 900.0  # seconds of the child's work per exercise in these tests (hostile files hit far lower ones)
_graded: dict[tuple, tuple[int, int, str, str]] = {}


def graded(exercise: int, path: Path, seed: int | None = None, time_limit: float = LIMIT):
    """(passed, total, stdout, stderr) of grading `path`, once per file, seed and limit per session."""
    key = (exercise, str(path), seed, time_limit)
    if key not in _graded:
        out, err = io.StringIO(), io.StringIO()
        passed, total = grade.grade(exercise, path, out=out, err=err, seed=seed, time_limit=time_limit)
        _graded[key] = (passed, total, out.getvalue(), err.getvalue())
    return _graded[key]


def _load_base():
    spec = importlib.util.spec_from_file_location("submissions_base", SUBMISSIONS / "_base.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE = _load_base()
BUNDLED = Path(tempfile.mkdtemp(prefix="bundled-submissions-"))
atexit.register(shutil.rmtree, BUNDLED, True)


def submission(name: str) -> Path:
    """tests/submissions/NAME.py as one self-contained file (the grader sees only the file it grades)."""
    return BASE.bundle(SUBMISSIONS / f"{name}.py", BUNDLED)


def assert_well_formed(output: str, passed: int, total: int) -> None:
    lines = output.strip().splitlines()
    assert lines[-1] == f"score: {passed}/{total}"
    assert sum(line.startswith("score:") for line in lines) == 1, output
    assert all(line.startswith(("ok    ", "FAIL  ")) for line in lines[:-1]), output
    checks = [line for line in lines[:-1] if not re.match(r"FAIL  \S+\.py does not import: ", line)]
    assert len(checks) == total, output
    assert "Traceback" not in output


def fail_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAIL")]


@pytest.mark.parametrize("exercise", sorted(grade.FILES))
def test_solution_earns_every_point(exercise):
    passed, total, output, _ = graded(exercise, EXERCISES / "solutions" / grade.FILES[exercise])
    assert total >= 7 and passed == total, output
    assert_well_formed(output, passed, total)


@pytest.mark.parametrize("exercise", [1, 4, 5])
def test_solution_earns_every_point_on_an_instructors_seed(exercise):
    passed, total, output, _ = graded(exercise, EXERCISES / "solutions" / grade.FILES[exercise], seed=2027)
    assert passed == total, output


def test_a_seed_changes_the_variation():
    shipped = [name for name, _ in grade.checks_module(1).checks(None, variations.Variation())]
    drawn = [name for name, _ in grade.checks_module(1).checks(None, variations.Variation(7))]
    assert shipped != drawn and len(shipped) == len(drawn)
    five = [name for name, _ in grade.checks_module(5).checks(None, variations.Variation(7))]
    assert five != [name for name, _ in grade.checks_module(5).checks(None, variations.Variation())]


def test_a_correct_answer_by_another_route_earns_every_point():
    """Exercise 3 by torch.trapezoid, a loop over examples and a float64 gap: the tolerances follow float32
    rounding of each area and gap (absolute), not a fraction of a gap that may be near 0."""
    passed, total, output, _ = graded(3, submission("ex3_other_routes"))
    assert passed == total, output


@pytest.mark.parametrize("exercise", sorted(grade.FILES))
def test_untouched_starter_fails_without_crashing(exercise):
    passed, total, output, _ = graded(exercise, EXERCISES / grade.FILES[exercise])
    assert passed < total, output
    assert_well_formed(output, passed, total)
    assert "not done yet" in output


MISTAKES = [  # (exercise, submission, a check that must fail, words its line must contain)
    (1, "ex1_summing", "hand-derived: the mean", "you summed the drops"),
    (1, "ex1_whole_patches_only", "patch_corners", "hangs over the edge"),
    (1, "ex1_sign_flipped", "equals Captum", "the sign is flipped"),
    (1, "ex1_own_prediction", "the class is fixed at x", "each occluded copy's own prediction"),
    (1, "ex1_zero_baseline", "baseline 0.5", "you hid with 0"),
    (1, "ex1_raises", "equals Captum", "your code raised ZeroDivisionError"),
    (1, "ex1_meta_tensor", "occlusion returns", "meta"),
    (1, "ex1_nan", "occlusion returns", "NaN"),
    (1, "ex1_negative_target", "ValueError for a class out of range", "target=-1"),
    (1, "ex1_forces_training_mode", "no side effects", "eval mode stays in eval mode"),
    (2, "ex2_largest_logit", "Q2 most_confident_mistake", "largest logit"),
    (3, "ex3_unsorted", "rank_methods: the ranking", "sorted"),
    (4, "ex4_class_0", "second lesion model", "explain class 1"),
    (4, "ex4_predicted_class", "second lesion model", "you explained the predicted class"),
    (4, "ex4_grad_cam", "finds the lesion", "hit rate"),
    (4, "ex4_blob_plus_hash_noise", "second lesion model", "hit rate"),
    (4, "ex4_blob_for_shipped_weights", "second lesion model", "hit rate"),
    (5, "ex5_plain_gradient", "trained with the shortcut, marker top left", "on the marker"),
    (5, "ex5_reads_the_table", "detected correctly", "" if sandbox.privileged() else "expected"),
]


@pytest.mark.parametrize("exercise, name, check, words", MISTAKES, ids=[m[1] for m in MISTAKES])
def test_a_wrong_answer_loses_points_with_a_hint(exercise, name, check, words):
    passed, total, output, _ = graded(exercise, submission(name))
    assert passed < total, output
    assert any(check in line and words in line for line in fail_lines(output)), output
    assert_well_formed(output, passed, total)


def test_torchs_own_not_implemented_error_is_no_todo():
    _, _, output, _ = graded(1, submission("ex1_meta_tensor"))
    assert "not done yet" not in output


def test_a_patched_grader_or_a_fake_score_awards_nothing():
    for name in ("ex1_patches_the_grader", "ex1_fake_score_exit", "ex1_exit_in_function"):
        passed, total, output, err = graded(1, submission(name), time_limit=60)
        assert passed <= 1, output  # at most the ValueError checks of a file that exits
        assert_well_formed(output, passed, total)
    _, _, output, err = graded(1, submission("ex1_exit_in_function"), time_limit=60)
    assert "ended the grading process (exit status 0)" in output
    assert "score: 13/13" in err and "your code's stdout | score: 13/13" in err  # shown as the child's, not ours


def test_a_patched_side_effect_observer_hides_nothing():
    passed, total, output, _ = graded(1, submission("ex1_fakes_side_effects"))
    assert passed == total - 1, output
    assert any("no side effects" in line and "switched to eval" in line for line in fail_lines(output)), output


@pytest.mark.parametrize("name, words, limit", [("ex1_loops_forever", "time limit", 1.5),
                                                ("ex1_sleeps_at_import", "time limit", 1.5),
                                                ("ex1_crashes_at_import", "RuntimeError: oops", 8)])
def test_hostile_files_are_stopped_and_scored(name, words, limit):
    passed, total, output, _ = graded(1, submission(name), time_limit=limit)
    assert passed == 0 and total == 14, output
    assert words in output
    assert_well_formed(output, passed, total)


def test_each_file_starts_from_a_clean_fork_and_a_killed_fork_server_is_replaced():
    """The children are forked from a server that imported torch and the course once: what one file
    does to its process (torch patched, the course's helpers removed, the server killed) reaches no
    file graded after it."""
    passed, total, output, _ = graded(1, submission("ex1_poisons_its_fork_server"))
    assert passed < total, output
    assert_well_formed(output, passed, total)
    if sandbox.privileged():  # the child runs as a uid of its own: it cannot signal the server at all
        assert "PermissionError" in output, output
        assert child._SERVER[0].process.poll() is None
        child._SERVER[0].process.kill()  # as a file graded by a grader that is not root could
        child._SERVER[0].process.wait()
    elif sys.platform.startswith("linux"):  # where a child ends with its server (runner.child)
        assert "ended the grading process (exit status -9)" in output, output
    killed = child._SERVER[0].process
    assert killed.poll() is not None  # the file did kill its server
    again, again_total, again_output, _ = graded(1, EXERCISES / "solutions" / grade.FILES[1], seed=5)
    assert again == again_total, again_output
    assert child._SERVER[0].process is not killed and child._SERVER[0].process.poll() is None


def test_the_fork_server_kills_only_its_own_children():
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        server = child.fork_server()
        assert server.ask(f"kill {other.pid}") == other.pid
        assert other.poll() is None  # not the server's child: untouched
    finally:
        other.kill()
        other.wait()


def test_a_flood_of_output_is_capped():
    passed, total, output, err = graded(1, submission("ex1_floods_output"))
    assert passed == total, output
    assert len(err.splitlines()) < 30 and "more lines cut" in err
    assert "score: 13/13" not in err.split("your code's stdout | ")[0]


def test_a_deleted_course_file_is_restored_and_named():
    watched = [EXERCISES / "data" / "lesion_cnn.pt", EXERCISES / "data" / "heldout_digits.npz"]
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in watched}
    passed, total, output, _ = graded(4, submission("ex4_deletes_lesion_cnn"))
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in watched} == before
    if sandbox.privileged():  # the course folder is out of the child's sight: nothing to delete
        assert passed < total and "FileNotFoundError" in output, output
    else:
        assert passed < total and "deleted exercises/data/lesion_cnn.pt (restored)" in output, output
        assert "changed exercises/data/heldout_digits.npz (restored)" in output
    passed, total, output, _ = graded(4, EXERCISES / "solutions" / grade.FILES[4], seed=3)
    assert passed == total, output  # the next grading sees the shipped files


def test_a_missing_course_file_refuses_grading(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "course_files", lambda: [tmp_path / "gone.pt"])
    with pytest.raises(FileNotFoundError, match="missing"):
        grade.grade(1, EXERCISES / "solutions" / grade.FILES[1], out=io.StringIO())


@pytest.mark.parametrize("argv, words", [
    ([], "which exercise"), (["6"], "N must be one of"), (["one"], "N must be one of"), (["1", "missing.py"], "not a Python file"),
    (["1", "a.py", "b.py"], "one exercise and one file"), (["1", "--seed", "x"], "--seed takes a whole number"),
    (["1", "--seed"], "--seed needs a value"), (["1", "--frobnicate"], "unknown option --frobnicate"),
    (["1", "--time-limit", "0"], "--time-limit"), (["--notes", "1"], "--notes takes nothing else")])
def test_usage_errors_print_one_line_and_exit_2(argv, words):
    run = subprocess.run([sys.executable, str(EXERCISES / "grade.py"), *argv], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and words in run.stderr, run.stderr


def test_a_usage_error_is_reported_before_torch_loads():
    code = ("import sys; sys.argv = ['grade.py', '7']; sys.path.insert(0, 'exercises'); import grade; "
            "status = grade.main(); print(status, 'torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.stdout.split() == ["2", "False"], run.stdout + run.stderr


def test_exit_status_0_when_every_check_passes(capsys):
    assert grade.main(["1", str(EXERCISES / "solutions" / grade.FILES[1])]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "score: 14/14"


def test_command_line_on_the_starter_exits_1():
    starter = subprocess.run([sys.executable, str(EXERCISES / "grade.py"), "1"], capture_output=True, text=True)
    assert starter.returncode == 1, starter.stdout + starter.stderr
    assert starter.stdout.strip().splitlines()[-1] == "score: 0/14"


@pytest.mark.parametrize("exercise", sorted(grade.FILES))
def test_running_a_starter_lists_what_is_left(exercise, capsys):
    module = grade.load(EXERCISES / grade.FILES[exercise])
    module.main()
    out = capsys.readouterr().out
    assert "left to do" in out and f"python exercises/grade.py {exercise}" in out


def test_the_graders_references_equal_lecture_8():
    """Exercise 3's curve is lecture 8's deletion with a blurred baseline; exercise 4's pointing game is lecture 8's."""
    import torch

    from grading import ex3, ex4

    comparative = grade.tasks.utils.load_lecture("08_comparative_analysis")
    if not hasattr(comparative, "deletion_curve") or not hasattr(comparative, "pointing_game"):
        pytest.skip("lecture 8 has no deletion_curve or pointing_game yet")
    model = models.GradingCNN(channels=3, seed=1)
    x = torch.rand(2, 3, 9, 8, generator=torch.Generator().manual_seed(0))
    saliency = torch.randn(2, 3, 9, 8, generator=torch.Generator().manual_seed(1))
    ours = ex3.reference_curve(model, x, saliency, [0, 2], 6)
    theirs = comparative.deletion_curve(model, x, saliency, [0, 2], steps=6, baseline=ex3.reference_blur(x))
    assert torch.allclose(ours, theirs, atol=1e-6)
    mask = torch.rand(4, 9, 8, generator=torch.Generator().manual_seed(2)) > 0.9
    heat = torch.rand(4, 1, 9, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ex4.reference_pointing(heat, mask, 3), comparative.pointing_game(heat, mask, 3))


def test_the_shortcut_solution_works_on_a_model_with_mostly_zero_gradient_maps():
    """Seed 11, marker top left: trained as the exercise asks, most of its plain gradient maps are exactly zero."""
    import torch

    solution = grade.load(EXERCISES / "solutions" / grade.FILES[5])
    tasks = grade.tasks
    model = tasks.train_bars_cnn(True, seed=11, corner="top_left")
    images, _ = tasks.bars_dataset(100, seed=61, marker="all", corner="top_left")
    vanilla = tasks.utils.load_lecture("01_vanilla_gradient_saliency").vanilla_gradient(model, images)
    assert float((vanilla.flatten(1).abs().amax(1) == 0).float().mean()) > 0.5  # the kind of model meant
    assert solution.relies_on_marker(solution.explain(model, images), tasks.marker_mask("top_left")) is True
    unbiased = tasks.train_bars_cnn(False, seed=11, corner="top_left")
    assert solution.relies_on_marker(solution.explain(unbiased, images), tasks.marker_mask("top_left")) is False
    assert isinstance(torch.tensor(0), torch.Tensor)


NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?%?")


def same_measurements(quoted: str, computed: str) -> bool:
    """The same words and counts; each measured value (a decimal or a percentage) within 2 units of its
    last printed digit.

    The notes train small models (exercise 5) whose last digit can move with the machine's
    floating-point libraries; a stale note is off by far more than that, or counts differently.
    """
    if NUMBER.sub("#", quoted.strip()) != NUMBER.sub("#", computed.strip()):
        return False
    for a, b in zip(NUMBER.findall(quoted), NUMBER.findall(computed)):
        if "." not in b and "%" not in b:
            if a != b:  # counts, indices, seeds
                return False
            continue
        unit = 10.0 ** -len(b.rstrip("%").split(".")[1]) if "." in b else 1.0
        if abs(float(a.rstrip("%")) - float(b.rstrip("%"))) > 2 * unit + 1e-9:
            return False
    return True


def test_the_notes_comparison_catches_a_stale_number():
    line = "exercise 5: SmoothGrad share 0.34 (92% of its maps zero); 5 mistakes at [27, 82]"
    assert same_measurements(line.replace("0.34", "0.35"), line)
    assert not same_measurements(line.replace("0.34", "0.44"), line)
    assert same_measurements(line.replace("92%", "93%"), line)
    assert not same_measurements(line.replace("5 mistakes", "6 mistakes"), line)
    assert not same_measurements(line.replace("SmoothGrad", "Grad-CAM"), line)


def test_the_instructor_notes_are_the_commands_output():
    """Every measured number in exercises/README.md is in the block that `grade.py --notes` prints."""
    from grading import notes

    readme = (EXERCISES / "README.md").read_text()
    block = re.search(r"<!-- notes: begin -->\n```\n(.*?)```\n<!-- notes: end -->", readme, re.S)
    assert block, "exercises/README.md has no notes block"
    text = notes.text()
    assert same_measurements(block.group(1), text), "run python exercises/grade.py --notes and paste its output"
    prose = readme[:block.start()] + readme[block.end():]
    measured = re.findall(r"(?<![\w.])[+-]?\d+\.\d+%?|(?<![\w.])\d+%", prose)
    assert all(number in text for number in measured), [n for n in measured if n not in text]


def test_the_starters_are_made_from_the_solutions():
    """One source per exercise: each starter is its solution with the marked blocks replaced."""
    run = subprocess.run([sys.executable, str(EXERCISES / "make_starters.py"), "--check"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    import make_starters

    for name in make_starters.FILES:
        solution = (EXERCISES / "solutions" / name).read_text()
        assert solution.count("### BEGIN SOLUTION") >= 2 and "### BEGIN SOLUTION" not in make_starters.starter(solution)


COPIED = [  # (exercise, submission, a check that passes on the shipped variation and fails under a seed)
    (2, "ex2_copied_constants", "Q1 n_mistakes"),
    (3, "ex3_copied_constants", "rank_methods: the ranking and gaps on ten digits"),
]


@pytest.mark.parametrize("exercise, name, check", COPIED, ids=[c[1] for c in COPIED])
def test_copied_constants_lose_points_under_an_instructors_seed(exercise, name, check):
    """The shipped variation's answers pasted as constants earn (nearly) every point there, and lose
    points under an instructor's --seed, which the solution passes: the seed changes what is graded."""
    passed, total, output, _ = graded(exercise, submission(name))
    assert passed >= total - 1, output  # exercise 3 also checks that another seed changes the chance score
    assert not any(check in line for line in fail_lines(output)), output
    solved, solved_total, solved_output, _ = graded(exercise, EXERCISES / "solutions" / grade.FILES[exercise],
                                                    seed=2027)
    assert solved == solved_total == total, solved_output
    seeded, seeded_total, seeded_output, _ = graded(exercise, submission(name), seed=2027)
    assert seeded_total == total and seeded < passed, seeded_output
    assert any(check in line for line in fail_lines(seeded_output)), seeded_output
    assert_well_formed(seeded_output, seeded, seeded_total)


def test_exercise_4s_hidden_model_computes_the_same_with_other_weights():
    """The second lesion model is re-parametrised (channels permuted and rescaled through ReLU): the same
    outputs as the inverted lesion CNN to float32 rounding, yet no weight tensor equal to the shipped one's;
    it is verified when drawn (the grader's class-1 gradient finds the lesions) and wrong on a share of scans."""
    import torch

    from grading import ex4

    model = grade.tasks.load_lesion_cnn()
    scans, _, _ = grade.tasks.lesion_dataset(40, seed=7)
    inverted = ex4.inverted_lesion_cnn(model)
    again = ex4.reparametrised(inverted, torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours, theirs = again(1 - scans), inverted(1 - scans)
    # logits of size ~10 through three layers: float32 sums in another order, a few ulps of 10 each
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    shipped = {tuple(p.flatten()[:8].tolist()) for p in model.parameters()}
    assert not any(tuple(p.flatten()[:8].tolist()) in shipped for p in again.parameters())
    second, wrong = ex4.second_model(variations.Variation())
    assert 0.18 <= wrong <= 0.45


def test_exercise_5s_hidden_models_do_what_their_labels_say():
    """Each hidden model is verified when drawn: a shortcut model loses accuracy without its marker, a clean
    one does not (and a model that fails is trained again from another seed)."""
    from grading import ex5

    for seed, corner, shortcut in ex5.hidden_models(variations.Variation())[:2]:
        model, used = ex5.verified_model(seed, corner, shortcut)
        assert ex5.does_what_its_label_says(model, used, corner, shortcut)
        assert not ex5.does_what_its_label_says(model, used, corner, not shortcut)
