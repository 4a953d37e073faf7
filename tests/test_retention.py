"""A finished job's Redis keys expire after LITESHIFT_JOB_RETENTION_S; the volume keeps its
record, `resume` restores it, a job that runs again keeps its keys, and the jobs index
forgets expired jobs. Real Redis, a real worker, a retention of a few seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import commands as cli
from worker.core.config import Settings
from worker.core.errors import InputError
from worker.jobs import control
from worker.state import recorded
from worker.state.pages import TableQuery
from worker.state.store import JobState, StateStore, TableState

RETENTION_S = 3
PASSWORD = "Kept-Secret-77"


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
    ttls = {key: store.redis.ttl(key) for key in keys}
    return {key: ttl for key, ttl in ttls.items() if ttl != -2}  # -2: gone since the scan


def test_a_finished_jobs_keys_expire_and_resume_restores_it(short, settings_env, pg_db, send,
                                                             worker_proc, wait_for, wait_until,
                                                             capsys):
    # Given a job copied to the end by a real worker, from a URL with a password
    pg_db.execute("CREATE TABLE kept (id int PRIMARY KEY, v text)")
    pg_db.execute("INSERT INTO kept SELECT i, 'v' || i FROM generate_series(1, 50) i")
    pg_db.execute("CREATE TABLE other (id int PRIMARY KEY)")
    worker = worker_proc()
    settings = Settings()
    url = pg_db.url.replace("postgres@", f"postgres:{PASSWORD}@")  # trust: not checked
    job_id = control.submit_job(settings, short, send, source=url, target="kept_rt")
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

    with TestClient(create_app(settings, store=short, send=send,
                               probe=lambda *a: [])) as api:
        # And the API still answers for it, from its record on the volume, saying so
        recorded_job_is_served(api, settings, job_id, capsys)

        # When it is resumed
        assert api.post(f"/jobs/{job_id}/resume").status_code == 202
        wait_until(lambda: short.job_state(job_id) == JobState.DONE, 20, "the restore",
                   workers=[worker])

        # Then it answers again from Redis, as done, and expires again
        view = api.get(f"/jobs/{job_id}").json()
        assert view["state"] == "done" and "from_volume" not in view
        assert 0 < short.redis.ttl(short.keys.job(job_id)) <= RETENTION_S


def recorded_job_is_served(api: TestClient, settings: Settings, job_id: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """The job's view, a page of its tables and its report, from the volume: marked so, read
    only, no password anywhere, no server path; the CLI shows them too."""
    view = api.get(f"/jobs/{job_id}", params={"limit": 1})
    assert view.status_code == 200, view.text
    job = view.json()
    assert job["from_volume"] is True and "read-only" in job["note"]
    assert f"`liteshift resume {job_id}`" in job["note"]
    assert "kept 3 s (LITESHIFT_JOB_RETENTION_S)" in job["note"]
    assert (job["id"], job["state"], job["target"]) == (job_id, "done", "kept_rt")
    assert job["source"].startswith("postgresql://postgres:***@127.0.0.1/")  # redacted
    assert "source_sealed" not in job and job["snapshot"]["consistent"] is True
    assert (job["tables_total"], job["tables_matching"]) == (2, 2)
    assert [t["name"] for t in job["tables"]] == ["kept"] and job["next_cursor"] == 1
    assert job["tables"][0]["state"] == "verified" and job["tables"][0]["rows_done"] == 50
    assert job["table_counts"]["verified"] == 2 and job["progress"]["rows_done"] == 50
    rest = api.get(job["next"])
    assert [t["name"] for t in rest.json()["tables"]] == ["other"]
    assert rest.json()["next"] is None
    assert api.get(f"/jobs/{job_id}/tables", params={"state": "failed"}).json()["tables"] == []

    report = api.get(f"/jobs/{job_id}/report")
    assert report.status_code == 200, report.text
    assert report.json()["from_volume"] is True and report.json()["job_id"] == job_id
    assert [t["name"] for t in report.json()["tables"]] == ["kept", "other"]

    # What the job's record holds can change nothing: writes still ask for `resume`
    assert api.post(f"/jobs/{job_id}/retry").status_code == 404
    for answer in (view, rest, report):
        assert PASSWORD not in str(answer.text) and str(settings.data_dir) not in answer.text

    assert cli.main(["status", job_id], settings=settings, http=api) == 0
    assert cli.main(["report", job_id], settings=settings, http=api) == 0
    out = capsys.readouterr().out
    assert f"job {job_id}  done  target kept_rt" in out and '"from_volume": true' in out
    assert PASSWORD not in out


def test_a_job_neither_in_redis_nor_on_the_volume_is_unknown(short, settings_env, send):
    # Given a job id the volume has no record of, and ids that would lead out of it
    settings = Settings()
    (settings.state_dir / "jobs" / "x").mkdir(parents=True)
    (settings.state_dir / "job.json").write_text("{}")
    with TestClient(create_app(settings, store=short, send=send,
                               probe=lambda *a: [])) as api:
        # When they are asked for, Then: 404 saying where it looked, or refused outright
        for path in ("/jobs/0123456789abcdef", "/jobs/0123456789abcdef/report",
                     "/jobs/0123456789abcdef/tables"):
            answer = api.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert "no job '0123456789abcdef' in Redis or on the data volume" in answer.text
        for path in ("/jobs/..", "/jobs/%2E%2E", "/jobs/x%2F..%2F..", "/jobs/x%2F..",
                     "/jobs/..%2Fjobs%2Fx/report"):
            assert api.get(path).status_code in (404, 422), path
            assert "job.json" not in api.get(path).text
    with pytest.raises(InputError, match="not valid"):
        recorded.job_view(settings, "../jobs/x", TableQuery(), why="")


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

    # And the API answers for it from the volume: failed, saying what it cannot know
    with TestClient(create_app(settings, store=short, send=send,
                               probe=lambda *a: [])) as api:
        job = api.get(f"/jobs/{job_id}").json()
        assert (job["state"], job["from_volume"], job["tables_total"]) == ("failed", True, 0)
        assert "does not keep its errors" in job["error"]
        assert api.get(f"/jobs/{job_id}/report").status_code == 404


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
