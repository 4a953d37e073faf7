"""The job's one moment of the source: taken once by its holder, entered by every reader.

A snapshot record (the job's `snapshot` field, and the manifest's) says what the moment is:

    {"consistent": true, "kind": "postgres", "method": "replication_slot" | "pg_export_snapshot",
     "id": <exported snapshot>, "lsn": "0/16B3748", "at": "2026-…Z", "slot": …,
     "holder": <holder id>, "holder_pid": …, "holder_host": …}
    {"consistent": false, "reason": "…"}   each table at its own moment, and why

Each kind's module (postgres/snapshot.py, mysql/snapshot.py) takes and enters it; this module
picks the kind, importing its driver only then, like worker/sources/__init__.py does.
"""

from __future__ import annotations

import importlib
from typing import Any

from worker.sources.url import SourceURL

MODULES = {"postgres": "worker.sources.postgres.snapshot",
           "mysql": "worker.sources.mysql.snapshot"}
PRIVATE = ("token_sealed",)  # never shown in a view or a report


def take(kind: str, source: SourceURL, *, job_id: str, timeout_s: int,
         permanent: bool = False, tables: int = 1) -> Any:
    """Take the moment for a job of `tables` tables; the returned holding (alive(), close(),
    record) must be kept open for as long as readers enter it. `permanent`: a follow job's
    slot outlives the holder (the follow reads the source's changes from it after the
    copy)."""
    # PostgreSQL's slot is temporary by default; MySQL's binlog needs nothing kept.
    extra = {"temporary": False} if permanent and kind == "postgres" else {}
    return importlib.import_module(MODULES[kind]).take(source, job_id=job_id,
                                                       timeout_s=timeout_s, tables=tables,
                                                       **extra)


def drop_slot(kind: str, source: SourceURL, record: dict[str, Any], *,
              timeout_s: int) -> bool:
    """Drop what a `permanent` moment left on the source for a follow that will not run
    (PostgreSQL: its slot); True when something was dropped. MySQL keeps nothing."""
    if kind != "postgres" or not record.get("slot"):
        return False
    return bool(importlib.import_module(MODULES[kind]).drop_slot(source, record,
                                                                 timeout_s=timeout_s))


def enter(kind: str, conn: Any, record: dict[str, Any] | None) -> None:
    """Make `conn`'s next read see the job's moment; nothing when the job has none."""
    if record and record.get("consistent") and record.get("id"):
        importlib.import_module(MODULES[kind]).enter(conn, record)


def consistent(record: dict[str, Any] | None) -> bool:
    return bool(record and record.get("consistent"))


def not_taken(reason: str) -> dict[str, Any]:
    return {"consistent": False, "reason": reason}


def public(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The record as people see it (status, report)."""
    if record is None:
        return None
    return {k: v for k, v in record.items() if k not in PRIVATE}
