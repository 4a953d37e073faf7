"""Cancel in the middle of a copy: the worker stops within one chunk, the work files are
removed, nothing is published, and no recovery brings the job back."""

from __future__ import annotations

import os
import time

from faults.support import iso, make_narrow_tables, rows_done, table_states
from worker.jobs import control
from worker.state.jobfiles import read_outcome

CHUNK = 4000


def test_cancel_mid_copy_stops_within_one_chunk(pg_db, settings_env, store, send, worker_proc,
                                                wait_until, monkeypatch):
    # Given a worker copying a table in chunks of 4,000 rows (leases of 2 s, so the reaper
    # runs every second and would revive the job if it could)
    monkeypatch.setenv("LITESHIFT_LEASE_TTL_S", "2")
    sizes = {"cx": 900_000, "cy": 50_000}
    make_narrow_tables(pg_db, sizes)
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="cancel",
                                options={"chunk_rows": CHUNK})
    wait_until(lambda: rows_done(store, job_id) >= 80_000, 60, "the copy to be under way")
    tables_dir = settings_env.job_dir(job_id) / "tables"
    assert any(tables_dir.iterdir())

    # When the job is cancelled
    control.cancel_job(settings_env, store, job_id)
    cancelled_at = time.time()  # a 4,000-row chunk takes ~5 ms now: not before the call

    # Then the worker commits at most the chunk it was committing, and then nothing more
    stopped = wait_until(lambda: worker.events("table_stopped"), 10, "the worker to stop")
    assert stopped[0]["reason"] == "job cancelled"
    late = [e for e in worker.events("chunk_committed") if iso(e["timestamp"]) > cancelled_at]
    assert len(late) <= 1, late
    done_then = rows_done(store, job_id)
    time.sleep(3)  # three reaper rounds
    assert rows_done(store, job_id) == done_then

    # and the job stays cancelled, its work files gone (and not re-created), nothing published
    assert store.job_state(job_id).value == "cancelled"
    assert read_outcome(settings_env.job_dir(job_id)) == {"state": "cancelled"}
    assert not tables_dir.exists()
    assert [n for n in os.listdir(settings_env.data_dir) if n.startswith("cancel")] == []
    assert table_states(store, job_id)["cy"]["state"] == "pending"  # never started
    assert not worker.events("stalled_work_requeued")
    assert not [e for e in worker.events("table_copying") if e["table"] == "cy"]
