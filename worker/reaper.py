"""Find work whose worker died and queue it again: at worker start and then periodically.

A table is stalled when it is `copying` but nobody holds its lease (the holder's heartbeat
stopped). Planning and finalizing jobs are treated the same way with their own leases.
"""

from __future__ import annotations

import threading
import time

import redis

from worker.config import Settings
from worker.control import COPY_TASK, FINALIZE_TASK, PLAN_TASK, Send
from worker.logs import get_logger
from worker.recover import rebuild_forgotten
from worker.state import JobState, StateStore, TableState

_stop = threading.Event()


def reap_once(settings: Settings, store: StateStore, send: Send) -> list[str]:
    """Re-queue stalled work; returns what was re-queued (for logs and tests)."""
    requeued = [f"{job_id}:rebuilt" for job_id in rebuild_forgotten(settings, store, send)]
    for job_id in store.active_job_ids():
        job = store.job(job_id)
        if job is None:
            continue
        state = JobState(job["state"])
        if state == JobState.PLANNING and not _leased(store, job_id, "plan"):
            store.set_job_state(job_id, JobState.QUEUED)
            send(PLAN_TASK, job_id)
            requeued.append(f"{job_id}:plan")
        elif state == JobState.FINALIZING and not _leased(store, job_id, "finalize"):
            if time.time() - float(job.get("requeued_at") or 0) > 2 * settings.lease_ttl_s:
                store.update_job(job_id, requeued_at=time.time())
                send(FINALIZE_TASK, job_id)
                requeued.append(f"{job_id}:finalize")
        elif state == JobState.COPYING:
            for table in store.tables(job_id, job.get("tables") or []):
                if (table.get("state") == TableState.COPYING.value
                        and not _leased(store, job_id, f"table:{table['name']}")):
                    store.set_table_state(job_id, table["name"], TableState.PENDING)
                    send(COPY_TASK, job_id, table["name"])
                    requeued.append(f"{job_id}:{table['name']}")
    if requeued:
        get_logger().warning("stalled_work_requeued", work=requeued)
    return requeued


def _leased(store: StateStore, job_id: str, name: str) -> bool:
    return bool(store.redis.exists(store.keys.lease(job_id, name)))


def _loop(settings: Settings, send: Send) -> None:
    store = StateStore.from_settings(settings)
    while not _stop.is_set():
        try:
            reap_once(settings, store, send)
        except redis.RedisError as exc:
            get_logger().warning("reaper_redis_error", error=str(exc))
        _stop.wait(max(1.0, settings.lease_ttl_s / 2))


def start_reaper(settings: Settings, send: Send) -> None:
    _stop.clear()
    threading.Thread(target=_loop, args=(settings, send), name="liteshift-reaper",
                     daemon=True).start()


def stop_reaper() -> None:
    _stop.set()
