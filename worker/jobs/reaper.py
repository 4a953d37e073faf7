"""Find work whose worker died and queue it again: at worker start and then periodically.

A table is stalled when it is `copying` but nobody holds its lease (the holder's heartbeat
stopped). Planning and finalizing jobs are treated the same way with their own leases.

A task can also be lost before it records anything: a worker that dies between taking a
message and its first write to Redis, or while it holds a retry's message until its countdown
(the broker gives such messages back only after its visibility timeout, an hour), or between
marking the last table verified and queueing finalize. So when this volume's queue is empty,
work that is still waiting for a task (a `pending` table, a `queued` job, a job whose tables
are all verified) and has been quiet for two lease periods (for a pending table: all of its
job's tables) is queued again. A duplicate is harmless: leases and the state checks at the
start of each task make it a no-op.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from worker.core.config import Settings, get_settings
from worker.core.logs import get_logger
from worker.follow import sweep as follow_sweep
from worker.jobs import presence
from worker.jobs.control import COPY_TASK, FINALIZE_TASK, FOLLOW_TASK, PLAN_TASK, Send
from worker.jobs.recover import rebuild_forgotten
from worker.state.store import JobState, StateStore, TableState

_stop = threading.Event()


def reap_once(settings: Settings, store: StateStore, send: Send) -> list[str]:
    """Re-queue stalled work; returns what was re-queued (for logs and tests)."""
    requeued = [f"{job_id}:rebuilt" for job_id in rebuild_forgotten(settings, store, send)]
    # Checked once, before looking at any job: a message sent after this is not missed.
    idle = not store.redis.llen(settings.queue)  # Celery's list for the queue (no priorities)
    quiet_s = 2 * settings.lease_ttl_s
    for job_id in store.active_job_ids():
        job = store.job(job_id)
        if job is None:
            continue
        state = JobState(job["state"])
        if state == JobState.PLANNING and not _leased(store, job_id, "plan"):
            if store.set_job_state(job_id, JobState.QUEUED, expect=(JobState.PLANNING,)):
                send(PLAN_TASK, job_id)
                requeued.append(f"{job_id}:plan")
        elif (state == JobState.QUEUED and idle and _quiet(quiet_s, job)
              and not _leased(store, job_id, "plan")):
            # marks the time: once per period
            if store.set_job_state(job_id, JobState.QUEUED, expect=(JobState.QUEUED,)):
                send(PLAN_TASK, job_id)
                requeued.append(f"{job_id}:plan-lost")
        elif state == JobState.FINALIZING and not _leased(store, job_id, "finalize"):
            if time.time() - float(job.get("requeued_at") or 0) > quiet_s:
                store.update_job(job_id, requeued_at=time.time())
                send(FINALIZE_TASK, job_id)
                requeued.append(f"{job_id}:finalize")
        elif state == JobState.COPYING:
            requeued += _reap_tables(settings, store, send, job, idle=idle)
        elif state == JobState.FOLLOWING and not _leased(store, job_id, "follow"):
            if time.time() - float(job.get("requeued_at") or 0) > quiet_s:
                store.update_job(job_id, requeued_at=time.time())
                send(FOLLOW_TASK, job_id)
                requeued.append(f"{job_id}:follow")
    if requeued:
        get_logger().warning("stalled_work_requeued", work=requeued)
    store.forget_expired()
    return requeued


def _reap_tables(settings: Settings, store: StateStore, send: Send, job: dict[str, Any], *,
                 idle: bool) -> list[str]:
    job_id, quiet_s = job["id"], 2 * settings.lease_ttl_s
    names = job.get("tables") or []
    tables = store.tables(job_id, names)
    # A job whose tables still move has live workers, and a message one of them has taken
    # ahead (prefetched: the queue is empty while it waits there behind a group of small
    # tables) is not lost: a pending table is queued again once the whole job is quiet.
    job_quiet = _quiet(quiet_s, *tables) if tables else True
    requeued = []
    for table in tables:
        name, table_state = table["name"], table.get("state")
        if (table_state == TableState.COPYING.value
                and not _leased(store, job_id, f"table:{name}")
                and _still(store, job_id, name, TableState.COPYING)):
            store.set_table_state(job_id, name, TableState.PENDING)
            send(COPY_TASK, job_id, name)
            requeued.append(f"{job_id}:{name}")
        elif (table_state == TableState.PENDING.value and idle and job_quiet
              and not _leased(store, job_id, f"table:{name}")):
            store.set_table_state(job_id, name, TableState.PENDING)  # marks the time
            send(COPY_TASK, job_id, name)
            requeued.append(f"{job_id}:{name}-lost")
    all_verified = len(tables) == len(names) > 0 and all(
        t.get("state") == TableState.VERIFIED.value for t in tables)
    if (all_verified and idle and _quiet(quiet_s, job, *tables)
            and not _leased(store, job_id, "finalize")):
        store.update_job(job_id, requeued_at=time.time())
        send(FINALIZE_TASK, job_id)
        requeued.append(f"{job_id}:finalize-lost")
    return requeued


def _still(store: StateStore, job_id: str, table: str, state: TableState) -> bool:
    """The table is in `state` now. The states were read before the leases were looked at,
    and a table whose copy ended in between (verified, then its lease released) is not
    stalled: without this second look it would be set back to pending and copied again."""
    return (store.table(job_id, table) or {}).get("state") == state.value


def _quiet(seconds: float, *records: dict[str, Any]) -> bool:
    """Nothing written to these records, and no retry due, for `seconds`."""
    latest = max(float(r.get(field) or 0) for r in records
                 for field in ("updated_at", "retry_at", "requeued_at"))
    return time.time() - latest > seconds


def _leased(store: StateStore, job_id: str, name: str) -> bool:
    return bool(store.redis.exists(store.keys.lease(job_id, name)))


def _loop(settings: Settings, send: Send) -> None:
    store = StateStore.from_settings(settings)
    while not _stop.is_set():
        try:
            presence.announce(settings, store)
            reap_once(settings, store, send)
            follow_sweep.sweep(settings, store)
        except redis.RedisError as exc:
            get_logger().warning("reaper_redis_error", error=str(exc))
        _stop.wait(max(1.0, settings.lease_ttl_s / 2))


def start_reaper(settings: Settings, send: Send) -> None:
    _stop.clear()
    threading.Thread(target=_loop, args=(settings, send), name="liteshift-reaper",
                     daemon=True).start()


def stop_reaper() -> None:
    _stop.set()
    try:
        presence.withdraw(StateStore.from_settings(get_settings()))
    except redis.RedisError:
        pass  # the entry expires on its own
