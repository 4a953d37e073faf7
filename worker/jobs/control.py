"""What the API (and tests) do to jobs: submit, look, retry, cancel. No database drivers here.

Enqueueing goes through a `send` callable taking a task name and its arguments, so the API
sends tasks by name without importing worker code that loads drivers.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from worker.core import names, profiles
from worker.core.config import Settings
from worker.core.errors import InputError, TargetConflict
from worker.sources import snapshot
from worker.sources.sealing import seal
from worker.sources.url import describe_source, parse_source_url, resolve_source
from worker.state import pages
from worker.state.jobfiles import remove_work_files, write_job_record, write_outcome
from worker.state.pages import TableQuery
from worker.state.store import JobState, StateStore, TableState
from worker.state.targets import check_target, published_path

Send = Callable[..., Any]  # send(task_name, *args)

PLAN_TASK = "liteshift.plan_job"
COPY_TASK = "liteshift.copy_table"
COPY_TABLES_TASK = "liteshift.copy_tables"  # a group of small tables (worker/jobs/grouping.py)
FINALIZE_TASK = "liteshift.finalize_job"
RESUME_TASK = "liteshift.resume_job"
VERIFY_TASK = "liteshift.verify_job"
FOLLOW_TASK = "liteshift.follow_job"


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def submit_job(settings: Settings, store: StateStore, send: Send, *, source: str, target: str,
               schema: str = "public", tables: list[str] | None = None,
               exclude: list[str] | None = None, replace: bool = False,
               options: dict[str, Any] | None = None, source_tables: list[str] | None = None,
               ) -> str:
    """Record a job and queue its planning. `source_tables`, when the caller probed the
    source, lets unknown names in `tables`/`exclude`, and names SQLite cannot hold, be
    refused before anything is queued."""
    check_request(settings, target=target, tables=tables, exclude=exclude, options=options)
    url = resolve_source(settings.sources, source)
    parsed = parse_source_url(url)
    if parsed.kind == "mysql" and schema == "public":
        schema = parsed.database  # MySQL has no schemas in a database: say what is copied
    options = dict(options or {})
    options.setdefault("profile", "ecto")
    if options.get("follow") and options.get("snapshot") is False:
        raise InputError("--follow needs the copy's snapshot (the change stream starts at "
                         "it): drop --no-snapshot")
    if source_tables is not None:
        _check_table_names(tables or [], exclude or [], source_tables, schema)
        chosen = choose_tables(source_tables, tables, exclude or [])
        names.check_tables(chosen)
        _check_column_tables(options, chosen)
    if published_path(settings.data_dir, target).exists() and not replace:
        raise TargetConflict(
            f"{target}.db already exists on the data volume: choose another target name, "
            "or ask to replace it (--replace; the old file is kept beside the new one)"
        )
    job_id = new_job_id()
    holder = store.claim_target(target, job_id)
    if holder:
        raise TargetConflict(f"job {holder} is already writing target {target!r}: wait for it, "
                         "or cancel it first")
    record = {
        "target": target, "source": describe_source(source, url),
        # A named source seals only its name: the URL never leaves the workers' settings.
        "source_sealed": seal(settings, source),
        "source_kind": parsed.kind, "schema": schema, "include": tables or None,
        "exclude": exclude or [], "replace": replace, "options": options, "tables": [],
        "error": None,
    }
    store.create_job(job_id, record)
    # On the volume too, so the job survives losing Redis before it was planned.
    write_job_record(settings.job_dir(job_id), {**record, "id": job_id})
    send(PLAN_TASK, job_id)
    return job_id


def queue_copies(send: Send, job_id: str, units: list[list[str]]) -> None:
    """A task per copy unit: a table alone, or a group of small tables."""
    for unit in units:
        if len(unit) == 1:
            send(COPY_TASK, job_id, unit[0])
        else:
            send(COPY_TABLES_TASK, job_id, unit)


def check_request(settings: Settings, *, target: str, tables: list[str] | None,
                  exclude: list[str] | None, options: dict[str, Any] | None) -> None:
    """What a request can be refused for without asking the source: the API runs this
    before it starts a probe, and submit_job again."""
    check_target(target)
    if tables is not None and not tables:
        raise InputError("tables: [] names no table: omit it (or send null) to copy every "
                         "table, or name the tables to copy")
    names.check_listed("tables", tables, max_names=settings.max_listed_tables)
    names.check_listed("exclude", exclude, max_names=settings.max_listed_tables)
    names.check_tables(tables or [])
    profiles.check_options(options or {})


def choose_tables(available: list[str], include: list[str] | None,
                  exclude: list[str]) -> list[str]:
    """The tables a job copies: the named ones (else all), less the excluded ones."""
    known = set(available)
    unknown = [n for n in [*(include or []), *exclude] if n not in known]
    if unknown:
        more = f" and {len(available) - 20} more" if len(available) > 20 else ""
        raise InputError(f"unknown table(s) {names.shown(unknown)}; the source has: "
                         f"{', '.join(available[:20]) + more or '(no tables)'}")
    chosen = include if include else available
    skipped = set(exclude)
    return [n for n in chosen if n not in skipped]


def _check_table_names(include: list[str], exclude: list[str], known: list[str],
                       schema: str) -> None:
    present = set(known)
    unknown = [name for name in [*include, *exclude] if name not in present]
    if unknown:
        sample = names.shown(sorted(known), 20) or "(none)"
        raise InputError(f"unknown table(s) {names.shown(unknown)} in schema {schema!r}; "
                         f"tables there: {sample}")


def _check_column_tables(options: dict[str, Any], chosen: list[str]) -> None:
    """column_types naming a table the job does not copy would be silently ignored."""
    copied = set(chosen)
    stray = [key for key in (options.get("column_types") or {})
             if not any(key.startswith(f"{t}.") for t in _prefixes(key) if t in copied)]
    if stray:
        raise InputError(f"column_types names {names.shown(stray)}, but the job copies no "
                         "such table: write 'table.column' for a table it copies")


def _prefixes(key: str) -> list[str]:
    """Every table name `key` ('table.column') can start with: names may hold dots."""
    return [key[:i] for i, ch in enumerate(key) if ch == "."]


def job_view(store: StateStore, job_id: str,
             query: TableQuery | None = None) -> dict[str, Any]:
    """A job as people see it: no sealed secrets; the summary of all its tables
    (`tables_total`, `table_counts` by state, `progress`) and one page of them (`tables`,
    `tables_matching`, `next_cursor`), by default the first DEFAULT_PAGE in plan order."""
    page = pages.job_page(store, job_id, query or TableQuery())
    if page is None:
        raise InputError(f"no job {job_id!r}: `liteshift jobs` lists the known ones")
    job: dict[str, Any] = page["job"]
    job.pop("source_sealed", None)
    if job.get("snapshot") is not None:
        job["snapshot"] = snapshot.public(job["snapshot"])
    done, total, speed = page["rows_done"], page["rows_total"], page["rows_per_s"]
    job["progress"] = {"rows_done": done, "rows_total": total, "rows_per_s": speed or None,
                       "eta_s": (math.ceil((total - done) / speed * 10) / 10
                                 if speed and total > done else None)}
    job["tables_total"] = page["tables_total"]
    job["table_counts"] = page["table_counts"]
    job["tables"] = page["tables"]
    job["tables_matching"] = page["matching"]
    job["next_cursor"] = page["next_cursor"]
    return job


def list_jobs(store: StateStore, limit: int = 50) -> list[dict[str, Any]]:
    """The newest jobs, at most `limit` (see jobs_page)."""
    return jobs_page(store, limit=limit)[0]


def jobs_page(store: StateStore, *, limit: int = 50,
              cursor: int = 0) -> tuple[list[dict[str, Any]], int | None]:
    """Jobs newest first, a page at a time (pages.jobs_page), without sealed secrets; and
    the next page's cursor (None on the last)."""
    found, next_cursor = pages.jobs_page(store, cursor=cursor, limit=limit)
    for job in found:
        job.pop("source_sealed", None)
    return found, next_cursor


def retry_job(store: StateStore, send: Send, job_id: str,
              tables: list[str] | None = None) -> list[str]:
    """Re-run failed tables (all, or the named ones); each resumes from its checkpoint."""
    job = store.job(job_id)
    if job is None:
        raise InputError(f"no job {job_id!r}: `liteshift jobs` lists the known ones")
    state = JobState(job["state"])
    if state == JobState.CANCELLED:
        raise InputError(f"job {job_id} was cancelled; submit it again instead")
    if state == JobState.DONE:
        raise InputError(f"job {job_id} is done; nothing to retry")
    names = job.get("tables") or []
    if not names:  # failed while planning: plan again
        if state != JobState.FAILED:
            raise InputError(f"job {job_id} is {state.value}; only failed work can be retried")
        if tables:
            raise InputError(f"job {job_id} failed before its tables were planned "
                             f"({job.get('error')}); retry it without --table")
        holder = store.claim_target(job["target"], job_id)  # freed when the plan failed
        if holder:
            raise TargetConflict(f"job {holder} is writing target {job['target']!r} now: "
                                 "wait for it, or cancel it first")
        _move(store, job_id, JobState.QUEUED, expect=(JobState.FAILED,))
        send(PLAN_TASK, job_id)
        return []
    states = {t["name"]: t for t in store.tables(job_id, names)}
    failed = [n for n in names if states.get(n, {}).get("state") == TableState.FAILED.value]
    # A failed job's snapshot was released with its copy phase (a copying job's still
    # lives: its failed tables resume in it).
    if failed and state == JobState.FAILED and snapshot.consistent(job.get("snapshot")):
        if not tables:
            return _retry_at_a_new_moment(store, send, job_id, names)
        store.update_job(job_id, snapshot=snapshot.not_taken(
            f"table(s) {', '.join(tables)} were retried alone after the job's snapshot "
            "ended: they were read at a later moment than the others"))
    if tables:
        unknown = [t for t in tables if t not in states]
        if unknown:
            raise InputError(f"job {job_id} has no table(s) {', '.join(map(repr, unknown))}")
        not_failed = [t for t in tables if t not in failed]
        if not_failed:
            raise InputError(f"table(s) {', '.join(map(repr, not_failed))} did not fail; "
                             "only failed tables can be retried")
        failed = tables
    if not failed:
        if state == JobState.FAILED:  # finalize failed: run it again
            _move(store, job_id, JobState.FINALIZING, expect=(JobState.FAILED,))
            send(FINALIZE_TASK, job_id)
            return []
        raise InputError(f"job {job_id} has no failed tables to retry")
    for name in failed:
        store.set_table_state(job_id, name, TableState.PENDING, error=None, error_key=None)
    _move(store, job_id, JobState.COPYING, expect=(JobState.FAILED, JobState.COPYING))
    for name in failed:
        send(COPY_TASK, job_id, name)
    return failed


def _retry_at_a_new_moment(store: StateStore, send: Send, job_id: str,
                           names: list[str]) -> list[str]:
    """A failed job read at one moment: its snapshot ended with the copy phase, and tables
    read at another moment need not agree with the ones already copied. So the job is
    planned again under a new snapshot and every table is copied again. (Retrying named
    tables instead copies only those, and the job is no longer one moment: its snapshot
    record says so.)"""
    _move(store, job_id, JobState.QUEUED, expect=(JobState.FAILED,))
    send(PLAN_TASK, job_id)
    return names


def _move(store: StateStore, job_id: str, state: JobState, *,
          expect: tuple[JobState, ...]) -> None:
    """A retry's state move, refused if the job moved meanwhile (a cancel, say)."""
    if not store.set_job_state(job_id, state, expect=expect, error=None):
        now = store.job_state(job_id)
        raise InputError(f"job {job_id} is {now.value if now else 'gone'} now; "
                         "nothing to retry")


def request_verify(store: StateStore, send: Send, job_id: str, *, against_source: bool) -> None:
    job = store.job(job_id)
    if job is None:
        raise InputError(f"no job {job_id!r}: `liteshift jobs` lists the known ones")
    if job["state"] != JobState.DONE.value:
        raise InputError(f"job {job_id} is {job['state']}: only a published file can be "
                         "verified")
    store.update_job(job_id, verification={"state": "running", "source": against_source})
    send(VERIFY_TASK, job_id, against_source)


def request_resume(settings: Settings, store: StateStore, send: Send, job_id: str) -> None:
    """Resume is for after a crash or a Redis loss, so the job may exist only on the volume."""
    if store.job(job_id) is None and not (settings.job_dir(job_id) / "job.json").exists():
        raise InputError(f"no job {job_id!r} in Redis or on the data volume")
    send(RESUME_TASK, job_id)


def forgotten_why(settings: Settings) -> str:
    """Why Redis may not know a job that is on the volume, for messages."""
    if not settings.job_retention_s:
        return "Redis lost it (was it restarted?)"
    return (f"a finished job's is kept {_duration(settings.job_retention_s)} "
            "(LITESHIFT_JOB_RETENTION_S), or Redis lost it")


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return f"{seconds} s"


def request_cutover(store: StateStore, send: Send, job_id: str, *,
                    timeout_s: float) -> dict[str, Any]:
    """Ask the job's follower to catch up with the source and publish (the app's writes
    stopped first). The follower does it: it is the file's one writer."""
    job = store.job(job_id)
    if job is None:
        raise InputError(f"no job {job_id!r}: `liteshift jobs` lists the known ones")
    if not (job.get("options") or {}).get("follow"):
        raise InputError(f"job {job_id} does not follow its source (submit with --follow): "
                         "there is nothing to cut over")
    if job["state"] != JobState.FOLLOWING.value:
        raise InputError(f"job {job_id} is {job['state']}: cutover needs a job that is "
                         "following (wait until `liteshift status` says following)")
    asked = {"state": "waiting", "requested_at": time.time(), "timeout_s": timeout_s}
    with store.redis.pipeline() as pipe:
        store.update_job(job_id, pipe, cutover=asked)
        store.wake_follower(job_id, pipe)
        pipe.execute()
    send(FOLLOW_TASK, job_id)  # in case no follower runs right now; a second one waits
    return asked


def cancel_job(settings: Settings, store: StateStore, job_id: str,
               send: Send | None = None) -> None:
    """Mark the job cancelled (workers stop before their next chunk commits), record that on
    the volume so no recovery revives it, delete its work files, and free its target.

    The target is freed at once because no task of the job can write it any more: state
    moves are compare-and-set (StateStore.set_job_state) and never leave `cancelled`, so a
    plan in flight cannot move the job on to copying, and finalize publishes only after
    StateStore.begin_publishing, which a cancelled job refuses (and which, once granted,
    makes this cancel refused instead). Tasks still running write only in the job's own
    directory; each one that sees the cancel removes what it left there (clean_cancelled)."""
    job = store.job(job_id)
    if job is None:
        raise InputError(f"no job {job_id!r}: `liteshift jobs` lists the known ones")
    cancellable = [s for s in JobState if not s.finished or s == JobState.FAILED]
    if not store.set_job_state(job_id, JobState.CANCELLED, expect=cancellable,
                               error="cancelled by request"):
        now = store.job(job_id) or job
        if now.get("publishing"):
            raise InputError(f"job {job_id} is publishing its file: too late to cancel")
        raise InputError(f"job {job_id} is already {now['state']}")
    write_outcome(settings.job_dir(job_id), JobState.CANCELLED.value)
    clean_cancelled(settings, job_id)
    store.release_target(job["target"], job_id)
    if send is not None and (job.get("options") or {}).get("follow"):
        store.wake_follower(job_id)  # a running follower ends the follow at once
        send(FOLLOW_TASK, job_id)  # ends the follow on the source: its slot is dropped


def clean_cancelled(settings: Settings, job_id: str) -> None:
    """Delete a cancelled job's work files and partial file; its records (job.json, the
    manifest, outcome.json) stay. Run by the cancel and again by each task that sees it."""
    remove_work_files(settings.job_dir(job_id), partial=True)
