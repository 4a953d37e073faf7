"""`liteshift watch` against a real job: on a terminal (a pseudo-terminal driven by pexpect)
the whole job's line and finalize's steps; off one, a line per change, never the table each
tick. GET /jobs/{id} carries finalize's steps, for scripts."""

from __future__ import annotations

import os
import re
import subprocess

import pexpect
from faults.support import LITESHIFT, REPO, make_narrow_tables

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def submit_indexed_job(pg_db, http, target: str) -> str:
    make_narrow_tables(pg_db, {"orders": 20_000, "items": 5000})
    pg_db.execute("CREATE INDEX orders_n ON orders (n); CREATE INDEX items_s ON items (s)")
    answer = http.post("/jobs", json={"source": pg_db.url, "target": target,
                                      "options": {"chunk_rows": 2000}})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


def test_watch_on_a_terminal_shows_the_whole_job_and_finalize_steps(
        pg_db, settings_env, worker_proc, api_process):
    # Given a worker, the API and a job of two tables with an index each
    worker_proc()
    api = api_process()
    with api.client() as http:
        job_id = submit_indexed_job(pg_db, http, "watched")

        # When `liteshift watch` follows it in a pseudo-terminal
        child = pexpect.spawn(LITESHIFT[0], [*LITESHIFT[1:], "watch", job_id, "--interval",
                                             "0.2"], cwd=str(REPO), timeout=90,
                              env={**os.environ, "LITESHIFT_API_URL": api.url,
                                   "TERM": "xterm-256color"},
                              dimensions=(50, 200), encoding="utf-8")
        child.expect(pexpect.EOF)
        child.close()
        screen = ANSI.sub("", child.before)

        # Then it ends with 0, having shown the whole job's rows and each finalize step
        assert child.exitstatus == 0, screen[-3000:]
        assert re.search(r"25,000/25,000 rows 100%, 2/2 tables", screen), screen[-3000:]
        for step in ("merging tables", "building indexes", "checks", "publishing"):
            assert step in screen, (step, screen[-3000:])
        assert "2/2" in screen and "orders" in screen and "items" in screen

        # And the API gives scripts the same steps
        finalize = http.get(f"/jobs/{job_id}").json()["finalize"]
    assert finalize["step"] is None
    steps = {s["step"]: s for s in finalize["steps"]}
    assert steps["merging"]["total"] == 2 and steps["indexing"]["total"] == 2
    assert {"objects", "checking", "publishing"} <= set(steps)
    assert all(s["seconds"] >= 0 for s in finalize["steps"])


def test_watch_off_a_terminal_writes_a_line_per_change(
        pg_db, settings_env, worker_proc, api_process):
    # Given a job running
    worker_proc()
    api = api_process()
    with api.client() as http:
        job_id = submit_indexed_job(pg_db, http, "logged")

    # When watch writes to a pipe, refreshing every 0.1 s
    done = subprocess.run([*LITESHIFT, "watch", job_id, "--interval", "0.1"], cwd=REPO,
                          env={**os.environ, "LITESHIFT_API_URL": api.url},
                          capture_output=True, text=True, timeout=90)

    # Then each line says what changed, once: the table states, the job's, finalize's steps
    assert done.returncode == 0, done.stderr
    lines = [line.split(" ", 1)[1] for line in done.stdout.splitlines()]
    assert len(lines) == len(set(lines)), done.stdout
    assert any(line.startswith(f"job {job_id} done: 25,000/25,000 rows 100%") for line in lines)
    assert "table orders verified: 20,000/20,000 rows" in lines
    assert any(line.startswith("finalize took merging tables") for line in lines), lines
    assert not any("TABLE" in line for line in lines)  # no table header redrawn
    assert len(lines) < 40, done.stdout
