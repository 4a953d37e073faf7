"""plan_job: reflect the source, translate its schema, write the manifest, queue the tables."""

from __future__ import annotations

import shutil
from typing import Any

from worker import sources
from worker.core import filemodes, names
from worker.core.config import Settings
from worker.core.errors import JobCancelled, SchemaError, SourceRejected, VolumeFull
from worker.core.logs import get_logger
from worker.core.model import TablePlan
from worker.follow import prepare as follow_prepare
from worker.jobs import snapshot_holder
from worker.jobs.control import FINALIZE_TASK, Send, choose_tables, queue_copies
from worker.jobs.grouping import group_small_tables
from worker.sources import snapshot
from worker.sources.probe import no_schema
from worker.sources.sealing import unseal
from worker.sources.url import SourceURL, parse_source_url
from worker.state.jobfiles import remove_work_files
from worker.state.lease import Lease
from worker.state.manifest import write_manifest
from worker.state.store import JobState, StateStore, TableState

# Staging files and the merged file exist side by side during finalize, and SQLite's pages
# are not smaller than PostgreSQL's for most data: ask for twice the source size, plus slack.
SPACE_FACTOR = 2.0
SPACE_SLACK_BYTES = 64 * 1024 * 1024


def plan_job(settings: Settings, store: StateStore, send: Send, job_id: str) -> None:
    """Every state move is compare-and-set and a cancel is looked for between the steps, so
    a job cancelled while it is planned is never moved on to copying nor its tables queued
    (JobCancelled ends the task; see control.cancel_job for who frees the target)."""
    log = get_logger(job_id=job_id, step="plan")
    job = store.job(job_id)
    if job is None or JobState(job["state"]) not in (JobState.QUEUED, JobState.PLANNING):
        log.info("plan_skipped", reason="job not waiting to be planned")
        return
    with Lease(store.redis, store.keys, job_id, "plan", settings.lease_ttl_s) as lease:
        if not lease.acquire():
            log.info("plan_skipped", reason="another worker is planning this job")
            return
        _move(store, job_id, JobState.PLANNING, expect=(JobState.QUEUED, JobState.PLANNING))
        log.info("job_planning")
        source = parse_source_url(unseal(settings, job["source_sealed"]),
                              allow=settings.host_allow)
        reader = sources.for_kind(source.kind)
        with reader.connect(source, timeout_s=settings.connect_timeout_s) as conn:
            if not reader.schema_exists(conn, job["schema"]):
                raise SourceRejected(no_schema(job["schema"], source))
            chosen = choose_tables(reader.list_tables(conn, job["schema"]), job["include"],
                                   job["exclude"])
            # The source's names, checked again: submit saw them only through a probe.
            names.check_tables(chosen, error=SchemaError)
            check_cancelled(store, job_id)
            schema = reader.reflect(source, conn, job["schema"], chosen)
        check_cancelled(store, job_id)
        names.check_columns({t.name: [c.name for c in t.columns] for t in schema.tables})
        check_space(settings, sum(t.size_bytes for t in schema.tables))
        plan = reader.translate(schema, job.get("options"))
        check_column_types(job.get("options") or {}, plan.tables)
        check_cancelled(store, job_id)
        job_dir = settings.job_dir(job_id)
        # Planned again (a retry under a new snapshot): no table may resume from rows read
        # at another moment.
        remove_work_files(job_dir)
        follow = bool((job.get("options") or {}).get("follow"))
        if follow:
            store.update_job(job_id, warnings=follow_prepare.prepare(settings, job, source,
                                                                     plan.tables))
        copy_units = group_small_tables(plan.tables, table_bytes=settings.group_table_bytes,
                                        max_tables=settings.group_tables)
        moment = _take_snapshot(settings, job, source, plan.tables, permanent=follow)
        if follow:
            follow_prepare.check_moment(moment)
        write_manifest(job_dir, _manifest_job({**job, "snapshot": moment}), plan.tables,
                       plan.objects)
        _record_tables(store, job_id, plan.tables)
        try:
            # follow_ended: a slot of this plan's, not yet dropped (an earlier plan's was)
            _move(store, job_id, JobState.COPYING, expect=(JobState.PLANNING,),
                  tables=[t.name for t in plan.tables], snapshot=moment,
                  **({"follow_ended": False} if follow else {}))
        except JobCancelled:  # its end did not know these tables yet
            store.expire_with_job(job_id, [t.name for t in plan.tables])
            raise
        log.info("job_planned", tables=len(plan.tables),
                 rows_estimated=sum(t.rows_estimated for t in plan.tables),
                 snapshot=snapshot.public(moment))
    check_cancelled(store, job_id)
    queue_copies(send, job_id, copy_units)
    if not plan.tables:
        send(FINALIZE_TASK, job_id)


def _take_snapshot(settings: Settings, job: dict[str, Any], source: SourceURL,
                   tables: list, *, permanent: bool = False) -> dict[str, Any]:
    """The job's one moment (worker/jobs/snapshot_holder.py holds it open until the copy
    phase ends), or why the job has none: each table is then read at its own moment."""
    if (job.get("options") or {}).get("snapshot") is False:
        return snapshot.not_taken("turned off for this job (--no-snapshot)")
    if not tables:
        return snapshot.not_taken("no tables to copy")
    return snapshot_holder.start(settings, job_id=job["id"], source=source,
                                 permanent=permanent, tables=len(tables))


def _move(store: StateStore, job_id: str, state: JobState, *, expect: tuple[JobState, ...],
          **fields: Any) -> None:
    if not store.set_job_state(job_id, state, expect=expect, **fields):
        raise JobCancelled(f"job is {_state(store, job_id)}, not "
                           f"{' or '.join(s.value for s in expect)}: planning stopped",
                           job_id=job_id)


def check_cancelled(store: StateStore, job_id: str) -> None:
    """Raise JobCancelled if the job was cancelled: before each step that queues or writes."""
    if store.job_state(job_id) == JobState.CANCELLED:
        raise JobCancelled("job cancelled", job_id=job_id)


def _state(store: StateStore, job_id: str) -> str:
    state = store.job_state(job_id)
    return state.value if state else "gone"


def check_column_types(options: dict[str, Any], tables: list[TablePlan]) -> None:
    """Every column_types key names a column the job copies: one that does not would be
    silently ignored."""
    columns = {f"{t.name}.{name}" for t in tables
               for name in [*(c.name for c in t.columns), *t.generated_columns]}
    stray = [key for key in options.get("column_types") or {} if key not in columns]
    if stray:
        raise SchemaError(f"column_types names {names.shown(stray)}, but the tables this job "
                          "copies have no such column: check the spelling (names are "
                          "case-sensitive), then submit the job again")


def space_needed(source_bytes: int) -> int:
    """Free space a job asks for on the data volume, for a source of `source_bytes`."""
    return int(source_bytes * SPACE_FACTOR) + SPACE_SLACK_BYTES


def check_space(settings: Settings, source_bytes: int) -> None:
    filemodes.make_dirs(settings.data_dir)
    free = shutil.disk_usage(settings.data_dir).free
    needed = space_needed(source_bytes)
    if free < needed:
        raise VolumeFull(
            f"not enough space on the data volume: the copy needs about "
            f"{_mb(needed)} (twice the source's {_mb(source_bytes)}) and {_mb(free)} is free; "
            "free some space or use a larger volume, then retry"
        )


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:,.0f} MB"


def _manifest_job(job: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "target", "source", "source_sealed", "source_kind", "schema", "include",
            "exclude", "replace", "options", "created_at", "snapshot")
    return {k: job.get(k) for k in keep}


def _record_tables(store: StateStore, job_id: str, tables: list) -> None:
    pipe = store.redis.pipeline()
    pipe.delete(store.keys.ended(job_id))  # every table pending: none has ended
    for table in tables:
        store.update_table(job_id, table.name, pipeline=pipe, name=table.name,
                           state=TableState.PENDING.value, rows_done=0,
                           rows_estimated=table.rows_estimated, checksum=None, attempts=0,
                           error=None, error_key=None, key=table.key, key_kind=table.key_kind)
    pipe.execute()
