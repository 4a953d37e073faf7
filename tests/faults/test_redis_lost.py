"""Redis restarted with its data gone in the middle of a job (DESIGN 2.2: the work files and
the manifest on the volume are the truth; Redis only mirrors them).

Each test runs its own redis-server (no persistence) so it can kill -9 it and start it again
empty without disturbing anybody else's Redis.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from celery import Celery

from faults.support import (
    LITESHIFT,
    REPO,
    assert_exactly_once,
    make_narrow_tables,
    outcome,
    rows_done,
)
from worker.core.config import Settings
from worker.jobs import control
from worker.state.store import StateStore

SIZES = {"ra": 400_000, "rb": 250_000, "rc": 150_000}


@pytest.fixture
def on_private_redis(private_redis, settings_env, monkeypatch):
    """This test's settings, store and task sender, on its own redis-server."""
    monkeypatch.setenv("LITESHIFT_REDIS_URL", private_redis.url)
    monkeypatch.setenv("LITESHIFT_LEASE_TTL_S", "2")
    settings = Settings()
    store = StateStore.from_settings(settings)
    app = Celery("liteshift-tests", broker=settings.redis_url)

    def send(name, *args):
        app.send_task(name, args=list(args), queue=settings.queue)

    yield settings, store, send
    app.close()
    store.redis.close()


def lose_redis(private_redis, store: StateStore) -> None:
    """kill -9 and start again: nothing survives (a sentinel key proves it)."""
    store.redis.set("sentinel", "1")
    private_redis.kill()
    private_redis.start()
    assert store.redis.get("sentinel") is None


def test_the_reaper_rebuilds_the_job_from_the_volume(pg_db, on_private_redis, private_redis,
                                                     worker_proc, wait_for, wait_until):
    # Given a job part-way through, one table's copy in progress
    settings, store, send = on_private_redis
    make_narrow_tables(pg_db, SIZES)
    worker = worker_proc()
    job_id = control.submit_job(settings, store, send, source=pg_db.url, target="lost",
                                options={"chunk_rows": 4000})
    wait_until(lambda: rows_done(store, job_id) >= 250_000, 60, "the copy to be under way")

    # When Redis is killed and comes back empty: the job, its tables, the queue, the leases
    # and the fencing counter are all gone
    lose_redis(private_redis, store)

    # Then the worker's reaper finds the unfinished job on the volume, rebuilds it from the
    # manifest and the work files' checkpoints, and finishes it
    wait_until(lambda: store.job(job_id), 30, "the reaper to rebuild the job")
    view = wait_for(store, job_id, ["done", "failed"], timeout=90, workers=[worker])
    assert view["state"] == "done", outcome(view)
    assert worker.events("job_rebuilt_from_volume")
    assert_progress_right(view)
    assert_exactly_once(settings, store, job_id, "lost", SIZES)


def test_resume_through_the_api_after_redis_and_the_worker_died(
        pg_db, on_private_redis, private_redis, worker_proc, wait_for, wait_until,
        api_process):
    # Given a job part-way through
    settings, store, send = on_private_redis
    make_narrow_tables(pg_db, SIZES)
    worker = worker_proc()
    job_id = control.submit_job(settings, store, send, source=pg_db.url, target="resumed",
                                options={"chunk_rows": 4000})
    wait_until(lambda: rows_done(store, job_id) >= 250_000, 60, "the copy to be under way")

    # When the worker and Redis both die, and Redis comes back empty
    worker.kill()
    lose_redis(private_redis, store)
    assert store.job(job_id) is None
    api = api_process()
    with api.client() as http:
        missing = http.get(f"/jobs/{job_id}")
        assert missing.status_code == 404
        assert f"`liteshift resume {job_id}` rebuilds it" in missing.json()["error"]

        # and someone runs `liteshift resume JOB`, then starts a worker again
        resumed = subprocess.run([*LITESHIFT, "resume", job_id], cwd=REPO, text=True,
                                 capture_output=True, timeout=30,
                                 env={**os.environ, "LITESHIFT_API_URL": api.url})
        assert resumed.returncode == 0, resumed.stderr
        assert f"job {job_id}: resuming" in resumed.stderr
        worker = worker_proc()

        # Then the job is rebuilt from the volume and finishes, and what the API shows
        # afterwards is right
        wait_until(lambda: store.job(job_id), 30, "the job to be rebuilt")
        view = wait_for(store, job_id, ["done", "failed"], timeout=90, workers=[worker])
        assert view["state"] == "done", outcome(view)
        shown = http.get(f"/jobs/{job_id}").json()
    assert_progress_right(shown)
    assert_exactly_once(settings, store, job_id, "resumed", SIZES)


def assert_progress_right(view: dict) -> None:
    assert view["state"] == "done"
    tables = {t["name"]: t for t in view["tables"]}
    assert set(tables) == set(SIZES)
    for name, rows in SIZES.items():
        assert tables[name]["state"] == "verified", tables[name]
        assert tables[name]["rows_done"] == rows, tables[name]
        assert tables[name]["rows_estimated"] == rows, tables[name]

