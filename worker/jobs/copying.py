"""copy_table: one table from source to its work file, resumably, under a lease;
TableGroup: a group of small tables copied the same way, one after another, by one task."""

from __future__ import annotations

import math
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from worker import sources
from worker.core.checksum import as_hex
from worker.core.config import Settings
from worker.core.errors import (
    JobCancelled,
    LeaseLost,
    LiteshiftError,
    VerificationFailed,
    VolumeFull,
)
from worker.core.logs import get_logger
from worker.core.model import TablePlan
from worker.follow import cutover
from worker.jobs.control import FINALIZE_TASK, Send
from worker.jobs.plan import space_needed
from worker.sources import snapshot
from worker.sources.reader_process import chunks_from_child, chunks_from_holder
from worker.sources.sealing import unseal, unseal_secret
from worker.sources.url import SourceURL, parse_source_url
from worker.sqlite.chunks import Chunk, Progress, copy_rows
from worker.sqlite.workfile import Checkpoint, WorkFile, open_work_db
from worker.state.lease import Lease
from worker.state.manifest import read_manifest, table_plan
from worker.state.store import JobState, StateStore, TableState

DONE_STATES = (TableState.COPIED.value, TableState.VERIFIED.value)


def copy_table(settings: Settings, store: StateStore, send: Send, job_id: str,
               table: str) -> None:
    log = get_logger(job_id=job_id, table=table)
    job = store.job(job_id)
    if job is None or JobState(job["state"]) != JobState.COPYING:
        log.info("table_skipped", reason=f"job is {job and job['state']}")
        return
    current = store.table(job_id, table) or {}
    if current.get("state") in DONE_STATES:
        log.info("table_skipped", reason="already copied")
        finish_if_complete(settings, store, send, job_id)
        return
    _copy_one(settings, store, job, table, log)
    finish_if_complete(settings, store, send, job_id)


class TableGroup:
    """The tables of a group (worker/jobs/grouping.py), copied one after another by one
    task over one source connection and one connection to their shared work file. Each
    table is copied as copy_table copies one (its own lease, checkpoint and progress), so any
    of them can also be copied alone: a retry, the reaper, a resume."""

    def __init__(self, settings: Settings, store: StateStore, send: Send, job_id: str,
                 tables: list[str]):
        self.settings, self.store, self.send = settings, store, send
        self.job_id, self.tables = job_id, tables
        self.job: dict[str, Any] = {}
        self.source: SourceURL | None = None
        self._conn: Any = None
        self._conn_stack = ExitStack()
        # The connection's read transaction is in the job's moment: the group's tables are
        # read in one transaction rather than each entering the moment again (three round
        # trips). Any error drops the connection, and this with it.
        self.in_moment = False
        self._work_dbs: dict[Path, sqlite3.Connection] = {}
        self._waiting: list[str] = []
        self._touched = 0.0

    def __enter__(self) -> TableGroup:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.drop_connection()
        for db in self._work_dbs.values():
            db.close()
        if exc_type is None:
            finish_if_complete(self.settings, self.store, self.send, self.job_id)

    def pending(self) -> list[str]:
        """The group's tables still to copy, in order; none when the job is not copying."""
        job = self.store.job(self.job_id)
        if job is None or JobState(job["state"]) != JobState.COPYING:
            get_logger(job_id=self.job_id).info("tables_skipped",
                                                reason=f"job is {job and job['state']}")
            return []
        self.job = job
        self.source = parse_source_url(unseal(self.settings, job["source_sealed"]),
                                       allow=self.settings.host_allow)
        done = {t["name"] for t in self.store.tables(self.job_id, self.tables)
                if t.get("state") in DONE_STATES}
        self._waiting = [t for t in self.tables if t not in done]
        self._touch_waiting()
        return list(self._waiting)

    def copy(self, table: str) -> None:
        """Copy one of the group's tables; raises as copy_table does."""
        if table in self._waiting:
            self._waiting.remove(table)
        try:
            _copy_one(self.settings, self.store, self.job, table,
                      get_logger(job_id=self.job_id, table=table), group=self)
        except BaseException:
            self.drop_connection()  # a read stopped halfway may leave it unusable
            raise
        if time.monotonic() - self._touched > self.settings.lease_ttl_s / 2:
            self._touch_waiting()

    def _touch_waiting(self) -> None:
        """Mark the tables still waiting in this task as recently seen: the reaper queues a
        `pending` table that stayed quiet while the queue was empty (its task lost), and
        these wait in a live task. Were this worker to die, they go quiet and are queued."""
        self._touched = time.monotonic()
        if self._waiting:
            pipe = self.store.redis.pipeline(transaction=False)
            for name in self._waiting:
                self.store.update_table(self.job_id, name, pipeline=pipe)
            pipe.execute()

    def connection(self) -> Any:
        """The group's source connection, opened at its first use."""
        if self._conn is None:
            assert self.source is not None, "pending() first"
            reader = sources.for_kind(self.source.kind)
            self._conn = self._conn_stack.enter_context(
                reader.connect(self.source, timeout_s=self.settings.connect_timeout_s))
        return self._conn

    def work_db(self, path: Path) -> sqlite3.Connection:
        """One connection to a work file for all of the group's tables in it: a table's
        WorkFile closing it would checkpoint and sync the WAL for each table."""
        if path not in self._work_dbs:
            self._work_dbs[path] = open_work_db(path, self.tables)
        return self._work_dbs[path]

    def drop_connection(self) -> None:
        """Close the group's source connection; the next table opens another."""
        self._conn, self.in_moment = None, False
        stack, self._conn_stack = self._conn_stack, ExitStack()
        try:
            stack.close()
        except Exception as exc:  # closing a broken connection: the table's error matters
            get_logger(job_id=self.job_id).warning("source_close_failed", error=repr(exc))


def _copy_one(settings: Settings, store: StateStore, job: dict[str, Any], table: str,
              log: Any, *, group: TableGroup | None = None) -> None:
    job_id = job["id"]
    job_dir = settings.job_dir(job_id)
    plan = table_plan(job_dir, table)
    path = job_dir / "tables" / plan.file
    work: WorkFile | None = None
    try:
        work = WorkFile(path, plan, db=group.work_db(path) if group else None)
        lease = Lease(store.redis, store.keys, job_id, f"table:{table}", settings.lease_ttl_s)
        if not lease.acquire(floor=work.checkpoint().token):
            log.info("table_skipped", reason="another worker holds this table's lease")
            return
        with lease:
            if store.job_state(job_id) != JobState.COPYING:  # cancelled since the look above
                raise JobCancelled("job cancelled", job_id=job_id, table=table)
            _copy_under_lease(settings, store, job, plan, work, lease, log, group=group)
    except VolumeFull as exc:
        raise VolumeFull(_space_needed(settings, job_dir, plan, exc), job_id=job_id,
                         table=table) from None
    finally:
        if work is not None:
            work.close()


def _space_needed(settings: Settings, job_dir: Path, plan: TablePlan, exc: VolumeFull) -> str:
    """The volume-full message, plus how much space the job needs (the plan's own estimate:
    twice the source's size) and how much is free now."""
    _, plans, _ = read_manifest(job_dir)
    source_bytes = sum(p.size_bytes for p in plans)
    free = shutil.disk_usage(settings.data_dir).free
    return (f"{exc}. The job needs about {_mb(space_needed(source_bytes))} on "
            f"the data volume (twice the source's {_mb(source_bytes)}; table "
            f"{plan.name!r} is {_mb(plan.size_bytes)} of it) and {_mb(free)} is free now")


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:,.1f} MB"


def _copy_under_lease(settings: Settings, store: StateStore, job: dict[str, Any],
                      plan: TablePlan, work: WorkFile, lease: Lease, log: Any, *,
                      group: TableGroup | None = None) -> None:
    job_id = job["id"]
    store.set_table_state(job_id, plan.name, TableState.COPYING, new_attempt=True, error=None,
                          error_key=None)
    resume = work.checkpoint()
    log.info("table_copying", rows_done=resume.rows, resume_after=resume.last_key,
             token=lease.token)
    options = job.get("options") or {}
    source = (group.source if group and group.source else
              parse_source_url(unseal(settings, job["source_sealed"]),
                               allow=settings.host_allow))

    def before_commit() -> None:
        if lease.lost.is_set():
            raise LeaseLost("this table's lease was taken over", job_id=job_id, table=plan.name)
        try:
            cancelled = store.job_state(job_id) == JobState.CANCELLED
        except redis.RedisError:
            return  # the work file is the truth; Redis can catch up later
        if cancelled:
            raise JobCancelled("job cancelled", job_id=job_id, table=plan.name)

    chunk_rows = options.get("chunk_rows") or settings.chunk_rows
    chunk_bytes = options.get("chunk_bytes") or settings.chunk_bytes
    mirror = _Mirror(store, job_id, plan, log, hold_last=group is not None)
    with ExitStack() as stack:
        final = copy_rows(
            plan=plan, work=work, token=lease.token, chunk_rows=chunk_rows,
            chunk_bytes=chunk_bytes, before_commit=before_commit,
            after_commit=mirror.committed,
            read_ahead=group is None,  # a group's tables are small
            **_reader(settings, stack, source, job["schema"], plan, chunk_rows, chunk_bytes,
                      job.get("snapshot"), log=log, group=group),
        )
    verify_work_file(work, final)
    started = time.monotonic()
    if indexes := work.build_indexes(lease.token):
        log.info("table_indexed", indexes=indexes, seconds=round(time.monotonic() - started, 3))
    pipe = store.redis.pipeline(transaction=True)
    mirror.flush(pipe)
    store.set_table_state(job_id, plan.name, TableState.VERIFIED, pipeline=pipe,
                          rows_done=final.rows,
                          rows_estimated=final.rows,  # counted now, no longer estimated
                          checksum=as_hex(final.checksum), lossy=final.lossy, eta_s=0)
    pipe.execute()
    log.info("table_verified", rows=final.rows, checksum=as_hex(final.checksum),
             lossy=final.lossy)


def _reader(settings: Settings, stack: ExitStack, source: SourceURL, schema: str,
            plan: TablePlan, chunk_rows: int, chunk_bytes: int,
            moment: dict[str, Any] | None, *, log: Any, group: TableGroup | None = None,
            ) -> dict[str, Any]:
    """copy_rows' reader: a child process for a big table (two cores), else the rows of a
    connection: the group's, or one that `stack` closes; and a child process for the rest
    of a table in which a row longer than a chunk shows up, that connection closed first
    (its driver keeps a buffer the row's size). Each read, first or resumed, enters the
    job's moment (worker/sources/snapshot.py)."""
    if moment and moment.get("consistent") and moment.get("address"):  # MySQL's moment
        token = unseal_secret(settings, moment["token_sealed"])

        def from_holder(after: Any) -> Iterator[Chunk]:
            return chunks_from_holder(
                address=moment["address"], token=token, schema=schema, plan=plan,
                after=after, chunk_rows=chunk_rows, chunk_bytes=chunk_bytes,
                connect_timeout_s=settings.connect_timeout_s)
        return {"chunk_source": from_holder}

    def from_child(after: Any) -> Iterator[Chunk]:
        return chunks_from_child(
            source_url=source.url, source_allow=source.allow.text, schema=schema,
            plan=plan, after=after, chunk_rows=chunk_rows, chunk_bytes=chunk_bytes,
            connect_timeout_s=settings.connect_timeout_s, snapshot=moment)
    if 0 <= settings.reader_process_bytes <= plan.size_bytes:
        return {"chunk_source": from_child}
    reader = sources.for_kind(source.kind)
    own = stack.enter_context(ExitStack())  # this table's own connection
    conn = (group.connection() if group else
            own.enter_context(reader.connect(source, timeout_s=settings.connect_timeout_s)))

    def rows(after: Any) -> Any:
        if group is None or not group.in_moment:
            snapshot.enter(source.kind, conn, moment)
        if group is not None:  # its next tables are read in the same transaction
            group.in_moment = True
        return reader.stream_table(conn, schema=schema, plan=plan, after=after)

    def big_rows(after: Any) -> Iterator[Chunk]:
        log.info("table_to_reader_process", reason="a row longer than a chunk",
                 resume_after=after)
        if group is not None:
            group.drop_connection()
        else:
            own.close()
        return from_child(after)
    return {"source": rows, "big_row_source": big_rows}


class _Mirror:
    """Each committed chunk's progress to Redis. With `hold_last` (a group's small table,
    most often one chunk), a chunk's progress waits for the next chunk or for the table's
    end, and then goes in the same round trip as its state: one round trip less per table."""

    def __init__(self, store: StateStore, job_id: str, plan: TablePlan, log: Any, *,
                 hold_last: bool):
        self.store, self.job_id, self.plan, self.log = store, job_id, plan, log
        self.hold_last = hold_last
        self.held: Progress | None = None

    def committed(self, p: Progress) -> None:
        if not self.hold_last:
            _mirror(self.store, self.job_id, self.plan, p, self.log)
            return
        if self.held is not None:
            _mirror(self.store, self.job_id, self.plan, self.held, self.log)
        self.held = p

    def flush(self, pipe: Any) -> None:
        """The held progress, into `pipe` (the caller executes it)."""
        if self.held is not None:
            _mirror_into(pipe, self.store, self.job_id, self.plan, self.held, self.log)
            self.held = None


def _mirror(store: StateStore, job_id: str, plan: TablePlan, p: Progress, log: Any) -> None:
    """After a chunk is durable: one Redis round trip and one log line. Redis being away
    costs only the mirror, never the copy."""
    try:
        pipe = store.redis.pipeline(transaction=False)
        _mirror_into(pipe, store, job_id, plan, p, log)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("progress_mirror_failed", error=str(exc))


def _mirror_into(pipe: Any, store: StateStore, job_id: str, plan: TablePlan, p: Progress,
                 log: Any) -> None:
    """The chunk's log line, and its progress written into `pipe`."""
    total = max(plan.rows_estimated, p.rows_done)
    rate = p.rows_copied_now / p.elapsed_s if p.elapsed_s > 0 else 0.0  # the attempt's
    # The ETA follows the last seconds' pace (chunks.RecentRate), known from the second
    # commit on: the first one's rate is mostly the reader's start.
    pace = p.recent_rows_per_s
    # Past the estimate the rows left are unknown: no ETA rather than a false 0. Rounded
    # up to a tenth, so that rows still to come never show as 0 s (which reads as done).
    eta = (math.ceil((total - p.rows_done) / pace * 10) / 10
           if pace and plan.rows_estimated >= p.rows_done else None)
    fields = {"rows_done": p.rows_done, "rows_estimated": total, "last_key": p.last_key,
              "checksum": as_hex(p.checksum), "rows_per_s": round(rate), "eta_s": eta}
    log.info("chunk_committed", rows_done=p.rows_done, rows_total=total,
             chunk_rows=p.chunk_rows, chunk_bytes=p.chunk_bytes, rows_per_s=round(rate),
             eta_s=eta, last_key=p.last_key)
    store.update_table(job_id, plan.name, pipeline=pipe, **fields)
    store.add_event(job_id, "chunk_committed", pipeline=pipe, table=plan.name, **fields)
    store.add_bytes_done(job_id, plan.name, p.chunk_bytes, pipeline=pipe)
    store.observe("chunk_commit_seconds", p.commit_s, pipeline=pipe)


def verify_work_file(work: WorkFile, expected: Checkpoint) -> None:
    """Every chunk was read back from SQLite and checked against its checksum before it
    was committed (WorkFile.commit_chunk); what is left to prove is that the table holds
    those chunks and nothing else."""
    rows = work.count()
    if rows != expected.rows:
        raise VerificationFailed(
            f"table {work.plan.name!r} holds {rows} rows, but {expected.rows} rows were "
            "written: SQLite lost or gained rows; retry the table, and report this if it "
            "repeats", table=work.plan.name)


def fail_table(settings: Settings, store: StateStore, send: Send, job_id: str, table: str,
               error: LiteshiftError) -> None:
    key = getattr(error, "offending_key", None)
    store.set_table_state(job_id, table, TableState.FAILED, error=str(error), error_key=key)
    get_logger(job_id=job_id, table=table).error("table_failed", error=str(error),
                                                 error_key=key)
    finish_if_complete(settings, store, send, job_id)


def finish_if_complete(settings: Settings, store: StateStore, send: Send, job_id: str) -> None:
    """When every table is verified, queue finalize; when every table has ended and some
    failed, the job fails, naming them (the others stay copied, ready for a retry), and a
    follow job's slot is dropped at once (cutover.end_failed)."""
    job = store.job(job_id)
    if job is None or JobState(job["state"]) != JobState.COPYING:
        return
    if store.tables_ended(job_id) < len(job.get("tables") or []):
        return  # a table still copying looks again at its own end
    tables = store.tables(job_id, job.get("tables") or [])
    states = [t.get("state") for t in tables]
    if len(tables) == len(job.get("tables") or []) and all(
            s == TableState.VERIFIED.value for s in states):
        send(FINALIZE_TASK, job_id)
        return
    if all(s in (TableState.VERIFIED.value, TableState.FAILED.value) for s in states):
        failed = [t["name"] for t in tables if t.get("state") == TableState.FAILED.value]
        if store.set_job_state(
                job_id, JobState.FAILED, expect=(JobState.COPYING,),
                error=f"{len(failed)} table(s) failed: {', '.join(failed)}; see each table's "
                      f"error, fix the cause, then `liteshift retry {job_id}`"):
            if cutover.follows(job):
                cutover.end_failed(settings, store, job)
