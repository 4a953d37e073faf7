"""A finished job as the data volume records it, for when Redis no longer holds it.

A finished job's Redis keys expire after LITESHIFT_JOB_RETENTION_S; its files stay until an
operator deletes them (worker/state/jobfiles.py): job.json, the manifest, outcome.json, and
the report beside the published file. From those, `job_view` builds a view shaped like a
live one (worker/jobs/control.py's) and marked `from_volume: true`. It is read-only: nothing
goes back to Redis (`liteshift resume` does that), and what the volume does not keep (a
failed job's errors, per-table progress) is left out rather than guessed.

No database driver is imported here: the API reads it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from worker.core.config import Settings
from worker.sources import snapshot
from worker.state.jobfiles import (
    check_job_id,
    expired_unfinished,
    newest_change,
    read_job_record,
    read_json,
    read_outcome,
)
from worker.state.manifest import MANIFEST
from worker.state.pages import TableQuery
from worker.state.store import JobState, TableState
from worker.state.targets import report_path

NOTE = ("Redis no longer holds this job ({why}): this is its record on the data volume, "
        "read-only. `liteshift resume {id}` brings it back to Redis")


def job_view(settings: Settings, job_id: str, query: TableQuery, *,
             why: str) -> dict[str, Any] | None:
    """The job as its files record it, with one page of its tables; None when the volume
    has no record of it, or records a job that has not finished (Redis lost it: a worker's
    reaper, or `liteshift resume`, rebuilds it). `why` says why Redis let it go."""
    job_dir = settings.job_dir(check_job_id(job_id))
    record = read_job_record(job_dir)
    if record is None:
        return None
    outcome = read_outcome(job_dir)
    if outcome is None and not expired_unfinished(job_dir, settings.job_retention_s):
        return None
    report = finished_report(settings, job_id, record.get("target"))
    job = {k: v for k, v in record.items() if k not in ("source_sealed", "tables")}
    job.update(outcome or {}, id=job_id, from_volume=True,
               note=NOTE.format(why=why, id=job_id), **_times(job_dir, report))
    if outcome is None:  # no outcome.json: it failed (see expired_unfinished)
        job.update(state=JobState.FAILED.value,
                   error="the job failed; the volume does not keep its errors (`liteshift "
                         f"resume {job_id}` runs it again from its checkpoints)")
    elif job["state"] == JobState.CANCELLED.value:
        job["error"] = "cancelled by request"
    manifest = read_json(job_dir / MANIFEST) or {}
    job["snapshot"] = snapshot.public((manifest.get("job") or {}).get("snapshot"))
    if report is not None:
        job["report"] = report_path(settings.data_dir, job["target"]).name
    tables = _tables(manifest, report)
    return {**job, **_summary(tables), **_page(tables, query, job["finished_at"])}


def finished_report(settings: Settings, job_id: str, target: Any) -> dict[str, Any] | None:
    """The report the job wrote beside its file, unless a later job (--replace) rewrote it."""
    if not isinstance(target, str):
        return None
    content = read_json(report_path(settings.data_dir, target))
    if not isinstance(content, dict) or content.get("job_id") != job_id:
        return None
    return content


def _times(job_dir: Path, report: dict[str, Any] | None) -> dict[str, Any]:
    """When the job was made and ended: the report says so; else the files' times."""
    created = (report or {}).get("created_at") or os.stat(job_dir / "job.json").st_mtime
    finished = (report or {}).get("finished_at") or newest_change(job_dir)
    return {"created_at": created, "updated_at": finished, "finished_at": finished}


def _tables(manifest: dict[str, Any], report: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every table in plan order: verified with its rows and checksum when the job's report
    lists it; else only what its plan says (no state: the volume does not record it)."""
    reported = {t.get("name"): t for t in (report or {}).get("tables") or []
                if isinstance(t, dict)}
    out = []
    for plan in manifest.get("tables") or []:
        name = plan.get("name")
        entry: dict[str, Any] = {"name": name, "rows_estimated": plan.get("rows_estimated")}
        if name in reported:
            entry.update(state=TableState.VERIFIED.value, rows_done=reported[name].get("rows"),
                         checksum=reported[name].get("checksum"))
        out.append(entry)
    return out


def _summary(tables: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {state.value: 0 for state in TableState}
    for table in tables:
        if table.get("state") in counts:
            counts[table["state"]] += 1
    done = sum(int(t.get("rows_done") or 0) for t in tables)
    total = sum(max(int(t.get("rows_done") or 0), int(t.get("rows_estimated") or 0))
                for t in tables)
    return {"tables_total": len(tables), "table_counts": counts,
            "progress": {"rows_done": done, "rows_total": total, "rows_per_s": None,
                         "eta_s": None}}


def _page(tables: list[dict[str, Any]], query: TableQuery, finished_at: float) -> dict[str, Any]:
    """The tables that match the query, paged as pages.job_page pages a live job's: nothing
    changed after the job finished."""
    wanted = {state.value for state in query.states}
    changed = query.since is None or float(query.since) < float(finished_at)
    matching = [(position, t) for position, t in enumerate(tables, 1)
                if changed and (not wanted or t.get("state") in wanted)]
    after = [(position, t) for position, t in matching if position > query.cursor]
    page = after[:query.limit]
    next_cursor: int | None = None
    if query.limit == 0 and after:  # the summary alone: where the first page starts
        next_cursor = query.cursor
    elif len(after) > query.limit > 0:
        next_cursor = page[-1][0]
    return {"tables": [t for _, t in page], "tables_matching": len(matching),
            "next_cursor": next_cursor}
