"""The code passes ruff with the project's own settings (pyproject.toml [tool.ruff]).

ruff is a dev dependency, so ops/test.sh (and CI) installs it before running this."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                             "--output-format", "concise", "api", "worker", "tests", "ops"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, (
        f"ruff found problems; fix them, or run `.venv/bin/ruff check --fix api worker tests "
        f"ops` for the ones it can fix itself:\n{result.stdout}{result.stderr}")
