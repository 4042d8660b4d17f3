"""The README is the course's front door and docs/ its rooms: every link leads somewhere, the picture
stays small, the snippet is the one the quick-start test runs, and the Python it names is the one
pyproject.toml declares."""
from __future__ import annotations

import re
import sys

import pytest
from PIL import Image

from conftest import ROOT
from test_utils import SEED_SNIPPET

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)|<img src=\"([^\"]+)\"")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_link_leads_to_a_file(page):
    text = page.read_text(encoding="utf-8")
    targets = [a or b for a, b in LINK.findall(text)]
    missing = [t for t in targets if "://" not in t and not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 170, "the depth belongs in docs/"
    assert text.splitlines()[2].startswith("![") and "docs/cover.png" in text.splitlines()[2]
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.stem != "explorer":
            assert f"docs/{page.name}" in text, f"docs/{page.name} is not linked from the README's contents"
    for number in range(1, 10):
        assert f"notebooks/{number:02d}_" in text and f"docs/thumbs/{number:02d}.png" in text


def test_the_picture_is_small_and_the_thumbnails_are_there():
    cover = ROOT / "docs" / "cover.png"
    assert cover.stat().st_size < 200_000, "python tools/make_cover.py keeps it under 200 KB"
    with Image.open(cover) as png:
        assert png.format == "PNG" and png.width >= 800
    for number in range(1, 10):
        with Image.open(ROOT / "docs" / "thumbs" / f"{number:02d}.png") as png:
            assert png.width <= 200


def test_the_quick_start_is_the_snippet_the_tests_run():
    text = README.read_text(encoding="utf-8")
    snippet = text.split("## Quick start", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert snippet == SEED_SNIPPET


def test_the_python_named_is_the_python_declared():
    """The README names the Python that pyproject.toml declares and the suite runs on (CI: 3.11)."""
    assert 'requires-python = ">=3.11"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert sys.version_info >= (3, 11)
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"Python 3\.(9|10)\b|3\.(9|10) or newer", text), f"{page.name} names an untested Python"
        if page == README:
            assert "Python 3.11, the version CI tests" in text
