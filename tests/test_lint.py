"""The tree follows its ruff settings (pyproject.toml [tool.ruff]): unused names, undefined
names and import order are caught here, not in review."""

import subprocess
import sys

from gisplatform.config import REPO_ROOT


def test_ruff_finds_nothing():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO_ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
