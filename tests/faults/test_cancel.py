"""Cancel in the middle of a copy: the worker stops within one chunk, the work files are
removed, nothing is published, and no recovery brings the job back."""

from __future__ import annotations

import os
import signal
import time

import pytest

from faults.support import iso, make_narrow_tables, rows_done, table_states, tree
from worker.core.errors import InputError, TargetConflict
from worker.jobs import control
from worker.state.jobfiles import read_outcome
from worker.state.store import JobState

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


# -- cancel is final, in every state -----------------------------------------------------

def _job_events(store, job_id: str) -> list[str]:
    return [f["state"] for _, f in store.events(job_id, count=10_000)
            if f["event"] == "job_state"]


def _no_work_files(settings, job_id: str) -> list[str]:
    """What a cancelled job must not leave: work files and finalize's partial file."""
    job_dir = settings.job_dir(job_id)
    return [n for n in tree(job_dir) if n.startswith("tables/") or ".db.partial" in n]


def _second_job(settings, store, send, url: str, target: str, *, accepted: bool) -> None:
    """A job for the same target: refused while the first can still write it, accepted
    (and cancelled at once, so it writes nothing either) once the first cannot."""
    if not accepted:
        with pytest.raises(TargetConflict, match="is already writing target"):
            control.submit_job(settings, store, send, source=url, target=target)
        return
    second = control.submit_job(settings, store, send, source=url, target=target)
    control.cancel_job(settings, store, second)


def _assert_cancelled_and_clean(settings, store, job_id: str, target: str) -> None:
    assert store.job_state(job_id).value == "cancelled"
    assert read_outcome(settings.job_dir(job_id)) == {"state": "cancelled"}
    assert _no_work_files(settings, job_id) == []
    assert [n for n in os.listdir(settings.data_dir) if n.startswith(target)] == []


def test_cancel_while_queued_stops_the_plan_before_it_starts(pg_db, settings_env, store, send,
                                                             worker_proc, wait_until):
    # Given a job queued while no worker runs
    make_narrow_tables(pg_db, {"q1": 100})
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="cq")
    _second_job(settings_env, store, send, pg_db.url, "cq", accepted=False)

    # When it is cancelled, and then a worker starts
    control.cancel_job(settings_env, store, job_id)
    _second_job(settings_env, store, send, pg_db.url, "cq", accepted=True)
    worker = worker_proc()

    # Then both plans are skipped: nothing planned, copied or published
    wait_until(lambda: len(worker.events("plan_skipped")) == 2, 30, "both plans to be skipped")
    assert _job_events(store, job_id)[-1] == "cancelled"
    assert "planning" not in _job_events(store, job_id)
    assert not worker.events("job_planning")
    _assert_cancelled_and_clean(settings_env, store, job_id, "cq")


MANY_TABLES = 320


def test_cancel_mid_plan_of_many_tables_is_final(pg_db, settings_env, store, send, worker_proc,
                                                 wait_until):
    # Given a source of 320 tables (planning takes seconds) and a worker planning it
    with pg_db.connect() as conn:
        for i in range(MANY_TABLES):
            conn.execute(f"CREATE TABLE t{i:04d} (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t0000 SELECT i, 'v' || i FROM generate_series(1, 500) i")
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="cp",
                                replace=True)
    _second_job(settings_env, store, send, pg_db.url, "cp", accepted=False)
    worker = worker_proc()
    wait_until(lambda: store.job_state(job_id).value == "planning", 60, "planning to start",
               interval=0.005)

    # When it is cancelled mid-plan
    control.cancel_job(settings_env, store, job_id)

    # Then the target is free at once (no task of the job can publish any more)
    _second_job(settings_env, store, send, pg_db.url, "cp", accepted=True)
    # and the plan in flight stops instead of moving the job on: no table is copied
    stopped = wait_until(lambda: worker.events("plan_stopped"), 120, "the plan to stop",
                         workers=[worker])
    assert stopped[0]["job_id"] == job_id
    events = _job_events(store, job_id)  # (the reaper may mark a quiet queued job again)
    assert events[-2:] == ["planning", "cancelled"] and "copying" not in events, events
    time.sleep(1)  # anything the plan had queued would start now
    assert not worker.events("table_copying") and not worker.events("job_planned")
    _assert_cancelled_and_clean(settings_env, store, job_id, "cp")


def test_cancel_while_finalizing_publishes_nothing(pg_db, settings_env, store, send,
                                                   worker_proc, wait_until):
    # Given a job whose finalize is building its file (the worker frozen right there)
    sizes = {"fa": 300_000, "fb": 1000}
    make_narrow_tables(pg_db, sizes)
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="cf",
                                replace=True)
    worker = worker_proc()
    wait_until(lambda: store.job_state(job_id).value in ("finalizing", "done"), 120,
               "finalize to start", interval=0.002, workers=[worker])
    os.killpg(worker.proc.pid, signal.SIGSTOP)
    try:
        assert store.job_state(job_id).value == "finalizing"
        _second_job(settings_env, store, send, pg_db.url, "cf", accepted=False)
        # When the job is cancelled
        control.cancel_job(settings_env, store, job_id)
    finally:
        os.killpg(worker.proc.pid, signal.SIGCONT)

    # Then the target is free, finalize stops before publishing and removes its files
    _second_job(settings_env, store, send, pg_db.url, "cf", accepted=True)
    # (stopped by the look before publishing, or by its files vanishing under the build)
    wait_until(lambda: worker.events("finalize_stopped") or worker.events("job_stopped"), 60,
               "finalize to stop", workers=[worker])
    time.sleep(0.5)
    assert not worker.events("job_published")
    assert "done" not in _job_events(store, job_id)
    _assert_cancelled_and_clean(settings_env, store, job_id, "cf")


def test_a_cancelled_job_never_moves_and_publishing_refuses_a_cancel(settings_env, store):
    # Given a cancelled job, and another one whose finalize began publishing
    store.create_job("gone1", {"target": "g1", "tables": []})
    store.create_job("pub1", {"target": "p1", "tables": []})
    control.cancel_job(settings_env, store, "gone1")
    assert store.set_job_state("pub1", JobState.FINALIZING)
    assert store.begin_publishing("pub1")

    # Then no move takes the cancelled job out of `cancelled`, and a publish cannot start
    for state in JobState:
        assert not store.set_job_state("gone1", state)
    assert not store.begin_publishing("gone1")
    assert store.job_state("gone1") == JobState.CANCELLED
    # and the job that is publishing cannot be cancelled any more (but can end)
    with pytest.raises(InputError, match="too late to cancel"):
        control.cancel_job(settings_env, store, "pub1")
    assert store.set_job_state("pub1", JobState.DONE, expect=(JobState.FINALIZING,))
    with pytest.raises(InputError, match="already done"):
        control.cancel_job(settings_env, store, "pub1")
