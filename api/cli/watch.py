"""`liteshift watch`: a job's progress at a glance.

On a terminal, a live view drawn by Rich: the whole job's line (rows done of all, rate,
ETA), a bar per table, and finalize's steps with their own progress. Off a terminal (a log,
a CI job), one line per change of state, and the whole job's line every `every_s` seconds
while nothing changes, never the whole table each tick.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from api.cli.render import count, duration, percent, rate

FINISHED = {"done": 0, "failed": 1, "cancelled": 1}  # job state -> exit code of `watch`
STEP_NAMES = {"merging": "merging tables", "indexing": "building indexes",
              "objects": "sequences, CHECKs, views", "checking": "checks",
              "publishing": "publishing"}
STATE_STYLES = {"verified": "green", "copied": "green", "done": "bold green",
                "failed": "bold red", "cancelled": "yellow", "copying": "cyan",
                "finalizing": "magenta"}


def totals(job: dict[str, Any]) -> dict[str, Any]:
    """The whole job: rows done and expected over every table, the rate of the tables
    copying now, and the ETA at that rate."""
    tables = job.get("tables") or []
    done = sum(int(t.get("rows_done") or 0) for t in tables)
    total = sum(max(int(t.get("rows_estimated") or 0), int(t.get("rows_done") or 0))
                for t in tables)
    copying = [t for t in tables if t.get("state") == "copying"]
    speed = sum(float(t.get("rows_per_s") or 0) for t in copying) if copying else None
    eta = math.ceil((total - done) / speed * 10) / 10 if speed and total > done else None
    return {"rows_done": done, "rows_total": total, "rows_per_s": speed, "eta_s": eta,
            "tables": len(tables),
            "tables_done": sum(t.get("state") in ("verified", "copied") for t in tables)}


def job_line(job: dict[str, Any]) -> str:
    """One line for the whole job: what a person reads first, and what a log gets."""
    line = f"job {job.get('id')} {job.get('state')}: {numbers(job)}"
    now = step_line(job.get("finalize") or {})
    if job.get("state") == "finalizing" and now:
        return f"{line}; finalize: {now}"
    follow = job.get("follow") or {}
    if job.get("state") == "following" and follow.get("lag_s") is not None:
        return (f"{line}; following: {duration(follow['lag_s'])} behind, "
                f"{count(follow.get('changes_applied'))} changes applied")
    return line


def numbers(job: dict[str, Any]) -> str:
    """'1,234,567/3,200,000 rows 38.6%, 3/8 tables, 215.0k rows/s, ETA 9s'"""
    t = totals(job)
    pct = ("100%" if job.get("state") == "done"
           else percent(t["rows_done"], t["rows_total"], None))
    line = (f"{count(t['rows_done'])}/{count(t['rows_total'])} rows {pct}, "
            f"{t['tables_done']}/{t['tables']} tables")
    if t["rows_per_s"]:
        line += f", {rate(t['rows_per_s'])} rows/s, ETA {duration(t['eta_s'])}"
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


def live_view(job: dict[str, Any]) -> RenderableType:
    """The terminal view: the whole job's line, a bar per table, finalize's steps."""
    t = totals(job)
    state = str(job.get("state"))
    head = Text.assemble((f"job {job.get('id')} ", "bold"), (state, STATE_STYLES.get(state, "")),
                         f"  target {job.get('target')}  from {job.get('source')}")
    whole = Table.grid(padding=(0, 2))
    whole.add_row(ProgressBar(total=max(t["rows_total"], 1),
                              completed=t["rows_total"] if state == "done" else t["rows_done"],
                              width=40),
                  Text(numbers(job)))
    parts: list[RenderableType] = [head, whole]
    if state == "following":
        parts.append(Text(job_line(job).split("; ", 1)[-1], style="cyan"))
    if job.get("error"):
        parts.append(Text(f"error: {job['error']}", style="red"))
    tables = job.get("tables") or []
    if tables:
        parts.append(_tables(tables))
    finalize = job.get("finalize") or {}
    if finalize.get("steps") or finalize.get("step"):
        parts.append(_finalize(finalize))
    return Group(*parts)


def _tables(tables: list[dict[str, Any]]) -> Table:
    grid = Table(box=None, padding=(0, 1), show_edge=False)
    for column in ("TABLE", "STATE", "", "ROWS", "%", "ROWS/S", "ETA", "ERROR"):
        grid.add_column(column, no_wrap=column != "ERROR",
                        justify="right" if column in ("ROWS", "%", "ROWS/S", "ETA") else "left")
    for t in tables:
        done, estimated = int(t.get("rows_done") or 0), int(t.get("rows_estimated") or 0)
        state = str(t.get("state", "?"))
        finished = state in ("copied", "verified")
        grid.add_row(str(t.get("name")), Text(state, STATE_STYLES.get(state, "")),
                     ProgressBar(total=max(estimated, done, 1),
                                 completed=max(estimated, done, 1) if finished else done,
                                 width=24),
                     f"{count(done)}/{count(estimated)}", percent(done, estimated, state),
                     rate(t.get("rows_per_s")), duration(t.get("eta_s")),
                     Text(str(t.get("error") or ""), style="red"))
    return grid


def _finalize(finalize: dict[str, Any]) -> Table:
    grid = Table(box=None, padding=(0, 1), show_edge=False, title="finalize",
                 title_justify="left", title_style="bold")
    for column in ("", "STEP", "", "PROGRESS", "TIME"):
        grid.add_column(column, no_wrap=True)
    for done in finalize.get("steps") or []:
        total = int(done.get("total") or 0)
        grid.add_row(Text("✓", "green"), STEP_NAMES.get(done["step"], done["step"]),
                     ProgressBar(total=max(total, 1), completed=max(total, 1), width=24),
                     f"{total}/{total}" if total else "", f"{done.get('seconds', 0):.1f}s")
    if finalize.get("step"):
        total, now = int(finalize.get("total") or 0), int(finalize.get("done") or 0)
        grid.add_row(Text("▸", "cyan"), STEP_NAMES.get(finalize["step"], finalize["step"]),
                     ProgressBar(total=max(total, 1), completed=now if total else 0,
                                 width=24, pulse=not total),
                     f"{now}/{total}" + (f" {finalize['item']}" if finalize.get("item")
                                         else "") if total else str(finalize.get("item") or ""),
                     "")
    return grid


def changes(before: dict[str, Any] | None, job: dict[str, Any]) -> list[str]:
    """Lines for what changed since `before`: the job's state, a table's, finalize's step."""
    old = before or {}
    lines = []
    if old.get("state") != job.get("state"):
        lines.append(job_line(job) + (f": {job['error']}" if job.get("error") else ""))
    old_tables = {t.get("name"): t for t in old.get("tables") or []}
    for t in job.get("tables") or []:
        if old_tables.get(t.get("name"), {}).get("state") != t.get("state"):
            lines.append(f"table {t.get('name')} {t.get('state')}: "
                         f"{count(t.get('rows_done'))}/{count(t.get('rows_estimated'))} rows"
                         + (f": {t['error']}" if t.get("error") else ""))
    old_step = (old.get("finalize") or {}).get("step")
    new = job.get("finalize") or {}
    if new.get("step") and new.get("step") != old_step:
        lines.append(f"finalize: {step_line(new)}")
    if job.get("state") == "done" and old.get("state") != "done" and new.get("steps"):
        lines.append("finalize took " + ", ".join(
            f"{STEP_NAMES.get(s['step'], s['step'])} {s.get('seconds', 0):.1f}s"
            for s in new["steps"]))
    return lines


def watch(fetch: Callable[[], dict[str, Any]], *, interval_s: float, every_s: float,
          out: TextIO | None = None) -> dict[str, Any]:
    """Follow the job until it ends; returns its last view."""
    out = out or sys.stdout
    if out.isatty():
        return _watch_live(fetch, interval_s, Console(file=out))
    return _watch_lines(fetch, interval_s, every_s, out)


def _watch_live(fetch: Callable[[], dict[str, Any]], interval_s: float,
                console: Console) -> dict[str, Any]:
    job = fetch()
    with Live(live_view(job), console=console, auto_refresh=False) as live:
        while job.get("state") not in FINISHED:
            time.sleep(interval_s)
            job = fetch()
            live.update(live_view(job), refresh=True)
    return job


def _watch_lines(fetch: Callable[[], dict[str, Any]], interval_s: float, every_s: float,
                 out: TextIO) -> dict[str, Any]:
    before: dict[str, Any] | None = None
    last_line = time.monotonic()
    while True:
        job = fetch()
        lines = changes(before, job)
        if not lines and time.monotonic() - last_line >= every_s:
            lines = [job_line(job)]
        stamp = time.strftime("%H:%M:%S")
        for line in lines:
            out.write(f"{stamp} {line}\n")
        if lines:
            out.flush()
            last_line = time.monotonic()
        if job.get("state") in FINISHED:
            return job
        before = job
        time.sleep(interval_s)
