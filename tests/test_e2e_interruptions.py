"""A worker killed with SIGKILL mid-copy, and a job cancelled mid-copy, with real workers."""

from __future__ import annotations

import json
import sqlite3

from worker.core.checksum import as_hex, rows_checksum
from worker.jobs import control

ROWS = 400_000
CHUNK_ROWS = 4_000  # 100 chunks: the copy runs long enough to be caught in the middle


def make_narrow_table(pg_db) -> None:
    with pg_db.connect() as conn:
        conn.execute(f"""
            CREATE TABLE narrow AS
            SELECT i::bigint AS id, (i * 13) % 1000 AS n, md5(i::text) AS s
            FROM generate_series(1, {ROWS}) AS i;
            ALTER TABLE narrow ADD PRIMARY KEY (id);
            ANALYZE narrow;""")


def wait_for_copy_under_way(store, job_id, wait_until, worker) -> None:
    def rows_done() -> int:
        return (store.table(job_id, "narrow") or {}).get("rows_done") or 0

    wait_until(lambda: 0 < rows_done() < ROWS, timeout=60, what="the copy to be under way",
               interval=0.01, workers=[worker])


def source_checksum(pg_db) -> str:
    """The checksum a clean copy has: bigint, int and text arrive in SQLite as int, int and
    str, so the source's rows hash the same as the copied ones."""
    with pg_db.connect() as conn:
        rows = conn.execute("SELECT id, n, s FROM narrow").fetchall()
    return as_hex(rows_checksum(rows))


def test_kill_9_mid_copy_resumes_on_another_worker_without_loss_or_duplicates(
        pg_db, settings_env, store, send, worker_proc, wait_for, wait_until):
    # Given a job copying a 400,000-row table on worker A
    make_narrow_table(pg_db)
    worker_a = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="narrow",
                                options={"chunk_rows": CHUNK_ROWS})
    wait_for_copy_under_way(store, job_id, wait_until, worker_a)

    # When worker A is killed with SIGKILL, and worker B starts
    worker_a.kill()
    killed_at = store.table(job_id, "narrow")
    assert killed_at["state"] == "copying"
    assert 0 < killed_at["rows_done"] < ROWS
    worker_b = worker_proc()
    view = wait_for(store, job_id, ["done", "failed"], timeout=120, workers=[worker_a, worker_b])

    # Then B took the table over once the lease expired, resumed from the last committed
    # chunk, and the result holds every source row exactly once
    assert view["state"] == "done", view
    assert not worker_a.events("table_verified")
    assert worker_b.events("stalled_work_requeued")
    (resumed,) = worker_b.events("table_copying")
    assert resumed["rows_done"] >= killed_at["rows_done"]
    assert resumed["resume_after"] == [resumed["rows_done"]]  # ids are 1..N: last key = count
    assert view["tables"][0]["attempts"] == 2

    db = sqlite3.connect(settings_env.data_dir / "narrow.db")
    try:
        count, distinct = db.execute("SELECT count(*), count(DISTINCT id) FROM narrow").fetchone()
    finally:
        db.close()
    assert count == distinct == ROWS
    report = json.loads((settings_env.data_dir / "narrow.report.json").read_text())
    assert report["tables"][0]["checksum"] == view["tables"][0]["checksum"]
    assert report["tables"][0]["checksum"] == source_checksum(pg_db)


def test_cancel_mid_copy_stops_the_copy_and_publishes_nothing(
        pg_db, settings_env, store, send, worker_proc, wait_for, wait_until):
    # Given a job copying a 400,000-row table
    make_narrow_table(pg_db)
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="narrow",
                                options={"chunk_rows": CHUNK_ROWS})
    wait_for_copy_under_way(store, job_id, wait_until, worker)

    # When it is cancelled
    control.cancel_job(settings_env, store, job_id)

    # Then the worker stops the table at its next chunk, the job stays cancelled, and no
    # file is published
    stopped = wait_until(lambda: worker.events("table_stopped"), timeout=30,
                         what="the worker to stop the table", workers=[worker])
    assert stopped[0]["reason"] == "job cancelled"
    view = wait_for(store, job_id, ["cancelled"], timeout=1, workers=[worker])
    assert view["error"] == "cancelled by request"
    assert view["tables"][0]["rows_done"] < ROWS
    assert not (settings_env.data_dir / "narrow.db").exists()
    assert not (settings_env.data_dir / "narrow.report.json").exists()
    assert not worker.events("job_published")
    assert not (settings_env.job_dir(job_id) / "tables").exists()  # work files removed
    assert not store.redis.exists(store.keys.lease(job_id, "table:narrow"))
