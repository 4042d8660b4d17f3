"""The shared contract check of ../shared/tools/check_api.py, on every script there is."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

CHECK = ROOT.parent / "shared" / "tools" / "check_api.py"


@pytest.mark.skipif(not CHECK.is_file(), reason="../shared/tools/check_api.py is not beside this checkout")
def test_every_script_keeps_the_contract():
    result = subprocess.run([sys.executable, str(CHECK)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout
