"""follow_job: keep the job's built file in step with the source, until cutover or cancel.

One follower per job at a time, under the job's `follow` lease: it runs for FOLLOW_RUN_S,
then hands over to a fresh task (the worker stays free for other work, and a follower lost
with its worker is re-queued by the reaper once its lease expires). Each run resumes from
the file's own position (worker/follow/position.py): whatever it read but had not committed
is read again from the source, whatever it committed is skipped.

The loop: read the source's changes from the oldest transaction it has not released; apply
them in batches of at most follow_batch_changes (one SQLite transaction each, with the
position); release the source up to the last whole transaction applied; when a read returned
everything there was, the file holds every transaction committed before that read began.
Cutover (worker/follow/cutover.py) waits for that to pass the source's position at the time
it was asked for.
"""

from __future__ import annotations

import importlib
import sqlite3
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import redis

from worker import sources
from worker.core.config import Settings
from worker.core.errors import LeaseLost
from worker.core.logs import get_logger
from worker.follow import cutover, position
from worker.follow.apply import Applier, Batch
from worker.follow.changes import WHOLE, Begin, ChangeStream, Commit, Position, Row, Truncate
from worker.sources.sealing import unseal
from worker.sources.url import parse_source_url
from worker.state.lease import Lease
from worker.state.manifest import read_manifest
from worker.state.store import JobState, StateStore

FOLLOW_RUN_S = 60.0  # one task's share of the follow, before it hands over to the next
MIRROR_EVERY_S = 0.5  # progress written to Redis at most this often
#: How often the follower asks the source whether its tables are still there (a DROP
#: reaches no change stream on PostgreSQL).
TABLES_CHECK_EVERY_S = 2.0
RATE_WINDOW_S = 10.0


@dataclass
class Progress:
    """The follow as `status` shows it: lag behind the source, and pace."""

    applied: int = 0
    caught_up: int = 0  # every transaction committed before this source position is applied
    lag_bytes: int = 0
    lag_s: float = 0.0
    marks: list[tuple[float, int]] = field(default_factory=list)

    def rate(self) -> float:
        now = time.monotonic()
        self.marks.append((now, self.applied))
        while len(self.marks) > 2 and now - self.marks[0][0] > RATE_WINDOW_S:
            self.marks.pop(0)
        since, applied = self.marks[0]
        return (self.applied - applied) / (now - since) if now > since else 0.0


def follow_job(settings: Settings, store: StateStore, job_id: str, *,
               run_for_s: float = FOLLOW_RUN_S) -> str:
    """Follow for up to run_for_s; returns "again" (queue the next run), or how it ended."""
    log = get_logger(job_id=job_id, step="follow")
    job = store.job(job_id)
    if job is None:
        return "gone"
    state = JobState(job["state"])
    if state in (JobState.CANCELLED, JobState.FAILED):
        cutover.end_on_source(settings, store, job)
        return state.value
    if state != JobState.FOLLOWING:
        log.info("follow_skipped", reason=f"job is {state.value}")
        return "skipped"
    job_dir = settings.job_dir(job_id)
    if cutover.published_already(settings, store, job):
        return "done"
    db = sqlite3.connect(cutover.followed_path(job_dir, job["target"]))
    try:
        floor = position.read(db).token if position.present(db) else 0
        lease = Lease(store.redis, store.keys, job_id, "follow", settings.lease_ttl_s)
        if not lease.acquire(floor=floor):
            log.info("follow_skipped", reason="another worker follows this job")
            return "skipped"
        with lease, ExitStack() as stack:
            _, plans, _ = read_manifest(job_dir)
            source = parse_source_url(unseal(settings, job["source_sealed"]),
                              allow=settings.host_allow)
            conn = stack.enter_context(sources.for_kind(source.kind).connect(
                source, timeout_s=settings.connect_timeout_s))
            module = importlib.import_module(f"worker.sources.{source.kind}.changes")
            stream: ChangeStream = module.open_changes(conn, job=job, plans=plans,
                                                       source=source)
            if not position.present(db):  # killed between the final checks and publishing
                return cutover.publish(settings, store, job, db, stream, plans)
            position.upgrade(db)
            return _loop(settings, store, job, db, stream, Applier(db, plans), lease,
                         run_for_s, log)
    finally:
        db.close()


def _loop(settings: Settings, store: StateStore, job: dict[str, Any], db: sqlite3.Connection,
          stream: ChangeStream, applier: Applier, lease: Lease, run_for_s: float,
          log: Any) -> str:
    job_id = job["id"]
    followed = position.read(db)
    followed.token = lease.token
    # Where the stream starts: the file's record (also finishes a release a follower killed
    # right after its commit did not make).
    stream.release(followed.resume)
    progress = Progress()
    deadline, mirrored, checked = time.monotonic() + run_for_s, 0.0, 0.0
    while True:
        if lease.lost.is_set():
            raise LeaseLost("this job's follow lease was taken over", job_id=job_id)
        job = _job(store, job_id) or job
        if job.get("state") == JobState.CANCELLED.value:
            cutover.end_follow(settings, store, job, stream, db)
            return "cancelled"
        if time.monotonic() - checked > TABLES_CHECK_EVERY_S:
            checked = time.monotonic()
            stream.check_tables()
        wanted = cutover.target(store, job, stream)
        before = stream.flush_position()
        _read_and_apply(settings, stream, applier, followed, progress, log)
        if stream.drained:
            progress.caught_up, progress.lag_bytes, progress.lag_s = before, 0, 0.0
        if wanted is not None and stream.drained and before >= wanted:
            stream.check_tables()  # a table dropped since the last check is not published
            return cutover.finish(settings, store, job, db, stream, applier.plans.values())
        if time.monotonic() - mirrored > MIRROR_EVERY_S:
            mirrored = time.monotonic()
            _mirror(store, job_id, followed, progress)
        if wanted is not None and cutover.expired(store, job):
            continue
        if time.monotonic() > deadline and wanted is None:
            return "again"
        if stream.drained:
            _wait(store, job_id, 0.02 if wanted is not None else settings.follow_idle_s)


def _read_and_apply(settings: Settings, stream: ChangeStream, applier: Applier,
                    followed: position.Followed, progress: Progress, log: Any) -> None:
    """One read of the source's changes, applied in bounded batches; then the source
    releases what is durable in the file."""
    batch, txn, ordinal, committed_at = Batch(), 0, 0, None
    started = followed.resume
    for event in stream.read(settings.follow_batch_changes):
        if isinstance(event, Begin):
            txn, ordinal, committed_at = event.txn, 0, event.committed_at
        elif isinstance(event, Row | Truncate):
            ordinal += 1
            if (txn, ordinal) > followed.position:
                batch.add(event, (txn, ordinal))
                if batch.rows >= settings.follow_batch_changes:
                    _commit(stream, applier, batch, followed, progress, committed_at, log)
                    batch = Batch()
        elif isinstance(event, Commit):
            whole: Position = (event.txn, WHOLE)
            if whole > followed.position and whole > (batch.position or (0, 0)):
                batch.position, batch.resume = whole, event.resume
    if batch.position is not None and batch.position > followed.position:
        _commit(stream, applier, batch, followed, progress, committed_at, log)
    if followed.resume > started:
        stream.release(followed.resume)


def _commit(stream: ChangeStream, applier: Applier, batch: Batch,
            followed: position.Followed, progress: Progress, committed_at: float | None,
            log: Any) -> None:
    started = time.monotonic()
    applied = applier.apply(batch, stream.convert, followed)
    progress.applied += applied
    progress.lag_s = max(0.0, time.time() - committed_at) if committed_at else 0.0
    progress.lag_bytes = stream.lag_bytes(followed.resume)
    log.info("follow_batch", changes=applied, txn=followed.position[0],
             resume=followed.resume, lag_bytes=progress.lag_bytes,
             lag_s=round(progress.lag_s, 3), seconds=round(time.monotonic() - started, 3),
             changes_per_s=round(progress.rate(), 1))


def _wait(store: StateStore, job_id: str, seconds: float) -> None:
    """The source had nothing more: wait for it, woken at once by a cutover or a cancel."""
    try:
        store.wait_for_wake(job_id, seconds)
    except redis.RedisError:
        time.sleep(seconds)


def _job(store: StateStore, job_id: str) -> dict[str, Any] | None:
    try:
        return store.job(job_id)
    except redis.RedisError:
        return None  # the file is the truth; Redis catches up later


def _mirror(store: StateStore, job_id: str, followed: position.Followed,
            progress: Progress) -> None:
    try:
        store.update_job(job_id, follow={
            "lag_bytes": progress.lag_bytes, "lag_s": round(progress.lag_s, 3),
            "changes_per_s": round(progress.rate(), 1), "changes_applied": followed.changes,
            "caught_up": progress.caught_up, "at": time.time()})
    except redis.RedisError:
        pass
