"""A task lost before it recorded anything: the reaper queues the work again.

A worker can die after taking a message from the queue but before its first write to Redis,
or while it holds a retry's message until its countdown; the broker gives such a message back
only after its visibility timeout (an hour). Without more, the table would sit `pending` with
no task anywhere. The reaper queues it again once the queue is empty and the table has been
quiet for two lease periods (worker/jobs/reaper.py).
"""

from __future__ import annotations

import json
import os
import signal
import time

import redis

from faults.support import (
    assert_exactly_once,
    make_narrow_tables,
    outcome,
    rows_done,
    table_states,
)
from worker.jobs import control
from worker.jobs.control import COPY_TASK, FINALIZE_TASK, PLAN_TASK
from worker.jobs.reaper import reap_once
from worker.state.store import JobState, TableState


def message_task(raw: bytes) -> tuple[str, str]:
    headers = json.loads(raw)["headers"]
    return headers["task"], headers["argsrepr"]


def test_a_message_taken_by_a_worker_that_died_at_once_is_sent_again(
        pg_db, settings_env, store, send, worker_proc, wait_for, wait_until, monkeypatch):
    # Given a worker copying table la while lb's task waits in the queue
    monkeypatch.setenv("LITESHIFT_LEASE_TTL_S", "2")
    sizes = {"la": 300_000, "lb": 30_000}
    make_narrow_tables(pg_db, sizes)
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="lost1",
                                options={"chunk_rows": 4000})
    wait_until(lambda: rows_done(store, job_id) >= 8000, 60, "la to be copying")

    # When lb's message is taken from the queue and never run (what a worker killed right
    # after taking it leaves behind; here it is taken by hand, the worker paused meanwhile)
    client = redis.Redis.from_url(settings_env.redis_url)
    os.killpg(worker.proc.pid, signal.SIGSTOP)
    try:
        raw = client.rpop(settings_env.queue)
    finally:
        os.killpg(worker.proc.pid, signal.SIGCONT)
    assert raw is not None and message_task(raw) == (COPY_TASK, f"['{job_id}', 'lb']")

    # Then once la is done and the queue empty, the reaper sends lb's task again
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])
    assert view["state"] == "done", outcome(view)
    requeued = [w for e in worker.events("stalled_work_requeued") for w in e["work"]]
    assert f"{job_id}:lb-lost" in requeued
    assert_exactly_once(settings_env, store, job_id, "lost1", sizes)


def test_a_worker_killed_while_it_holds_a_retry_is_replaced(
        pg_db, settings_env, store, send, worker_proc, wait_for, wait_until, monkeypatch):
    # Given a table whose connection was cut, waiting out a 3 s backoff in its worker
    monkeypatch.setenv("LITESHIFT_LEASE_TTL_S", "2")
    monkeypatch.setenv("LITESHIFT_SOURCE_RETRY_BACKOFF_S", "3")
    sizes = {"lr": 300_000}
    make_narrow_tables(pg_db, sizes)
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="lost2",
                                options={"chunk_rows": 4000})
    wait_until(lambda: rows_done(store, job_id) >= 40_000, 60, "lr to be copying")
    pg_db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                  "application_name = 'liteshift' AND query LIKE 'COPY%%' "
                  "AND datname = current_database()")
    (retrying,) = wait_until(lambda: worker.events("table_retrying"), 30, "a retry")
    received = f"Task liteshift.copy_table[{retrying['task_id']}] received"
    wait_until(lambda: worker.log_text().count(received) == 2, 10,
               "the worker to take the retry's message (it holds it until the countdown)")
    assert table_states(store, job_id)["lr"]["state"] == "pending"

    # When that worker is killed before the countdown ends (the retry's message dies with
    # it, unacknowledged), and a new worker starts
    worker.kill()
    worker = worker_proc()

    # Then the reaper sends the table's task again once its retry was due, and the job
    # finishes from the checkpoint
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])
    assert view["state"] == "done", outcome(view)
    requeued = [w for e in worker.events("stalled_work_requeued") for w in e["work"]]
    assert f"{job_id}:lr-lost" in requeued
    (start,) = [e for e in worker.events("table_copying") if e["table"] == "lr"]
    assert start["rows_done"] >= 40_000
    assert_exactly_once(settings_env, store, job_id, "lost2", sizes)


def test_the_reaper_sends_lost_plan_copy_and_finalize_tasks_only_when_due(settings_env, store):
    # Given jobs in the states a lost message leaves behind, quiet for a while
    sent: list[tuple] = []
    long_ago = time.time() - 60

    def job(job_id: str, state: JobState, tables: dict[str, TableState], **fields) -> None:
        store.create_job(job_id, {"target": job_id, "tables": list(tables)})
        store.set_job_state(job_id, state)
        for name, table_state in tables.items():
            store.update_table(job_id, name, name=name, state=table_state.value, **fields)
        for key in [store.keys.job(job_id), *(store.keys.table(job_id, t) for t in tables)]:
            store.redis.hset(key, "updated_at", json.dumps(long_ago))

    job("queued", JobState.QUEUED, {})
    job("noplan", JobState.COPYING, {"a": TableState.PENDING, "b": TableState.VERIFIED})
    job("nofinal", JobState.COPYING, {"a": TableState.VERIFIED, "b": TableState.VERIFIED})
    job("backoff", JobState.COPYING, {"a": TableState.PENDING}, retry_at=time.time() + 60)
    job("leased", JobState.COPYING, {"a": TableState.PENDING})
    store.redis.set(store.keys.lease("leased", "table:a"), "7", px=60_000)

    # When the queue holds a message, nothing is sent (the work may be in it)
    store.redis.lpush(settings_env.queue, b"{}")
    assert reap_once(settings_env, store, lambda *task: sent.append(task)) == []
    store.redis.delete(settings_env.queue)

    # When it is empty, each lost task is sent once; not for a table whose retry is not due,
    # nor one whose lease is held
    reap_once(settings_env, store, lambda *task: sent.append(task))
    assert sorted(sent) == sorted([(PLAN_TASK, "queued"), (COPY_TASK, "noplan", "a"),
                                   (FINALIZE_TASK, "nofinal")])
    # and not again at the next round: the work was just queued
    assert reap_once(settings_env, store, lambda *task: sent.append(task)) == []
    assert len(sent) == 3
