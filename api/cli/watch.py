"""`liteshift watch`: a job's progress at a glance.

On a terminal, a live view drawn by Rich: the whole job's line (rows done of all, rate,
ETA), a bar per table copying or failed (every table, when the job has only a few), and
finalize's steps with their own progress. Off a terminal (a log, a CI job), one line per
change of state, and the whole job's line every `every_s` seconds while nothing changes, never
the whole table each tick.

Each tick asks the API for the job's summary and a bounded set of tables (JobFeed): those
worth drawing, or those changed since the last tick; never every table of a big job.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from api.cli.render import STEP_NAMES, count, duration, ordered, percent, rate, step_line

FINISHED = {"done": 0, "failed": 1, "cancelled": 1}  # job state -> exit code of `watch`
STATE_STYLES = {"verified": "green", "copied": "green", "done": "bold green",
                "failed": "bold red", "cancelled": "yellow", "copying": "cyan",
                "finalizing": "magenta"}


MAX_PAGE = 1000  # the API's largest page
#: Table rows a live view draws at most: a terminal's height, not a job's size.
LIVE_ROWS = 30
#: Seconds a `since` reaches back before the last answer's `as_of`: workers' clocks may be a
#: little behind the API's; a change seen twice is said once (its state did not change).
CLOCK_SLACK_S = 2.0
Get = Callable[..., dict[str, Any]]  # ApiClient.get(path, **params)


class JobFeed:
    """What `watch` fetches each tick. `live()`: the summary and the tables to draw, every
    table while the job has at most LIVE_ROWS, else those copying or failed. `changed()`:
    the summary and the tables changed since the last call (a log's lines); on the first
    call, what `live()` gives."""

    def __init__(self, get: Get, job_id: str):
        self.get, self.path = get, f"/jobs/{job_id}"
        self.big = False
        self.as_of: float | None = None

    def live(self) -> dict[str, Any]:
        if not self.big:
            job = self.get(self.path, limit=LIVE_ROWS)
            self.big = job.get("next") is not None
            if not self.big:
                return job
        return self.get(self.path, limit=LIVE_ROWS, state=["copying", "failed"])

    def changed(self) -> dict[str, Any]:
        if self.as_of is None:  # where each table is: a small job's all, a big one's under way
            job = self.live()
        else:
            job = self.get(self.path, limit=MAX_PAGE,
                           since=max(0.0, self.as_of - CLOCK_SLACK_S))
            tables, link = list(job["tables"]), job.get("next")
            while link:  # more tables changed in one tick than a page holds
                page = self.get(link)
                tables += page["tables"]
                link = page.get("next")
            job["tables"] = tables
        self.as_of = job.get("as_of")
        return job


def totals(job: dict[str, Any]) -> dict[str, Any]:
    """The whole job, from the API's summary over every table: rows done and expected, the
    rate of the tables copying now, and the ETA at that rate."""
    progress = job.get("progress") or {}
    counts = job.get("table_counts") or {}
    return {"rows_done": int(progress.get("rows_done") or 0),
            "rows_total": int(progress.get("rows_total") or 0),
            "rows_per_s": progress.get("rows_per_s"), "eta_s": progress.get("eta_s"),
            "tables": int(job.get("tables_total") or 0),
            "tables_done": int(counts.get("verified", 0)) + int(counts.get("copied", 0))}


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
            f"{t['tables_done']:,}/{t['tables']:,} tables")
    if t["rows_per_s"]:
        line += f", {rate(t['rows_per_s'])} rows/s, ETA {duration(t['eta_s'])}"
    return line


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
    tables = ordered(job.get("tables") or [])
    if tables:
        parts.append(_tables(tables))
    if len(tables) < t["tables"] and state not in FINISHED:
        parts.append(Text(f"{len(tables)} of {t['tables']:,} tables shown, those copying or "
                          "failed", style="dim"))
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


def changes(before: dict[str, Any] | None, job: dict[str, Any],
            known: dict[str, str]) -> list[str]:
    """Lines for what changed since `before`: the job's state, a table's (`known` holds the
    state each table was last said to be in, and is updated), finalize's step. A table first
    seen pending gets no line: nothing has happened to it yet."""
    old = before or {}
    lines = []
    if old.get("state") != job.get("state"):
        lines.append(job_line(job) + (f": {job['error']}" if job.get("error") else ""))
    for t in job.get("tables") or []:
        name, state = str(t.get("name")), str(t.get("state"))
        if known.get(name, "pending") != state:
            lines.append(f"table {name} {state}: "
                         f"{count(t.get('rows_done'))}/{count(t.get('rows_estimated'))} rows"
                         + (f": {t['error']}" if t.get("error") else ""))
        known[name] = state
    old_step = (old.get("finalize") or {}).get("step")
    new = job.get("finalize") or {}
    if new.get("step") and new.get("step") != old_step:
        lines.append(f"finalize: {step_line(new)}")
    if job.get("state") == "done" and old.get("state") != "done" and new.get("steps"):
        lines.append("finalize took " + ", ".join(
            f"{STEP_NAMES.get(s['step'], s['step'])} {s.get('seconds', 0):.1f}s"
            for s in new["steps"]))
    return lines


def watch(get: Get, job_id: str, *, interval_s: float, every_s: float,
          out: TextIO | None = None) -> dict[str, Any]:
    """Follow the job until it ends; returns its last view."""
    out = out or sys.stdout
    feed = JobFeed(get, job_id)
    if out.isatty():
        return _watch_live(feed, interval_s, Console(file=out))
    return _watch_lines(feed, interval_s, every_s, out)


def _watch_live(feed: JobFeed, interval_s: float, console: Console) -> dict[str, Any]:
    job = feed.live()
    with Live(live_view(job), console=console, auto_refresh=False) as live:
        while job.get("state") not in FINISHED:
            time.sleep(interval_s)
            job = feed.live()
            live.update(live_view(job), refresh=True)
    return job


def _watch_lines(feed: JobFeed, interval_s: float, every_s: float,
                 out: TextIO) -> dict[str, Any]:
    before: dict[str, Any] | None = None
    known: dict[str, str] = {}
    last_line = time.monotonic()
    while True:
        job = feed.changed()
        lines = changes(before, job, known)
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
