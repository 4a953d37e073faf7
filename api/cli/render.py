"""Text views of jobs for the CLI: plain columns that read well in a terminal or a log."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

STATUS_COLUMNS = ("TABLE", "STATE", "ROWS", "%", "ROWS/S", "ETA", "CHECKSUM", "ERROR")
JOBS_COLUMNS = ("JOB", "STATE", "TARGET", "SOURCE", "CREATED", "TABLES", "ERROR")


#: Finalize's steps as people call them (worker/jobs/finalize_steps.py names them).
STEP_NAMES = {"merging": "merging tables", "indexing": "building indexes",
              "objects": "sequences, CHECKs, views", "checking": "checks",
              "publishing": "publishing"}
#: Tables that need a look come first: failed, then copying, then the rest in plan order.
STATE_ORDER = {"failed": 0, "copying": 1}


def status(job: dict[str, Any]) -> str:
    """The job header and its summary, then one line per table shown (`job["tables"]`,
    failed and copying first), and how to see the others when not all are shown."""
    head = (f"job {job.get('id')}  {job.get('state')}  target {job.get('target')}  "
            f"from {job.get('source')} (schema {job.get('schema', 'public')})")
    times = f"created {when(job.get('created_at'))}  updated {when(job.get('updated_at'))}"
    lines = [head, times]
    if job.get("from_volume"):  # Redis let the job go: say where this view comes from
        lines.append("note: " + (job.get("note") or "read from the job's record on the volume"))
    if job.get("snapshot"):
        lines.append(moment(job["snapshot"]))
    if job.get("tables_total"):
        lines.append(summary(job))
    if job.get("state") == "finalizing" and step_line(job.get("finalize") or {}):
        lines.append(f"finalize: {step_line(job['finalize'])}")
    if job.get("follow") is not None and job.get("state") == "following":
        lines.append(follow(job["follow"], job.get("cutover")))
    for warning in job.get("warnings") or []:
        lines.append(f"warning: {warning}")
    if job.get("error"):
        lines.append(f"error: {job['error']}")
    tables = ordered(job.get("tables") or [])
    if tables:
        lines += ["", table([STATUS_COLUMNS, *(_table_row(t) for t in tables)])]
    elif job.get("state") in ("queued", "planning"):
        lines += ["", "(no tables yet: the job is being planned)"]
    elif not job.get("tables_total"):
        lines += ["", "(no tables)"]
    total = int(job.get("tables_total") or 0)
    if len(tables) < total:
        lines += ["", f"{len(tables):,} of {total:,} tables shown, those failed or copying: "
                  f"`liteshift status {job.get('id')} --all` lists every table"]
    return "\n".join(lines)


def ordered(tables: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(tables, key=lambda t: STATE_ORDER.get(str(t.get("state")), 2))


def summary(job: dict[str, Any]) -> str:
    """'tables: 2,000 (1,203 verified, 2 copying, 5 failed, 790 pending); rows 1,234/9,876
    12.5%, 3.2k rows/s, ETA 3s'"""
    counts = job.get("table_counts") or {}
    parts = ", ".join(f"{n:,} {state}" for state, n in sorted(
        counts.items(), key=lambda item: STATE_ORDER.get(item[0], 2)) if n)
    line = f"tables: {int(job.get('tables_total') or 0):,}" + (f" ({parts})" if parts else "")
    progress = job.get("progress") or {}
    done, total = progress.get("rows_done"), progress.get("rows_total")
    pct = "100%" if job.get("state") == "done" else percent(done, total, None)
    line += f"; rows {count(done)}/{count(total)} {pct}"
    if progress.get("rows_per_s"):
        line += f", {rate(progress['rows_per_s'])} rows/s, ETA {duration(progress.get('eta_s'))}"
    return line


def step_line(finalize: dict[str, Any]) -> str:
    """Finalize's step under way: 'building indexes 3/10 (orders_by_day)'."""
    step = finalize.get("step")
    if not step:
        return ""
    line = STEP_NAMES.get(step, step)
    if finalize.get("total"):
        line += f" {finalize.get('done', 0)}/{finalize['total']}"
    return line + (f" ({finalize['item']})" if finalize.get("item") else "")


def moment(record: dict[str, Any]) -> str:
    """The one moment of the source the tables are read at: its identity and time."""
    if not record.get("consistent"):
        return f"snapshot: none, consistent: false ({record.get('reason') or 'no reason'})"
    if record.get("kind") == "postgres":
        where = f"LSN {record.get('lsn')}"
    elif record.get("gtid"):
        where = f"GTID {record['gtid']}"
    elif record.get("binlog_file"):
        where = f"binlog {record['binlog_file']}:{record.get('binlog_pos')}"
    else:
        where = "no binlog position"
    return (f"snapshot: {where} at {record.get('at') or '?'} ({record.get('method')}), "
            "consistent: true")


def follow(progress: dict[str, Any], cutover: dict[str, Any] | None) -> str:
    """A following job: how far behind the source its file is, and its pace."""
    lag = progress.get("lag_bytes")
    line = ("following: " + ("starting" if lag is None else
                             f"lag {lag:,} bytes, {progress.get('lag_s', 0):.1f} s behind; "
                             f"{progress.get('changes_per_s', 0):,.0f} changes/s; "
                             f"{progress.get('changes_applied', 0):,} applied"))
    if cutover and cutover.get("state") == "waiting":
        line += "; cutover in progress"
    elif cutover and cutover.get("state") == "timed_out":
        line += f"; last cutover gave up ({cutover.get('error')})"
    return line


def verification(result: dict[str, Any]) -> str:
    if result.get("state") == "error":
        return f"verification failed to run: {result.get('error')}"
    head = f"verification: {result.get('state')}" + (" (source re-read)"
                                                    if result.get("source") else "")
    rows = [("TABLE", "OK", "ROWS", "CHECKSUM", "EXPECTED", "FIRST DIFFERENCE")]
    for t in result.get("tables") or []:
        rows.append((str(t["name"]), "yes" if t["ok"] else "NO", str(t["rows"]), t["checksum"],
                     f"{t['expected_rows']} {t['expected_checksum']}",
                     str(t.get("first_difference") or "")))
    return head + "\n" + table(rows)


def jobs(items: Sequence[dict[str, Any]]) -> str:
    if not items:
        return "no jobs yet: `liteshift submit` starts one"
    rows = [(str(j.get("id")), str(j.get("state")), str(j.get("target")), str(j.get("source")),
             when(j.get("created_at")), str(j.get("tables_total", "-")), str(j.get("error") or ""))
            for j in items]
    return table([JOBS_COLUMNS, *rows])


def workers(found: dict[str, dict[str, Any]]) -> str:
    if not found:
        return ("no worker is running for this queue and Redis: start one with "
                "`liteshift worker`")
    rows = [("WORKER", "COMPILED PARTS")]
    for name, info in sorted(found.items()):
        problems = info.get("problems") or {}
        rows.append((name, "ok" if not problems else
                     "; ".join(f"{part} {why}" for part, why in sorted(problems.items()))))
    return table(rows)


def _table_row(t: dict[str, Any]) -> tuple[str, ...]:
    done, estimated = t.get("rows_done"), t.get("rows_estimated")
    error = str(t.get("error") or "")
    if error and t.get("error_key") is not None:
        error += f" (key {t['error_key']})"
    return (str(t.get("name")), str(t.get("state", "?")),
            f"{count(done)}/{count(estimated)}", percent(done, estimated, t.get("state")),
            rate(t.get("rows_per_s")), duration(t.get("eta_s")),
            str(t.get("checksum") or "-")[:16], error)


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns; the last one is not padded (it holds long error messages)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)),
                                row[-1]]).rstrip()
                     for row in rows)


def count(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) else "?"


def percent(done: Any, estimated: Any, state: Any) -> str:
    if state in ("copied", "verified"):
        return "100%"
    if not isinstance(done, (int, float)) or not isinstance(estimated, (int, float)):
        return "-"
    if estimated <= 0:
        return "-"
    # The estimate comes from planner statistics and can be low: never claim more than
    # 99.9% before the table is actually copied.
    return f"{min(99.9, 100 * done / estimated):.1f}%"


def rate(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or seconds < 0:
        return "-"
    # Rounded up: an ETA of 0.7 s is not "0s", which reads as finished.
    minutes, secs = divmod(math.ceil(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def when(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
