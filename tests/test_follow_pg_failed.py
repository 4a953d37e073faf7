"""A follow job that fails during its copy drops its replication slot itself: a permanent
slot holds the source's WAL until it is dropped, and the reaper's sweep that also drops it
runs only while some worker runs. Once when a table fails (the workers are stopped right
after the job is reported failed), once when the snapshot's holder fails a job left without
workers (none runs at all). Real PostgreSQL, Redis and workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from moments import CHUNK_ROWS
from test_follow_pg import follow_leftovers
from test_snapshot_pg import make_chain

from worker.jobs import control

#: Well under the reaper's sweep period (worker/follow/sweep.py: 15 s).
DROPPED_WITHIN_S = 5


@pytest.fixture
def source_db(pg_db: Any) -> Iterator[Any]:
    """The test's database, rid of any slot a failing run left so that it can be dropped."""
    yield pg_db
    with psycopg.connect(pg_db.url, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE database = current_database() AND NOT active")


def slots(db: Any, job_id: str) -> list[str]:
    with psycopg.connect(db.url, autocommit=True) as conn:
        return [name for (name,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s",
            (f"liteshift\\_{job_id}\\_%",)).fetchall()]


@pytest.fixture
def owner_without_select(source_db: Any) -> Iterator[str]:
    """The URL of a role that may follow tables `a`, `b` and `c` (it owns them, and has
    REPLICATION, and CREATE for the publication) but may not read `c`: its copy fails for
    good (permission denied), the other tables copy."""
    pg_db = source_db
    role = f"ls_follow_{uuid.uuid4().hex[:8]}"
    pg_db.execute(f"""
        CREATE ROLE {role} LOGIN REPLICATION;
        GRANT CREATE ON DATABASE "{pg_db.name}" TO {role};
        CREATE TABLE a (id bigint PRIMARY KEY, label text);
        CREATE TABLE b (id bigint PRIMARY KEY, note text);
        CREATE TABLE c (id bigint PRIMARY KEY, amount numeric(10,2));
        INSERT INTO a SELECT i, 'a' || i FROM generate_series(1, 50) i;
        INSERT INTO b SELECT i, 'b' || i FROM generate_series(1, 50) i;
        INSERT INTO c SELECT i, i * 1.25 FROM generate_series(1, 30) i;
        ALTER TABLE a OWNER TO {role};
        ALTER TABLE b OWNER TO {role};
        ALTER TABLE c OWNER TO {role};
        REVOKE SELECT ON c FROM {role};""")
    yield f"postgresql://{role}@127.0.0.1:5432/{pg_db.name}"
    pg_db.execute(f"DROP OWNED BY {role}")
    pg_db.execute(f"DROP ROLE {role}")


def test_a_table_failing_drops_the_slot_though_the_workers_stop(
        source_db, owner_without_select, settings_env, store, send, worker_proc, wait_for,
        wait_until):
    # Given a follow job whose table `c` cannot be read
    workers = [worker_proc()]
    job_id = control.submit_job(settings_env, store, send, source=owner_without_select,
                                target="failing", options={"follow": True})

    # When it fails, and every worker stops right then (no reaper runs any more)
    view = wait_for(store, job_id, ["failed", "following"], timeout=120, workers=workers)
    assert view["state"] == "failed", view
    assert "permission denied" in next(t["error"] for t in view["tables"]
                                       if t["name"] == "c"), view["tables"]
    for worker in workers:
        worker.stop()

    # Then neither its slot nor its publication is left on the source
    wait_until(lambda: not follow_leftovers(source_db, job_id), DROPPED_WITHIN_S,
               "the failed job's slot and publication to be dropped", workers=workers)
    assert workers[0].events("follow_slots_dropped"), "the failure path dropped them"


def test_a_job_left_without_workers_drops_its_slot_with_its_snapshot(
        source_db, settings_env, store, send, worker_proc, wait_for, wait_until, monkeypatch):
    # Given a follow job under way with its only worker, and snapshots kept 4 s without one
    monkeypatch.setenv("LITESHIFT_SNAPSHOT_IDLE_TIMEOUT_S", "4")  # the workers' and holders'
    make_chain(source_db)
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=source_db.url,
                                target="unattended", options={"chunk_rows": CHUNK_ROWS,
                                                              "follow": True})
    wait_until(lambda: int((store.table(job_id, "ledger") or {}).get("rows_done") or 0)
               >= CHUNK_ROWS, 120, "the ledger's copy to be under way", workers=[worker])
    assert store.job(job_id)["snapshot"]["slot_temporary"] is False

    # When the worker is killed -9 and none comes back
    worker.kill()

    # Then the holder fails the job, and with its snapshot drops the follow's slot
    view = wait_for(store, job_id, ["failed"], timeout=60)
    assert "snapshot of the source was released" in view["error"], view["error"]
    wait_until(lambda: not slots(source_db, job_id), DROPPED_WITHIN_S,
               "the holder to drop the job's slot")
