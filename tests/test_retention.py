"""A finished job's Redis keys expire after LITESHIFT_JOB_RETENTION_S; the volume keeps its
record, `resume` restores it, a job that runs again keeps its keys, and the jobs index
forgets expired jobs. Real Redis, a real worker, a retention of a few seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from worker.core.config import Settings
from worker.jobs import control
from worker.state.store import JobState, StateStore, TableState

RETENTION_S = 3


@pytest.fixture
def short(settings_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[StateStore]:
    """A store (and, through the environment, workers) with a retention of RETENTION_S."""
    monkeypatch.setenv("LITESHIFT_JOB_RETENTION_S", str(RETENTION_S))
    store = StateStore.from_settings(Settings())
    yield store
    store.redis.close()


def job_keys(store: StateStore, job_id: str) -> dict[str, int]:
    """Every key of the job (its leases too), with its TTL in seconds (-1: none)."""
    keys = [*store.redis.scan_iter(match=f"{store.keys.prefix}:*{job_id}*", count=1000)]
    return {key: store.redis.ttl(key) for key in keys}


def test_a_finished_jobs_keys_expire_and_resume_restores_it(short, settings_env, pg_db, send,
                                                             worker_proc, wait_for, wait_until):
    # Given a job copied to the end by a real worker
    pg_db.execute("CREATE TABLE kept (id int PRIMARY KEY, v text)")
    pg_db.execute("INSERT INTO kept SELECT i, 'v' || i FROM generate_series(1, 50) i")
    worker = worker_proc()
    settings = Settings()
    job_id = control.submit_job(settings, short, send, source=pg_db.url, target="kept_rt")
    assert wait_for(short, job_id, ["done", "failed"], workers=[worker])["state"] == "done"

    # Then every one of its keys expires within the retention
    keys = job_keys(short, job_id)
    assert short.keys.table(job_id, "kept") in keys and short.keys.events(job_id) in keys
    assert {k: t for k, t in keys.items() if not 0 < t <= RETENTION_S} == {}

    # And once they expired, the jobs index forgets the job (the worker's reaper prunes it)
    wait_until(lambda: not job_keys(short, job_id), RETENTION_S + 5, "the keys to expire")
    wait_until(lambda: short.redis.zscore(short.keys.jobs(), job_id) is None, 10,
               "the index to forget the job", workers=[worker])
    assert control.list_jobs(short) == []

    # And the API says why it does not know the job and how to bring it back, no path in it
    with TestClient(create_app(settings, store=short, send=send,
                               probe=lambda *a: [])) as api:
        answer = api.get(f"/jobs/{job_id}")
        assert answer.status_code == 404
        detail = answer.json()["error"]
        assert "kept 3 s (LITESHIFT_JOB_RETENTION_S)" in detail
        assert f"`liteshift resume {job_id}`" in detail
        assert str(settings.data_dir) not in detail

        # When it is resumed
        assert api.post(f"/jobs/{job_id}/resume").status_code == 202
        wait_until(lambda: short.job_state(job_id) == JobState.DONE, 20, "the restore",
                   workers=[worker])

        # Then it answers again, as done, and expires again
        assert api.get(f"/jobs/{job_id}").json()["state"] == "done"
        assert 0 < short.redis.ttl(short.keys.job(job_id)) <= RETENTION_S


def test_a_failed_job_expires_is_not_revived_and_a_retry_keeps_its_keys(
        short, settings_env, pg_db, send, worker_proc, wait_for, wait_until):
    # Given a job that fails while it is planned (its schema does not exist)
    worker = worker_proc()
    settings = Settings()
    job_id = control.submit_job(settings, short, send, source=pg_db.url, target="gone_rt",
                                schema="no_such_schema")
    assert wait_for(short, job_id, ["done", "failed"], workers=[worker])["state"] == "failed"
    assert {k: t for k, t in job_keys(short, job_id).items() if not 0 < t <= RETENTION_S} == {}

    # When a retry runs it again, its keys stay while it runs
    control.retry_job(short, send, job_id)
    assert short.redis.ttl(short.keys.job(job_id)) == -1
    assert wait_for(short, job_id, ["failed"], workers=[worker])["state"] == "failed"

    # And when they expired, the worker does not take the failed job for one Redis lost (it
    # would plan it again): it stays forgotten until asked
    wait_until(lambda: not job_keys(short, job_id), RETENTION_S + 5, "the keys to expire")
    time.sleep(2 * settings.lease_ttl_s)  # the reaper looked a few times
    assert short.job(job_id) is None
    assert (settings.job_dir(job_id) / "job.json").exists()


def test_a_job_moved_back_to_running_loses_its_expiry(short):
    # Given a failed job with a table, its keys bound to expire
    job_id = f"rt{time.time_ns()}"
    short.create_job(job_id, {"target": "rt_target", "tables": []})
    short.claim_target("rt_target", job_id)
    assert short.set_job_state(job_id, JobState.COPYING, tables=["a"])
    short.update_table(job_id, "a", name="a", state="pending")
    short.set_table_state(job_id, "a", TableState.FAILED)
    assert short.set_job_state(job_id, JobState.FAILED, error="a failed")
    assert 0 < short.redis.ttl(short.keys.table(job_id, "a")) <= RETENTION_S
    assert 0 < short.redis.ttl(short.keys.target("rt_target")) <= RETENTION_S

    # When it runs again (a retry)
    assert short.set_job_state(job_id, JobState.COPYING, expect=(JobState.FAILED,))

    # Then none of its keys expires, the target's claim neither
    keys = job_keys(short, job_id)
    assert keys and set(keys.values()) == {-1}, keys
    assert short.redis.ttl(short.keys.target("rt_target")) == -1
