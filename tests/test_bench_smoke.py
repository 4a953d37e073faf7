"""The benchmarks run end to end on small tables (they say nothing about speed)."""

from __future__ import annotations

import importlib.util
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "ops" / "bench" / "bench.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("liteshift_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_bench_pg_runs_on_ten_thousand_rows():
    # Its own source database and Redis db, so it disturbs neither the real benchmark's
    # million-row table nor other tests' keys.
    result = subprocess.run(
        [sys.executable, "ops/bench/bench_pg.py", "--rows", "10000", "--rounds", "1",
         "--database", "liteshift_bench_smoke", "--redis-url", "redis://127.0.0.1:6379/13"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ratio: liteshift takes" in result.stdout, result.stdout
    assert "10,000 rows of bench_mixed" in result.stdout, result.stdout


def test_bench_runs_every_data_set_small(tmp_path):
    """liteshift through the queue plus whichever peers are already installed (--install no:
    the test installs nothing), on every data set; each output's row count is checked."""
    report = tmp_path / "report.md"
    # Its own source databases (PostgreSQL and MariaDB) and Redis db; the run's Redis keys,
    # queue and data directory carry its own pid-based prefix and are removed after.
    result = subprocess.run(
        [sys.executable, str(BENCH), "--rows", "2000", "--narrow-rows", "3000", "--rounds", "1",
         "--database", "liteshift_bench_smoke_all", "--redis-url", "redis://127.0.0.1:6379/13",
         "--install", "no", "--write", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=170)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "bench: every output's row count checked" in out, out
    for title in ("### pg-mixed: 2,000 rows", "### pg-narrow: 3,000 rows",
                  "### mysql-mixed: 2,000 rows"):
        assert title in out, out
    assert ("| tool | seconds | rows/s | CPU s | peak RSS MB | ratio | rows checked | note |"
            in out)
    # liteshift ran, checked, in each data set; it is the ratio's reference.
    lite_rows = re.findall(r"^\| liteshift \| ([\d.]+) \| ([\d,]+) \| ([\d.]+) \| ([\d,]+) \| "
                           r"1\.00 \| yes, 1/1 \|", out, re.M)
    assert len(lite_rows) == 3, out
    # Every other tool's row: measured and checked, or said to be missing or failed.
    for line in re.findall(r"^\| (?!tool|liteshift|---)[\w-]+ \|.*$", out, re.M):
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 8:
            continue  # the "what each output holds" tables
        assert cells[6].startswith("yes, 1/1") or "not installed" in cells[7] \
            or "FAILED" in cells[7], line
    assert report.read_text().count("| liteshift |") >= 3


def test_bench_runs_the_app_databases_tiny(tmp_path):
    """The app-shaped databases (8 tables each, PostgreSQL and MariaDB) at a thousandth of
    their size: liteshift and whichever DuckDB peers are installed; every table's rows are
    checked in every output."""
    result = subprocess.run(
        [sys.executable, str(BENCH), "--only", "pg-app,mysql-app", "--sizes", "tiny",
         "--rounds", "1", "--database", "liteshift_bench_smoke_all", "--redis-url",
         "redis://127.0.0.1:6379/13", "--install", "no"],
        cwd=REPO, capture_output=True, text=True, timeout=170)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "bench: every output's row count checked" in out, out
    for title in ("### pg-app: 3,355 rows in 8 tables of liteshift_bench_smoke_all_app_tiny",
                  "### mysql-app: 3,355 rows in 8 tables of liteshift_bench_smoke_all_app_tiny"):
        assert title in out, out
    # liteshift's file has every index of the source: 11 written (12 in MariaDB, where a
    # foreign key brings its own), plus the composite and text primary keys' own.
    assert "| liteshift | id | 3 (" in out and "13 (11 written, 1 partial; 2 SQLite's own)" \
        in out, out
    assert "14 (12 written, 0 partial; 2 SQLite's own)" in out, out


def test_a_wrong_row_count_is_caught(tmp_path):
    bench = _load_bench()
    ds = bench.Dataset("pg-mixed", "pg", "unused", "bench_mixed", 5, "pg_mixed", ())

    def writes_four_rows(ds, out, scratch):
        sql = "CREATE TABLE bench_mixed (id INTEGER PRIMARY KEY); " + " ".join(
            f"INSERT INTO bench_mixed VALUES ({i});" for i in range(4))
        return [sys.executable, "-c", "import sqlite3, sys; "
                "sqlite3.connect(sys.argv[1]).executescript(sys.argv[2])", str(out), sql], {}

    tool = bench.Tool("fake", ("pg",), writes_four_rows, lambda: None, lambda: "0")
    run = bench.run_peer(tool, ds, tmp_path, timeout_s=60)
    assert run.error is None and run.seconds is not None and run.rss_mb > 0
    assert run.cpu_s is not None and run.cpu_s >= 0
    assert run.mismatch == "row count 4 in the output, not 5"
    lines, ok = bench.dataset_report(ds, ["liteshift", "fake"], {"liteshift": [], "fake": [run]},
                                     {}, 2)
    assert not ok and any("WRONG ROW COUNT" in line for line in lines)
    assert sqlite3.connect(run.extra["output"]).execute(
        "SELECT count(*) FROM bench_mixed").fetchone()[0] == 4


def test_a_missing_table_of_a_whole_database_is_caught(tmp_path):
    bench = _load_bench()
    ds = bench.Dataset("pg-app", "pg", "unused", "issues", 3, "pg_app", (),
                       tables={"issues": 2, "comments": 1})
    out = tmp_path / "out.db"
    sqlite3.connect(out).executescript(
        "CREATE TABLE issues (id INTEGER PRIMARY KEY); INSERT INTO issues VALUES (1), (2);")
    assert "comments: no such table: comments" in bench.count_mismatch(out, ds, "the output")


def test_the_guarantee_switches_still_apply_to_the_worker():
    """ops/bench/guarantees/run.sh applies this patch to a scratch worktree: a change to the
    lines it touches must show here, not when someone reruns the measurement."""
    result = subprocess.run(["git", "apply", "--check", "ops/bench/guarantees/switches.patch"],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
