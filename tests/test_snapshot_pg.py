"""A live PostgreSQL source copies as one moment (worker/jobs/snapshot_holder.py): a writer
keeps adding an account, a ledger line and an audit row per transaction for the whole job,
and the published file still holds one moment of the source. Also after a worker is killed
-9 mid-copy (its tables resume in the same snapshot), and after the snapshot's holder is
killed (the job fails saying why; `retry` copies it again under a new snapshot), and when
no worker is left to finish it (the holder lets the snapshot go after a while). Nothing of
the job is left on the source afterwards: no session, no slot, no lock. The scenarios are
tests/moments.py's, shared with tests/mysqlsrc/test_snapshot_mysql.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import moments
import psycopg
import pytest
from moments import CHUNK_ROWS, SEED

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
    with moments.writing(chain.connect, write_one) as started:
        yield started


@pytest.fixture
def run(request, chain, writer) -> moments.Scenario:
    return moments.Scenario.for_test(request, chain, writer,
                                     leftovers=lambda job_id: leftovers(chain, job_id))


def test_a_live_source_is_copied_as_one_moment(run):
    view = moments.copied_as_one_moment(run)

    moment = view["snapshot"]
    assert moment["method"] == "replication_slot", moment
    assert moment["lsn"] and moment["at"] and moment["id"]
    report = json.loads((run.settings.data_dir / "moment.report.json").read_text())
    assert report["snapshot"]["lsn"] == moment["lsn"] and report["snapshot"]["consistent"]


def test_a_worker_killed_mid_copy_resumes_in_the_same_moment(run):
    before, view = moments.killed_worker_resumes(run)

    assert view["snapshot"]["id"] == before["id"]


def test_a_lost_snapshot_fails_the_job_and_retry_takes_a_new_one(run):
    moments.lost_snapshot_then_retry(run, says="snapshot of the source is gone")


def test_a_job_left_without_workers_releases_its_snapshot(run, monkeypatch):
    moments.left_without_workers_then_retry(run, monkeypatch)


def test_a_cancelled_job_leaves_nothing_on_the_source(run):
    moments.cancelled_leaves_nothing(run)


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
