"""The source connection is cut in the middle of a table (pg_terminate_backend on the copying
backend): the table resumes from its checkpoint after a backoff. A permanent error (a column or
the table dropped) fails that table, once, with a clear message; the other tables go on."""

from __future__ import annotations

import time

from faults.support import (
    assert_exactly_once,
    make_narrow_tables,
    outcome,
    table_states,
)
from worker.jobs import control

TERMINATE_COPY = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE application_name = 'liteshift' AND query LIKE 'COPY%%' AND query LIKE %s
  AND datname = current_database()
"""


def copying(store, job_id: str, table: str, rows: int):
    def check() -> bool:
        state = table_states(store, job_id).get(table) or {}
        return state.get("state") == "copying" and int(state.get("rows_done") or 0) >= rows
    return check


def test_a_cut_connection_resumes_from_the_checkpoint(pg_db, settings_env, store, send,
                                                      worker_proc, wait_for, wait_until):
    # Given a job copying a table
    sizes = {"a_cut": 400_000, "c_ok": 50_000}
    make_narrow_tables(pg_db, sizes)
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="cut",
                                options={"chunk_rows": 4000})
    wait_until(copying(store, job_id, "a_cut", 60_000), 60, "a_cut to be copying")

    # When its backend is terminated in the middle of the COPY
    terminated = pg_db.execute(TERMINATE_COPY, ['%"a_cut"%'])
    assert terminated == [(True,)]

    # Then the table is retried after a backoff, from its checkpoint, and the job finishes
    # with every row once
    view = wait_for(store, job_id, ["done", "failed"], timeout=90, workers=[worker])
    assert view["state"] == "done", outcome(view)
    table = table_states(store, job_id)["a_cut"]
    assert table["attempts"] >= 2
    retrying = [e for e in worker.events("table_retrying") if e.get("table") == "a_cut"]
    assert retrying and "connection failed or was cut" in retrying[0]["error"], worker.tail()
    starts = [e for e in worker.events("table_copying") if e.get("table") == "a_cut"]
    assert starts[0]["resume_after"] is None
    assert starts[1]["rows_done"] >= 60_000 and starts[1]["resume_after"] == [
        starts[1]["rows_done"]]  # resumed after the last committed key, not from zero
    assert_exactly_once(settings_env, store, job_id, "cut", sizes)


def test_a_dropped_column_or_table_fails_that_table_once(pg_db, settings_env, store, send,
                                                         worker_proc, wait_for, wait_until):
    # Given a job of three tables
    sizes = {"b_changed": 400_000, "c_ok": 50_000, "d_dropped": 20_000}
    make_narrow_tables(pg_db, sizes)
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="perm",
                                options={"chunk_rows": 4000})
    wait_until(copying(store, job_id, "b_changed", 60_000), 60, "b_changed to be copying")

    # When, mid-copy, one table loses a column (its COPY cut so the change can go through),
    # and another table is dropped before its turn
    with pg_db.connect() as conn:
        assert conn.execute(TERMINATE_COPY, ['%"b_changed"%']).fetchall() == [(True,)]
        conn.execute('ALTER TABLE b_changed DROP COLUMN s')
        conn.execute('DROP TABLE d_dropped')

    # Then each of those fails with a message that says what changed, and is not retried
    # over and over; the third table is copied and verified; the job fails naming both
    view = wait_for(store, job_id, ["done", "failed"], timeout=90, workers=[worker])
    assert view["state"] == "failed", view
    time.sleep(2)  # long enough for several more backoffs, were it retrying
    tables = table_states(store, job_id)
    assert tables["c_ok"]["state"] == "verified"
    changed, dropped = tables["b_changed"], tables["d_dropped"]
    assert changed["state"] == dropped["state"] == "failed"
    assert "a column does not exist (did the table change?)" in changed["error"]
    assert 'column "s" does not exist' in changed["error"]
    assert "a table does not exist (was it dropped?)" in dropped["error"]
    assert changed["attempts"] == 2  # the cut (retried), then the missing column (not)
    assert dropped["attempts"] == 1
    assert "2 table(s) failed: b_changed, d_dropped" in view["error"]
    assert "liteshift retry" in view["error"]
    assert not (settings_env.data_dir / "perm.db").exists()
