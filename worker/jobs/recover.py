"""Rebuild a job's Redis state from the volume, and resume it.

Redis only mirrors progress (docs/architecture.md, "Losing Redis"): after Redis lost its
data, job.json, the manifest and each work file's checkpoint say everything needed to carry
on. Each table is queued again; a table whose work file is complete is re-verified and not
copied again.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from worker.core.config import Settings
from worker.core.errors import InputError
from worker.core.logs import get_logger
from worker.core.model import TablePlan
from worker.jobs.control import FINALIZE_TASK, PLAN_TASK, Send, queue_copies
from worker.jobs.finalize import PUBLISHING, partial_path
from worker.jobs.grouping import units
from worker.sqlite.build import committed_build
from worker.state.jobfiles import (
    expired_unfinished,
    job_dirs,
    read_job_record,
    read_json,
    read_outcome,
)
from worker.state.lease import Lease
from worker.state.manifest import MANIFEST, read_manifest
from worker.state.store import JobState, StateStore, TableState


def resume_job(settings: Settings, store: StateStore, send: Send, job_id: str) -> str:
    """`liteshift resume JOB`: rebuild from the volume if Redis forgot the job, else queue
    again whatever is not finished and not held by a live worker. Returns what it did."""
    job = store.job(job_id)
    if job is None:
        return rebuild_job(settings, store, send, job_id)
    state = JobState(job["state"])
    if state in (JobState.DONE, JobState.CANCELLED):
        raise InputError(f"job {job_id} is {state.value}; nothing to resume")
    if state in (JobState.QUEUED, JobState.PLANNING) or not job.get("tables"):
        store.set_job_state(job_id, JobState.QUEUED, error=None)
        send(PLAN_TASK, job_id)
        return "planning again"
    if state == JobState.FINALIZING:
        send(FINALIZE_TASK, job_id)
        return "finalizing again"
    store.set_job_state(job_id, JobState.COPYING, error=None)
    queued = set()
    for table in store.tables(job_id, job["tables"]):
        leased = store.redis.exists(store.keys.lease(job_id, f"table:{table['name']}"))
        if table.get("state") != TableState.VERIFIED.value and not leased:
            store.set_table_state(job_id, table["name"], TableState.PENDING, error=None)
            queued.add(table["name"])
    if queued:  # a group's tables together again
        _, plans, _ = read_manifest(settings.job_dir(job_id))
        queue_copies(send, job_id, units([p for p in plans if p.name in queued]))
    else:
        send(FINALIZE_TASK, job_id)  # every table verified: only finalize was left
    return f"queued {len(queued)} table(s)"


BEING_REBUILT, ALREADY_REBUILT = "being rebuilt by another worker", "already rebuilt"


def rebuild_job(settings: Settings, store: StateStore, send: Send, job_id: str) -> str:
    """Under a lease, and only if Redis still does not know the job: a worker's reaper and
    `liteshift resume` both rebuild forgotten jobs, and a second rebuild running beside the
    first (or after it) would set tables back to pending and the job back to copying,
    under tasks already working from the first."""
    with Lease(store.redis, store.keys, job_id, "rebuild", settings.lease_ttl_s) as lease:
        if not lease.acquire():
            return BEING_REBUILT
        if store.redis.exists(store.keys.job(job_id)):
            return ALREADY_REBUILT
        return _rebuild(settings, store, send, job_id)


def _rebuild(settings: Settings, store: StateStore, send: Send, job_id: str) -> str:
    job_dir = settings.job_dir(job_id)
    record = read_job_record(job_dir)
    if record is None:
        raise InputError(f"no job {job_id!r} in Redis or on the data volume")
    outcome = read_outcome(job_dir)
    if outcome:
        store.restore_job(job_id, {**record, **outcome})
        return f"restored as {outcome['state']}"
    if not (job_dir / MANIFEST).exists():
        store.restore_job(job_id, {**record, "state": JobState.QUEUED.value})
        store.claim_target(record["target"], job_id)
        send(PLAN_TASK, job_id)
        return "planning again"
    planned, plans, _ = read_manifest(job_dir)
    built = _built_checkpoints(job_dir, record["target"])
    # The moment the tables were read at: resumed tables enter it again, if it still lives.
    store.restore_job(job_id, {**record, "snapshot": planned.get("snapshot"),
                               "state": JobState.COPYING.value,
                               "tables": [p.name for p in plans]})
    store.claim_target(record["target"], job_id)
    _restore_tables(store, job_id, job_dir, plans, built)
    log = get_logger(job_id=job_id)
    if built:
        send(FINALIZE_TASK, job_id)
        log.warning("job_rebuilt_from_volume", tables=len(plans), built=True)
        return "rebuilt from the volume; its file was already built: finalizing"
    queue_copies(send, job_id, units(plans))
    log.warning("job_rebuilt_from_volume", tables=len(plans))
    return f"rebuilt from the volume; queued {len(plans)} table(s)"


def _restore_tables(store: StateStore, job_id: str, job_dir: Path, plans: list[TablePlan],
                    built: dict[str, dict[str, Any]] | None) -> None:
    """Every table pending from its work file's checkpoint, or, when the job's file was
    already built, every table verified."""
    pipe = store.redis.pipeline()
    pipe.delete(store.keys.ended(job_id))
    state = TableState.VERIFIED if built else TableState.PENDING
    for plan in plans:
        # The built-on table's work file is now the job's file: its checkpoint is the build's
        done = ((built or {}).get(plan.name)
                or _checkpoint(job_dir / "tables" / plan.file, plan.name))
        store.update_table(job_id, plan.name, pipeline=pipe, name=plan.name, state=state.value,
                           rows_estimated=done.get("rows_done") if built else plan.rows_estimated,
                           attempts=0, error=None, error_key=None, key=plan.key,
                           key_kind=plan.key_kind, **done)
    if built:
        pipe.sadd(store.keys.ended(job_id), *(p.name for p in plans))
    pipe.execute()


def _built_checkpoints(job_dir: Path, target: str) -> dict[str, dict[str, Any]] | None:
    """When a finalize committed the job's file (on the largest table's work file) before
    Redis lost the job, every table is verified: the tables' checkpoints that the build or
    the publication recorded, by name (the other tables' work files hold their own). None
    when no build committed."""
    intent = read_json(job_dir / PUBLISHING)  # written after the build, before the rename
    if intent is not None:
        return {t["name"]: {"rows_done": t["rows"], "checksum": t["checksum"],
                            "lossy": {c["name"]: c["lossy_values"] for c in t["columns"]
                                      if c["lossy_values"]}}
                for t in intent["report"]["tables"]}
    record = committed_build(partial_path(job_dir, target), job_dir / "tables")
    if record is None:
        return None
    return {kept["table"]: {"rows_done": kept["rows"], "checksum": kept["checksum"],
                            "lossy": kept["lossy"]} for kept in record["checkpoints"]}


def _checkpoint(path: Path, table: str) -> dict[str, Any]:
    """The table's progress as its work file records it (read-only: the writer may come
    back)."""
    if not path.exists():
        return {"rows_done": 0}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        row = db.execute("SELECT rows, checksum, last_key, lossy FROM _liteshift_checkpoint "
                         "WHERE name = ?", (table,)).fetchone()
    except sqlite3.Error:
        return {"rows_done": 0}
    finally:
        db.close()
    return ({"rows_done": row[0], "checksum": row[1], "last_key": row[2],
             "lossy": json.loads(row[3])} if row else {})


def rebuild_forgotten(settings: Settings, store: StateStore, send: Send) -> list[str]:
    """Every unfinished job on the volume that Redis lost: rebuilt and resumed. Run when a
    worker starts and periodically by the reaper."""
    rebuilt = []
    for job_dir in job_dirs(settings.state_dir):
        job_id = job_dir.name
        if (job_dir / "outcome.json").exists() or not (job_dir / "job.json").exists():
            continue
        if store.redis.exists(store.keys.job(job_id)) or expired_unfinished(
                job_dir, settings.job_retention_s):
            continue
        if rebuild_job(settings, store, send, job_id) not in (BEING_REBUILT, ALREADY_REBUILT):
            rebuilt.append(job_id)
    return rebuilt
