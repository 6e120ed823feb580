"""The project's own checks, part of the test suite so that CI and a contributor run them alike: lint
(ruff), declared dependencies (deptry: every third-party import is declared, every declared package is
used) and the layering contract (import-linter: core/ below model/ and dataset/, both below trainer/)."""
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

CHECKS = {
    "ruff": [sys.executable, "-m", "ruff", "check", "."],
    "deptry": [sys.executable, "-m", "deptry", "."],
    "import-linter": [shutil.which("lint-imports") or "lint-imports"],
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_project_check_passes(name):
    done = subprocess.run(CHECKS[name], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
