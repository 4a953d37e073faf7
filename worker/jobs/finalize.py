"""finalize_job: build the file from the work files (worker/sqlite/build.py), report, publish
atomically."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.core.config import Settings
from worker.core.errors import TargetError, TargetExists
from worker.core.logs import get_logger
from worker.core.model import TablePlan
from worker.core.steps import reporting, step
from worker.jobs.finalize_steps import PUBLISHING as PUBLISHING_STEP
from worker.jobs.finalize_steps import StepRecorder
from worker.sources import snapshot
from worker.sqlite.build import build_database, fsync_dir, remove_build
from worker.state.jobfiles import read_json, remove_work_files, write_json_atomic, write_outcome
from worker.state.lease import Lease
from worker.state.manifest import read_manifest
from worker.state.store import JobState, StateStore, TableState
from worker.state.targets import published_path, report_path

PUBLISHING = "publishing.json"  # in the job's directory, from just before the rename until done


def finalize_job(settings: Settings, store: StateStore, job_id: str) -> None:
    log = get_logger(job_id=job_id, step="finalize")
    job = store.job(job_id)
    if job is None or JobState(job["state"]) not in (JobState.COPYING, JobState.FINALIZING):
        log.info("finalize_skipped", reason=f"job is {job and job['state']}")
        return
    tables = store.tables(job_id, job.get("tables") or [])
    if any(t.get("state") != TableState.VERIFIED.value for t in tables):
        log.info("finalize_skipped", reason="not every table is verified yet")
        return
    with Lease(store.redis, store.keys, job_id, "finalize", settings.lease_ttl_s) as lease:
        if not lease.acquire():
            log.info("finalize_skipped", reason="another worker is finalizing this job")
            return
        if not store.set_job_state(job_id, JobState.FINALIZING,
                                   expect=(JobState.COPYING, JobState.FINALIZING)):
            log.info("finalize_stopped", reason="job is no longer copying or finalizing")
            return
        if (job.get("options") or {}).get("follow"):
            from worker.follow import cutover  # it publishes through this module

            cutover.begin(settings, store, job, tables)  # published at cutover, not now
            return
        started = time.monotonic()
        job_dir = settings.job_dir(job_id)
        done = published_earlier(job_dir, settings.data_dir, job["target"])
        recorder = StepRecorder(store, job_id, log)
        if done is None:
            with reporting(recorder):
                done = _build_and_publish(settings, store, job, tables)
        if done is None:
            log.info("finalize_stopped", reason="job cancelled")
            return
        final, backup, report = done
        recorder.finish()
        report["published"] = {"path": final.name, "replaced_file_kept_as": backup,
                               "bytes": final.stat().st_size}
        write_json_atomic(report_path(settings.data_dir, job["target"]), report)
        store.set_job_state(job_id, JobState.DONE, expect=(JobState.FINALIZING,),
                            published=final.name,
                            report=report_path(settings.data_dir, job["target"]).name,
                            backup=backup, error=None)
        write_outcome(job_dir, JobState.DONE.value, published=final.name, backup=backup)
        (job_dir / PUBLISHING).unlink(missing_ok=True)
        store.release_target(job["target"], job_id)
        remove_work_files(job_dir)
        remove_build(partial_path(job_dir, job["target"]))
        log.info("job_published", path=str(final), backup=backup,
                 seconds=round(time.monotonic() - started, 2))


Published = tuple[Path, str | None, dict[str, Any]]  # the file, the old one kept, the report


def _build_and_publish(settings: Settings, store: StateStore, job: dict[str, Any],
                       tables: list[dict[str, Any]]) -> Published | None:
    """Build the file from the work files and publish it; None when the job was cancelled
    meanwhile (nothing is published then)."""
    job_dir = settings.job_dir(job["id"])
    _, plans, objects = read_manifest(job_dir)
    partial = partial_path(job_dir, job["target"])
    checks = build_database(partial, plans, job_dir / "tables", objects)
    report = build_report(job, plans, objects, {t["name"]: t for t in tables}, checks)
    # Compare and set: a cancel from here on is refused, and one before it stops us here.
    if not store.begin_publishing(job["id"]):
        remove_build(partial)
        return None
    step(PUBLISHING_STEP)
    final, backup = publish(partial, settings.data_dir, job["target"],
                            replace=bool(job.get("replace")),
                            intent=lambda backup: _record_intent(job_dir, partial, report,
                                                                 backup))
    return final, backup, report


def partial_path(job_dir: Path, target: str) -> Path:
    return job_dir / f"{target}.db.partial"


def _record_intent(job_dir: Path, partial: Path, report: dict[str, Any],
                   backup: str | None) -> None:
    """Written just before the rename: which inode we publish, so a re-run can tell our own
    file at <target>.db from somebody else's."""
    st = partial.stat()
    write_json_atomic(job_dir / PUBLISHING, {"device": st.st_dev, "inode": st.st_ino,
                                             "backup": backup, "report": report})


def published_earlier(job_dir: Path, data_dir: Path, target: str) -> Published | None:
    """A worker killed after the rename but before marking the job done left our file at
    <target>.db. Finish the job from there instead of building the file again, which would
    then refuse to overwrite it (or, with replace, push it aside as an "old" file)."""
    intent = read_json(job_dir / PUBLISHING)
    final = published_path(data_dir, target)
    try:
        st = final.stat()
    except FileNotFoundError:
        return None
    if intent is None or (st.st_dev, st.st_ino) != (intent["device"], intent["inode"]):
        return None
    remove_build(partial_path(job_dir, target))  # killed before its unlink
    return final, intent["backup"], intent["report"]


def publish(partial: Path, data_dir: Path, target: str, *, replace: bool,
            intent: Callable[[str | None], None] = lambda backup: None,
            ) -> tuple[Path, str | None]:
    """Make <target>.db appear by rename. Without `replace` an existing file is never touched
    (a hard link fails if the name exists); with it, the old file is kept under a new name
    first, then the new one replaces it in one rename. `intent` is called with the backup's
    name right before the rename."""
    final = published_path(data_dir, target)
    backup: str | None = None
    _refuse_if_in_use(final)
    if replace and final.exists():
        backup = _keep_old(final, target).name  # beside it on the volume
        intent(backup)
        os.replace(partial, final)
    else:
        intent(None)
        try:
            os.link(partial, final)
        except FileExistsError:
            raise TargetExists(f"{final.name} already exists; submit with replace to swap it "
                               "(the old file is kept)") from None
        partial.unlink()
    fsync_dir(data_dir)
    return final, backup


def _refuse_if_in_use(final: Path) -> None:
    """SQLite finds a database's -wal, -shm and -journal files by name. Were a new file put
    under a name whose -wal/-shm an app still uses (WAL mode: they exist as long as it has the
    file open, even when the WAL is empty), that app's next write would land in the WAL that
    readers of the new file apply to it; a hot -journal would be rolled back into it. Both
    destroy the new file, so refuse, whether or not the job asked to replace. (An app that
    opens the file between this check and the rename is not caught: stop apps first.)"""
    names = [final.with_name(final.name + suffix) for suffix in ("-wal", "-shm", "-journal")]
    in_use = [p.name for p in names
              if p.exists() and (p.stat().st_size > 0 or not p.name.endswith("-journal"))]
    if in_use:
        raise TargetError(
            f"{final.name} is in use: {', '.join(in_use)} exist beside it, so an app has it "
            "open in WAL mode (or is writing it, or crashed while writing it). Publishing now "
            "would let that app's journal be applied to the new file. Stop the app (or close "
            "its connections) so these files go away, then `liteshift retry` the job")


def _keep_old(final: Path, target: str) -> Path:
    """Hard-link the current file under a new name (same inode: apps holding it open keep
    reading it), never over an earlier backup."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(1000):
        backup = final.with_name(f"{target}.{stamp}{f'-{n}' if n else ''}.old.db")
        try:
            os.link(final, backup)
            return backup
        except FileExistsError:
            continue
    raise TargetError(f"cannot find a free name to keep {final.name} under")


def build_report(job: dict[str, Any], plans: list[TablePlan], objects: list[dict[str, Any]],
                 tables: dict[str, dict[str, Any]], checks: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": job["id"], "target": job["target"], "source": job["source"],
        "schema": job["schema"], "profile": (job.get("options") or {}).get("profile", "ecto"),
        "created_at": job.get("created_at"), "finished_at": time.time(),
        # The one moment every table was read at, or consistent: false and why not.
        "snapshot": snapshot.public(job.get("snapshot")) or snapshot.not_taken(
            "the job was planned before snapshots existed"),
        "checks": {k: v for k, v in checks.items() if k != "rows"},
        "tables": [_table_report(plan, tables.get(plan.name, {}), checks["rows"][plan.name])
                   for plan in plans],
        "objects": objects,
    }


def _table_report(plan: TablePlan, state: dict[str, Any], rows: int) -> dict[str, Any]:
    lossy = state.get("lossy") or {}
    return {
        "name": plan.name, "rows": rows, "checksum": state.get("checksum"), "verified": True,
        "chunk_key": plan.key, "key_kind": plan.key_kind,
        "columns": [{"name": c.name, "source_type": c.source_type, "sqlite_type": c.sqlite_type,
                     "rule": c.rule, "note": c.note, "lossy_values": lossy.get(c.name, 0)}
                    for c in plan.columns],
    }
