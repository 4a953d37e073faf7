"""What a kill -9 costs: a resumed table re-reads no committed row, and progress seen from
outside lags the truth by at most one chunk (issue 6's resume target; ops/bench/TARGETS.md
measures the same on a larger table).

The work file is read directly between the kill and the restart, so the checkpoint the
resume must start from is known without trusting liteshift's own account of it.
"""

from __future__ import annotations

import json
import sqlite3

from faults.support import assert_exactly_once, make_narrow_tables, outcome, rows_done
from worker.jobs import control

ROWS = 200_000
CHUNK = 5_000
SIZES = {"halfway": ROWS}


def _work_file_state(settings, job_id: str) -> tuple[int, list[int], int, int]:
    """The killed worker's work file: checkpoint rows and key, and the rows really in it."""
    (path,) = (settings.job_dir(job_id) / "tables").glob("*.db")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows, last_key = db.execute("SELECT rows, last_key FROM _liteshift_checkpoint").fetchone()
        count, top = db.execute('SELECT count(*), max(id) FROM "halfway"').fetchone()
    finally:
        db.close()
    return rows, json.loads(last_key), count, top


def test_a_table_killed_halfway_resumes_after_its_checkpoint(pg_db, settings_env, store, send,
                                                             worker_proc, wait_for,
                                                             wait_until, monkeypatch):
    # Given a table being copied in chunks of 5,000 rows, its worker killed with SIGKILL
    # once about half of it is reported done
    monkeypatch.setenv("LITESHIFT_LEASE_TTL_S", "2")
    make_narrow_tables(pg_db, SIZES)
    first = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="halfway",
                                options={"chunk_rows": CHUNK})
    wait_until(lambda: rows_done(store, job_id) >= ROWS // 2, 120, "half the table copied",
               interval=0.005, workers=[first])
    first.kill()
    reported = max(e["rows_done"] for e in first.events("chunk_committed"))
    checkpoint_rows, checkpoint_key, rows_in_file, top_key = _work_file_state(settings_env,
                                                                              job_id)

    # Then the work file holds exactly the rows its checkpoint names (keys 1..n), and the
    # last progress the worker reported is behind it by at most the chunk it had committed
    # without having reported it yet
    assert rows_in_file == checkpoint_rows and checkpoint_key == [top_key], (
        rows_in_file, checkpoint_rows, checkpoint_key, top_key)
    assert checkpoint_rows < ROWS, "the kill came after the last chunk: nothing to resume"
    assert 0 <= checkpoint_rows - reported <= CHUNK, (checkpoint_rows, reported)

    # When a new worker takes the table over
    second = worker_proc()
    view = wait_for(store, job_id, ["done", "failed"], timeout=180, workers=[second])
    assert view["state"] == "done", outcome(view)

    # Then it started from that checkpoint, and the source streamed it exactly the rows that
    # remained: a row at or below the checkpoint's key would have been counted twice here
    # (or broken the primary key), so no committed row was read again
    starts = [e for e in second.events("table_copying") if e["table"] == "halfway"]
    assert starts and starts[0]["rows_done"] == checkpoint_rows, starts
    assert starts[0]["resume_after"] == checkpoint_key, starts
    resumed = [e for e in second.events("chunk_committed") if e["table"] == "halfway"]
    assert sum(e["chunk_rows"] for e in resumed) == ROWS - checkpoint_rows, resumed[:3]
    assert resumed[0]["rows_done"] == checkpoint_rows + resumed[0]["chunk_rows"]
    assert_exactly_once(settings_env, store, job_id, "halfway", SIZES)
