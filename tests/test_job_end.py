"""A job ends when its last table does: finalize is queued once every table is verified, the
job fails once every table has ended and one failed. Each table's end counts ended tables
(one SCARD) instead of reading every table of the job, so this is checked against real
Redis, in the orders tables can end in."""

from __future__ import annotations

from worker.core.config import Settings
from worker.jobs.control import (
    COPY_TABLES_TASK,
    COPY_TASK,
    FINALIZE_TASK,
    retry_job,
    submit_job,
)
from worker.jobs.copying import finish_if_complete
from worker.jobs.plan import plan_job
from worker.jobs.recover import ALREADY_REBUILT, BEING_REBUILT, rebuild_forgotten, rebuild_job
from worker.state.lease import Lease
from worker.state.store import JobState, TableState

NAMES = ["a", "b", "c"]


def new_job(store, job_id: str) -> None:
    """As plan_job leaves it."""
    store.create_job(job_id, {"target": job_id, "tables": NAMES})
    store.set_job_state(job_id, JobState.COPYING, tables=NAMES)
    for name in NAMES:
        store.update_table(job_id, name, name=name, state=TableState.PENDING.value)


def end(store, job_id: str, name: str, state: TableState, sent: list) -> None:
    store.set_table_state(job_id, name, state)
    finish_if_complete(Settings(), store, lambda *task: sent.append(task), job_id)


def test_finalize_is_queued_by_the_last_table_to_be_verified_and_not_before(store):
    new_job(store, "j1")
    sent: list = []
    end(store, "j1", "b", TableState.VERIFIED, sent)
    end(store, "j1", "a", TableState.VERIFIED, sent)
    assert sent == [] and store.tables_ended("j1") == 2
    end(store, "j1", "c", TableState.VERIFIED, sent)
    assert sent == [(FINALIZE_TASK, "j1")]


def test_a_failed_table_fails_the_job_only_when_the_others_have_ended(store):
    new_job(store, "j2")
    sent: list = []
    end(store, "j2", "a", TableState.FAILED, sent)
    end(store, "j2", "b", TableState.VERIFIED, sent)
    assert store.job_state("j2") == JobState.COPYING
    end(store, "j2", "c", TableState.VERIFIED, sent)
    assert store.job_state("j2") == JobState.FAILED
    assert "a" in store.job("j2")["error"] and sent == []


def test_a_retried_table_is_no_longer_ended_until_it_ends_again(store):
    new_job(store, "j3")
    sent: list = []
    for name in NAMES:
        end(store, "j3", name, TableState.FAILED if name == "c" else TableState.VERIFIED, sent)
    assert store.job_state("j3") == JobState.FAILED
    assert retry_job(store, lambda *task: sent.append(task), "j3", ["c"]) == ["c"]
    assert sent == [(COPY_TASK, "j3", "c")] and store.tables_ended("j3") == 2
    sent.clear()
    end(store, "j3", "b", TableState.VERIFIED, sent)  # a duplicate message for b
    assert sent == []
    end(store, "j3", "c", TableState.COPYING, sent)
    end(store, "j3", "c", TableState.VERIFIED, sent)
    assert sent == [(FINALIZE_TASK, "j3")]


def test_a_forgotten_job_is_rebuilt_once_though_two_workers_try(pg_db, settings_env, store):
    # Given a planned job whose Redis state is gone (the volume still has it)
    pg_db.execute("CREATE TABLE a (id int PRIMARY KEY)")
    pg_db.execute("CREATE TABLE b (id int PRIMARY KEY)")
    sent: list = []
    job_id = submit_job(settings_env, store, lambda *task: sent.append(task),
                        source=pg_db.url, target="twice")
    plan_job(settings_env, store, lambda *task: sent.append(task), job_id)
    for key in store.redis.scan_iter(f"{store.keys.prefix}:*"):
        store.redis.delete(key)

    # When one rebuild holds the rebuild lease, another backs off
    holder = Lease(store.redis, store.keys, job_id, "rebuild", settings_env.lease_ttl_s)
    assert holder.acquire()
    assert rebuild_job(settings_env, store, lambda *task: None, job_id) == BEING_REBUILT
    assert rebuild_forgotten(settings_env, store, lambda *task: None) == []
    holder.release()
    assert store.job(job_id) is None

    # and once a rebuild is done and a table verified, a late one changes nothing
    sent.clear()
    rebuild_job(settings_env, store, lambda *task: sent.append(task), job_id)
    assert sent == [(COPY_TABLES_TASK, job_id, ["a", "b"])]  # two small tables: one group
    store.set_table_state(job_id, "a", TableState.VERIFIED)
    assert rebuild_job(settings_env, store, lambda *task: sent.append(task),
                       job_id) == ALREADY_REBUILT
    assert store.table(job_id, "a")["state"] == "verified" and len(sent) == 1
    assert store.tables_ended(job_id) == 1
