"""`liteshift verify JOB [--source]`: re-read the published file (and the source) and compare.

Reading SQLite back recomputes each table's row count and checksum, which must equal the
report's. With the source, its rows are read again in key order, converted the same way, and
checksummed; where they differ, the first differing key is found by looking each source row
up in SQLite by its key (only then: the fast path is one checksum per table).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from worker import sources
from worker.core.checksum import as_hex, cursor_checksum, fold
from worker.core.config import Settings
from worker.core.errors import InputError
from worker.core.identifiers import quote
from worker.core.model import TablePlan
from worker.sources.sealing import unseal
from worker.sources.url import parse_source_url
from worker.sqlite.chunks import Rows, make_chunks
from worker.state.jobfiles import read_json
from worker.state.manifest import read_manifest
from worker.state.store import JobState, StateStore
from worker.state.targets import published_path, report_path

SCAN_BATCH = 5_000


def verify_job(settings: Settings, store: StateStore, job_id: str, *,
               against_source: bool = False) -> dict[str, Any]:
    job = store.job(job_id)
    if job is None or job.get("state") != JobState.DONE.value:
        raise InputError(f"job {job_id} is not done: only a published file can be verified")
    report = read_json(report_path(settings.data_dir, job["target"])) or {}
    if report.get("job_id") != job_id:
        raise InputError(f"the report for {job['target']!r} belongs to job "
                         f"{report.get('job_id')}; verify that job instead")
    _, plans, _ = read_manifest(settings.job_dir(job_id))
    expected = {t["name"]: t for t in report["tables"]}
    published = published_path(settings.data_dir, job["target"])
    db = sqlite3.connect(f"{published.absolute().as_uri()}?mode=ro", uri=True)
    try:
        tables = [_verify_table(db, plan, expected[plan.name]) for plan in plans]
        if against_source:
            _compare_source(settings, job, db, plans, tables)
    finally:
        db.close()
    ok = all(t["ok"] for t in tables)
    return {"state": "ok" if ok else "mismatch", "source": against_source,
            "finished_at": time.time(), "tables": tables}


def _verify_table(db: sqlite3.Connection, plan: TablePlan, expected: dict[str, Any]) -> dict:
    rows, checksum = _sqlite_checksum(db, plan)
    ok = rows == expected["rows"] and as_hex(checksum) == expected["checksum"]
    return {"name": plan.name, "ok": ok, "rows": rows, "checksum": as_hex(checksum),
            "expected_rows": expected["rows"], "expected_checksum": expected["checksum"]}


def _sqlite_checksum(db: sqlite3.Connection, plan: TablePlan) -> tuple[int, int]:
    columns = ", ".join(quote(c.name) for c in plan.columns)
    return cursor_checksum(db.execute(f"SELECT {columns} FROM {quote(plan.name)}"))


def _compare_source(settings: Settings, job: dict[str, Any], db: sqlite3.Connection,
                    plans: list[TablePlan], results: list[dict[str, Any]]) -> None:
    source = parse_source_url(unseal(settings, job["source_sealed"]),
                              allow=settings.host_allow)
    reader = sources.for_kind(source.kind)
    with reader.connect(source, timeout_s=settings.connect_timeout_s) as conn:
        for plan, result in zip(plans, results):
            def rows(plan: TablePlan = plan) -> Rows:
                return reader.stream_table(conn, schema=job["schema"], plan=plan, after=None)
            count = checksum = 0
            for chunk in make_chunks(rows(), plan, chunk_rows=settings.chunk_rows,
                                     chunk_bytes=settings.chunk_bytes):
                count += chunk.row_count
                checksum = fold(checksum, chunk.checksum)
            same = count == result["rows"] and as_hex(checksum) == result["checksum"]
            result.update(source_rows=count, source_checksum=as_hex(checksum),
                          ok=result["ok"] and same)
            if not same:
                result["first_difference"] = _first_difference(db, plan, rows())


def _first_difference(db: sqlite3.Connection, plan: TablePlan,
                      rows: Rows) -> dict[str, Any] | None:
    """The first source row, in key order, that SQLite lacks or holds differently."""
    if not plan.key:
        return {"note": "the table has no key: rows cannot be matched one by one"}
    names = [c.name for c in plan.columns]
    key_index = [names.index(k) for k in plan.key]
    where = " AND ".join(f"{quote(k)} IS ?" for k in plan.key)
    query = f"SELECT {', '.join(map(quote, names))} FROM {quote(plan.name)} WHERE {where}"
    for chunk in make_chunks(rows, plan, chunk_rows=SCAN_BATCH, chunk_bytes=1 << 26):
        for row in chunk.rows:
            key = [row[i] for i in key_index]
            found = db.execute(query, key).fetchone()
            if found != row:
                return {"key": dict(zip(plan.key, key)),
                        "problem": "missing in SQLite" if found is None else "values differ"}
    return {"note": "every source row is in SQLite: SQLite holds extra rows"}


def verification_path(settings: Settings, job_id: str) -> Path:
    return settings.job_dir(job_id) / "verification.json"
