"""A live PostgreSQL source copies as one moment (worker/jobs/snapshot_holder.py): a writer
keeps adding an account, a ledger line and an audit row per transaction for the whole job,
and the published file still holds one moment of the source. Also after a worker is killed
-9 mid-copy (its tables resume in the same snapshot), and after the snapshot's holder is
killed (the job fails saying why; `retry` copies it again under a new snapshot), and when
no worker is left to finish it (the holder lets the snapshot go after a while). Nothing of
the job is left on the source afterwards: no session, no slot, no lock.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import psycopg
import pytest
from moments import CHUNK_ROWS, SEED, Writer, one_moment, wait_commits

from worker.jobs import control


def make_chain(db: Any) -> None:
    accounts, ledger, audit = SEED
    with db.connect() as conn:
        conn.execute("CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL, "
                     "w smallint NOT NULL DEFAULT 0)")
        conn.execute("CREATE TABLE ledger (id bigserial PRIMARY KEY, account_id bigint NOT "
                     "NULL REFERENCES accounts, amount integer NOT NULL, "
                     "w smallint NOT NULL DEFAULT 0)")
        conn.execute("CREATE TABLE zz_audit (id bigserial PRIMARY KEY, ledger_id bigint NOT "
                     "NULL REFERENCES ledger, note text, w smallint NOT NULL DEFAULT 0)")
        conn.execute(f"INSERT INTO accounts (name) SELECT 'a' || i "
                     f"FROM generate_series(1, {accounts}) i")
        conn.execute(f"INSERT INTO ledger (account_id, amount) SELECT 1 + i % {accounts}, i "
                     f"FROM generate_series(1, {ledger}) i")
        conn.execute(f"INSERT INTO zz_audit (ledger_id, note) SELECT i, 'n' || i "
                     f"FROM generate_series(1, {audit}) i")
        conn.execute("ANALYZE")


def write_one(conn: psycopg.Connection) -> None:
    """One transaction (one statement, autocommit): an account, its ledger line, its audit."""
    conn.execute("""
        WITH a AS (INSERT INTO accounts (name, w) VALUES ('w', 1) RETURNING id),
             l AS (INSERT INTO ledger (account_id, amount, w) SELECT id, 1, 1 FROM a
                   RETURNING id)
        INSERT INTO zz_audit (ledger_id, note, w) SELECT id, 'w', 1 FROM l""")


def leftovers(db: Any, job_id: str) -> list[Any]:
    """What the job still holds on the source: sessions (idle in transaction or not), its
    replication slots, and locks."""
    with psycopg.connect(db.url, autocommit=True) as conn:
        sessions = conn.execute(
            "SELECT pid, application_name, state, backend_type FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE 'liteshift%%'", (db.name,)).fetchall()
        slots = conn.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name "
                             "LIKE %s", (f"liteshift\\_{job_id}%",)).fetchall()
        locks = conn.execute(
            "SELECT l.locktype, l.mode FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE a.datname = %s AND a.application_name LIKE 'liteshift%%'",
            (db.name,)).fetchall()
    return [*sessions, *slots, *locks]


@pytest.fixture
def chain(pg_db: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The three tables; the ledger read by a reader process, the others in the worker."""
    make_chain(pg_db)
    (ledger_bytes,) = pg_db.execute("SELECT pg_total_relation_size('ledger')")[0]
    monkeypatch.setenv("LITESHIFT_READER_PROCESS_BYTES", str(ledger_bytes))
    return pg_db


@pytest.fixture
def writer(chain: Any) -> Any:
    started = Writer(chain.connect, write_one)
    started.start()
    wait_commits(started, 20)
    yield started
    if started.is_alive():
        started.stop()


def _submit(settings: Any, store: Any, send: Any, db: Any, target: str) -> str:
    return control.submit_job(settings, store, send, source=db.url, target=target,
                              options={"chunk_rows": CHUNK_ROWS})


def _rows(store: Any, job_id: str, table: str) -> int:
    return int((store.table(job_id, table) or {}).get("rows_done") or 0)


def test_a_live_source_is_copied_as_one_moment(chain, writer, settings_env, store, send,
                                               worker_proc, wait_for, wait_until):
    # Given two workers and a writer adding to all three tables every few milliseconds
    workers = [worker_proc(), worker_proc()]

    # When a job copies the tables
    job_id = _submit(settings_env, store, send, chain, "moment")
    view = wait_for(store, job_id, ["done", "failed"], timeout=180, workers=workers)
    commits = writer.stop()

    # Then the file is one moment: no orphan, as many writer rows in each table, and the
    # writer went on writing after that moment
    assert view["state"] == "done", view
    counts = one_moment(settings_env.data_dir / "moment.db")
    assert commits > counts["accounts"] > 0, (commits, counts)
    moment = view["snapshot"]
    assert moment["consistent"] is True and moment["method"] == "replication_slot", moment
    assert moment["lsn"] and moment["at"] and moment["id"]
    report = json.loads((settings_env.data_dir / "moment.report.json").read_text())
    assert report["snapshot"]["lsn"] == moment["lsn"] and report["snapshot"]["consistent"]
    # and the job left nothing on the source
    wait_until(lambda: not leftovers(chain, job_id), 15, "the job's sessions to end",
               workers=workers)


def test_a_worker_killed_mid_copy_resumes_in_the_same_moment(chain, writer, settings_env,
                                                             store, send, worker_proc,
                                                             wait_for, wait_until):
    # Given a job under way with one worker
    worker = worker_proc()
    job_id = _submit(settings_env, store, send, chain, "killed")
    wait_until(lambda: _rows(store, job_id, "ledger") >= 3 * CHUNK_ROWS, 120,
               "the ledger's copy to be under way", workers=[worker])
    before = store.job(job_id)["snapshot"]

    # When the worker is killed -9 (its whole process group) and another one starts
    worker.kill()
    os.kill(before["holder_pid"], 0)  # the holder lives on: it has a session of its own
    survivor = worker_proc()
    view = wait_for(store, job_id, ["done", "failed"], timeout=180, workers=[survivor])
    writer.stop()

    # Then the ledger resumed in the same snapshot and the file is one moment
    assert view["state"] == "done", view
    assert view["snapshot"]["id"] == before["id"]
    assert max(t["attempts"] for t in view["tables"]) >= 2
    one_moment(settings_env.data_dir / "killed.db")
    wait_until(lambda: not leftovers(chain, job_id), 15, "the job's sessions to end",
               workers=[survivor])


def test_a_lost_snapshot_fails_the_job_and_retry_takes_a_new_one(chain, writer, settings_env,
                                                                store, send, worker_proc,
                                                                wait_for, wait_until):
    # Given a job under way with one worker
    worker = worker_proc()
    job_id = _submit(settings_env, store, send, chain, "lost")
    wait_until(lambda: _rows(store, job_id, "ledger") >= CHUNK_ROWS, 120,
               "the ledger's copy to be under way", workers=[worker])
    first = store.job(job_id)["snapshot"]

    # When the snapshot's holder is killed -9, and the worker with it (so that the ledger
    # must enter the snapshot again to resume)
    os.kill(first["holder_pid"], signal.SIGKILL)
    worker.kill()
    worker = worker_proc()

    # Then the job fails, saying the snapshot is gone and what to do; nothing is published
    view = wait_for(store, job_id, ["done", "failed"], timeout=120, workers=[worker])
    assert view["state"] == "failed", view
    errors = [t["error"] for t in view["tables"] if t["state"] == "failed"]
    assert errors and all("snapshot of the source is gone" in e and "liteshift retry" in e
                          for e in errors), errors
    assert not (settings_env.data_dir / "lost.db").exists()
    wait_until(lambda: not leftovers(chain, job_id), 15, "the job's sessions to end",
               workers=[worker])

    # When it is retried: every table again, under a new snapshot
    control.retry_job(store, send, job_id)
    view = wait_for(store, job_id, ["done", "failed"], timeout=180, workers=[worker])
    writer.stop()
    assert view["state"] == "done", view
    assert view["snapshot"]["id"] != first["id"]
    one_moment(settings_env.data_dir / "lost.db")
    wait_until(lambda: not leftovers(chain, job_id), 15, "the job's sessions to end",
               workers=[worker])


def test_a_job_left_without_workers_releases_its_snapshot(chain, writer, settings_env, store,
                                                          send, worker_proc, wait_for,
                                                          wait_until, monkeypatch):
    # Given a job under way with its only worker, and snapshots kept 4 s without a worker
    monkeypatch.setenv("LITESHIFT_SNAPSHOT_IDLE_TIMEOUT_S", "4")  # the workers' and holders'
    worker = worker_proc()
    job_id = _submit(settings_env, store, send, chain, "unattended")
    wait_until(lambda: _rows(store, job_id, "ledger") >= CHUNK_ROWS, 120,
               "the ledger's copy to be under way", workers=[worker])
    first = store.job(job_id)["snapshot"]

    # When the worker is killed -9 and none comes back
    worker.kill()
    assert leftovers(chain, job_id), "the holder keeps the snapshot while a worker may return"

    # Then the holder releases the snapshot, and the job fails saying so and what to do
    view = wait_for(store, job_id, ["done", "failed"], timeout=60)
    assert view["state"] == "failed", view
    assert "snapshot of the source was released" in view["error"], view["error"]
    assert f"`liteshift retry {job_id}`" in view["error"], view["error"]
    assert {t["state"] for t in view["tables"]} <= {"verified", "failed"}, view["tables"]
    wait_until(lambda: not leftovers(chain, job_id), 15, "the snapshot's session and slot to go")
    wait_until(lambda: not _running(first["holder_pid"]), 15, "the holder to exit")
    assert not (settings_env.data_dir / "unattended.db").exists()

    # When a worker starts again and the job is retried: under a new snapshot
    worker = worker_proc()
    control.retry_job(store, send, job_id)
    view = wait_for(store, job_id, ["done", "failed"], timeout=180, workers=[worker])
    writer.stop()
    assert view["state"] == "done", view
    assert view["snapshot"]["id"] != first["id"]
    one_moment(settings_env.data_dir / "unattended.db")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_cancelled_job_leaves_nothing_on_the_source(chain, writer, settings_env, store,
                                                       send, worker_proc, wait_until):
    worker = worker_proc()
    job_id = _submit(settings_env, store, send, chain, "cancelled")
    wait_until(lambda: _rows(store, job_id, "ledger") >= CHUNK_ROWS, 120,
               "the ledger's copy to be under way", workers=[worker])
    control.cancel_job(settings_env, store, job_id)
    writer.stop()
    wait_until(lambda: not leftovers(chain, job_id), 15, "the job's sessions to end",
               workers=[worker])


def test_no_snapshot_reads_each_table_at_its_own_moment(chain, settings_env, store, send,
                                                        worker_proc, wait_for):
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=chain.url, target="own",
                                options={"chunk_rows": CHUNK_ROWS, "snapshot": False})
    view = wait_for(store, job_id, ["done", "failed"], timeout=120, workers=[worker])
    assert view["state"] == "done", view
    assert view["snapshot"] == {"consistent": False,
                                "reason": "turned off for this job (--no-snapshot)"}
    report = json.loads((settings_env.data_dir / "own.report.json").read_text())
    assert report["snapshot"]["consistent"] is False


def test_without_a_slot_the_moment_is_an_exported_snapshot(pg_db, monkeypatch):
    """A replication slot waits for every running write transaction to end: past
    SLOT_WAIT_S the holder takes pg_export_snapshot() instead, and says why."""
    from worker.core.errors import SnapshotLost
    from worker.sources.postgres import snapshot as pg_snapshot
    from worker.sources.url import parse_source_url

    monkeypatch.setattr(pg_snapshot, "SLOT_WAIT_S", 0.5)
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    with psycopg.connect(pg_db.url) as busy, psycopg.connect(pg_db.url,
                                                            autocommit=True) as reader:
        busy.execute("INSERT INTO t VALUES (1)")  # a transaction id, not committed
        held = pg_snapshot.take(parse_source_url(pg_db.url), job_id="t", timeout_s=5)
        try:
            assert held.record["method"] == "pg_export_snapshot", held.record
            # waited, or no slot free at all (other jobs on this server hold them)
            assert held.record["slot_unavailable"], held.record
            assert held.record["lsn"] and held.record["at"] and held.alive()
            busy.commit()
            pg_snapshot.enter(reader, held.record)
            assert reader.execute("SELECT count(*) FROM t").fetchone() == (0,)  # the moment
            reader.execute("ROLLBACK")
        finally:
            held.close()
        # the server ends the exporting session a moment after the holder's close
        deadline = time.monotonic() + 10
        with pytest.raises(SnapshotLost, match="snapshot of the source is gone"):
            while time.monotonic() < deadline:
                pg_snapshot.enter(reader, held.record)
                reader.execute("ROLLBACK")
                time.sleep(0.05)
