"""The plan's part for a follow job: refuse a source that cannot be followed, before
anything is copied, and set up what the change stream needs (PostgreSQL: the publication,
which must exist before the snapshot's slot)."""

from __future__ import annotations

import importlib
from typing import Any

from worker import sources
from worker.core.config import Settings
from worker.core.errors import SourceRejected
from worker.core.logs import get_logger
from worker.core.model import TablePlan
from worker.sources.url import SourceURL


def prepare(settings: Settings, job: dict[str, Any], source: SourceURL,
            plans: list[TablePlan]) -> list[str]:
    """Check and prepare the source; returns warnings for the job."""
    module = importlib.import_module(f"worker.sources.{source.kind}.changes")
    with sources.for_kind(source.kind).connect(source,
                                               timeout_s=settings.connect_timeout_s) as conn:
        warnings: list[str] = module.preflight(conn, schema=job["schema"], plans=plans)
        module.prepare(conn, job_id=job["id"], schema=job["schema"], plans=plans)
    for warning in warnings:
        get_logger(job_id=job["id"], step="plan").warning("follow_warning", warning=warning)
    return warnings


def check_moment(moment: dict[str, Any]) -> None:
    """A follow starts where the copy's moment is: without a slot there is no stream."""
    if moment.get("consistent") and (moment.get("slot") or moment.get("binlog_file")):
        return
    why = moment.get("slot_unavailable") or moment.get("reason") or "no snapshot was taken"
    raise SourceRejected(f"following the source needs a replication slot taken with the "
                         f"copy's snapshot, and none could be had ({why})")
