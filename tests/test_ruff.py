"""The tree stays lint-clean and formatted (ruff, configured in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT


def _ruff() -> str:
    # The venv's ruff (a pinned dev dependency), next to the interpreter running the tests.
    local = Path(sys.executable).with_name("ruff")
    return str(local) if local.exists() else (shutil.which("ruff") or "ruff")


def test_ruff_check_is_clean():
    result = subprocess.run([_ruff(), "check", "--no-cache", "."], cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_format_leaves_every_file_as_it_is():
    result = subprocess.run(
        [_ruff(), "format", "--check", "--no-cache", "."], cwd=PROJECT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
