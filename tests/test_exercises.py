"""The exercises' graders: every solution earns all points, every starter does not, and
deliberately wrong answers lose points (a grader that cannot fail is a defect)."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
sys.path.insert(0, str(EXERCISES))

import grade  # noqa: E402

_graded: dict[tuple[int, str], tuple[int, int, str]] = {}


def graded(exercise: int, path: Path) -> tuple[int, int, str]:
    """(passed, total, output) of grading `path`, once per file per test session."""
    key = (exercise, str(path))
    if key not in _graded:
        out = io.StringIO()
        passed, total = grade.grade(exercise, path, out=out)
        _graded[key] = (passed, total, out.getvalue())
    return _graded[key]


def assert_well_formed(output: str, passed: int, total: int) -> None:
    lines = output.strip().splitlines()
    assert lines[-1] == f"score: {passed}/{total}"
    assert len(lines) == total + 1, output  # one line per check, then the score
    assert all(line.startswith(("ok    ", "FAIL  ")) for line in lines[:-1]), output
    assert "Traceback" not in output
    for line in lines[:-1]:
        if line.startswith("FAIL  ") and "not done yet" not in line and "your code raised" not in line:
            assert "expected" in line and "; got" in line, line


@pytest.mark.parametrize("exercise", sorted(grade.FILES))
def test_solution_earns_every_point(exercise):
    passed, total, output = graded(exercise, EXERCISES / "solutions" / grade.FILES[exercise])
    assert total >= 7 and passed == total, output
    assert_well_formed(output, passed, total)


@pytest.mark.parametrize("exercise", sorted(grade.FILES))
def test_untouched_starter_fails_without_crashing(exercise):
    passed, total, output = graded(exercise, EXERCISES / grade.FILES[exercise])
    assert passed < total, output
    assert_well_formed(output, passed, total)
    assert "not done yet" in output


def variant(tmp_path: Path, exercise: int, name: str, old: str, new: str) -> Path:
    """The solution with one piece of code replaced, written next to the exercises' imports."""
    source = (EXERCISES / "solutions" / grade.FILES[exercise]).read_text()
    assert source.count(old) == 1, f"the solution no longer contains {old!r}"
    path = tmp_path / f"{name}.py"
    path.write_text(source.replace(old, new))
    return path


OCCLUSION_MISTAKES = {
    "summing": ("    return total / count  #", "    return total  #",
                "you summed the drops"),
    "whole_patches_only": ("    count = math.ceil((size - window) / stride) + 1\n    return [k * stride for k in range(count)]",
                           "    return list(range(0, size - window + 1, stride))",
                           "hangs over the edge"),
    "sign_flipped": ("drop = scores - model(hidden).gather(1, classes[:, None]).squeeze(1)",
                     "drop = model(hidden).gather(1, classes[:, None]).squeeze(1) - scores",
                     "the sign is flipped"),
}


@pytest.mark.parametrize("mistake", sorted(OCCLUSION_MISTAKES))
def test_occlusion_mistakes_lose_points_with_a_hint(tmp_path, mistake):
    old, new, hint = OCCLUSION_MISTAKES[mistake]
    passed, total, output = graded(1, variant(tmp_path, 1, mistake, old, new))
    assert passed < total, output
    assert hint in output, output
    assert_well_formed(output, passed, total)


@pytest.mark.parametrize("name, old, new, lost", [
    # a map from the image alone finds bright blobs, with no model in it
    ("image_only", "    return vanilla.vanilla_gradient(model, scans, LESION)", "    return scans.clone()",
     "depends on the model"),
    # Grad-CAM's 8x8 map under a max-pooling head misses too many small lesions
    ("grad_cam", "    return vanilla.vanilla_gradient(model, scans, LESION)",
     "    return gradcam.grad_cam(model, scans, LESION)", "finds the lesion"),
])
def test_lesion_maps_that_do_not_explain_the_model_lose_points(tmp_path, name, old, new, lost):
    passed, total, output = graded(4, variant(tmp_path, 4, name, old, new))
    assert passed < total
    assert any(line.startswith("FAIL") and lost in line for line in output.splitlines()), output


def test_a_student_exception_is_a_failed_check(tmp_path):
    path = variant(tmp_path, 1, "raises", "    n, c, h, w = inputs.shape\n",
                   "    n, c, h, w = inputs.shape\n    1 / 0\n")
    passed, total, output = graded(1, path)
    assert passed < total and "your code raised ZeroDivisionError" in output
    assert_well_formed(output, passed, total)


def test_a_file_that_does_not_import_fails_every_check(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\nraise RuntimeError('oops')\n")
    out = io.StringIO()
    passed, total = grade.grade(3, path, out=out)
    assert passed == 0 and total >= 7
    assert "does not import: RuntimeError: oops" in out.getvalue()
    assert out.getvalue().strip().splitlines()[-1] == f"score: 0/{total}"


def test_usage_errors_exit_2(tmp_path, capsys):
    for argv in ([], ["6"], ["one"], ["1", str(tmp_path / "missing.py")], ["1", "a.py", "b.py"]):
        assert grade.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "usage: python exercises/grade.py N [FILE]" in err


def test_exit_status_0_when_every_check_passes(capsys):
    assert grade.main(["1", str(EXERCISES / "solutions" / grade.FILES[1])]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "score: 13/13"


def test_command_line_on_the_starter_exits_1():
    starter = subprocess.run([sys.executable, str(EXERCISES / "grade.py"), "1"], capture_output=True, text=True)
    assert starter.returncode == 1, starter.stdout + starter.stderr
    assert starter.stdout.strip().splitlines()[-1] == "score: 0/13"


@pytest.mark.parametrize("exercise", sorted(grade.FILES))
def test_running_a_starter_lists_what_is_left(exercise, capsys):
    module = grade.load(EXERCISES / grade.FILES[exercise])
    module.main()
    out = capsys.readouterr().out
    assert "left to do" in out and f"python exercises/grade.py {exercise}" in out


def test_the_graders_references_equal_lecture_8():
    """Exercise 3's curve is lecture 8's deletion with a blurred baseline; exercise 4's pointing game is lecture 8's."""
    import torch

    comparative = grade.utils.load_lecture("08_comparative_analysis")
    if not hasattr(comparative, "deletion_curve") or not hasattr(comparative, "pointing_game"):
        pytest.skip("lecture 8 has no deletion_curve or pointing_game yet")
    model = grade.GradingCNN(channels=3, seed=1)
    x = torch.rand(2, 3, 9, 8, generator=torch.Generator().manual_seed(0))
    saliency = torch.randn(2, 3, 9, 8, generator=torch.Generator().manual_seed(1))
    ours = grade.reference_curve(model, x, saliency, [0, 2], 6)
    theirs = comparative.deletion_curve(model, x, saliency, [0, 2], steps=6, baseline=grade.reference_blur(x))
    assert torch.allclose(ours, theirs, atol=1e-6)
    mask = torch.rand(4, 9, 8, generator=torch.Generator().manual_seed(2)) > 0.9
    heat = torch.rand(4, 1, 9, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(grade.reference_pointing(heat, mask, 3), comparative.pointing_game(heat, mask, 3))
