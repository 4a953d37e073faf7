"""The benchmark runs end to end on a small table (it says nothing about speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_runs_on_ten_thousand_rows():
    # Its own source database and Redis db, so it disturbs neither the real benchmark's
    # million-row table nor other tests' keys.
    result = subprocess.run(
        [sys.executable, "ops/bench/bench_pg.py", "--rows", "10000", "--rounds", "1",
         "--database", "liteshift_bench_smoke", "--redis-url", "redis://127.0.0.1:6379/13"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ratio: liteshift takes" in result.stdout, result.stdout
    assert "10,000 rows of bench_mixed" in result.stdout, result.stdout
