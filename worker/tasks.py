"""Celery tasks: thin wrappers that call one plain function and map its errors.

Retry policy lives here, not in the copy code: transient source errors are retried with
exponential backoff up to LITESHIFT_SOURCE_RETRY_LIMIT; anything else fails the table (or the
job) with its message.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import redis
import structlog

from worker.celery_app import app, send, settings
from worker.core.errors import JobCancelled, LeaseLost, LiteshiftError
from worker.core.logs import get_logger
from worker.core.redact import redact
from worker.core.serverpaths import hide_paths
from worker.follow import cutover, follower
from worker.jobs import control, copying, finalize, plan, recover, verify
from worker.jobs.control import (
    COPY_TABLES_TASK,
    COPY_TASK,
    FINALIZE_TASK,
    FOLLOW_TASK,
    PLAN_TASK,
    RESUME_TASK,
    VERIFY_TASK,
)
from worker.state.jobfiles import write_json_atomic
from worker.state.store import JobState, StateStore, TableState

_store: StateStore | None = None


def _warm_imports() -> None:
    """Planning imports the drivers, SQLAlchemy and sqlglot, slow the first time. A worker
    imports them when it starts, before its pool forks (the pool's processes share the
    pages), not during its first job. Reader and probe processes never import this module."""
    import sqlalchemy.dialects.mysql.mysqlconnector  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

    import worker.sources.mysql.source  # noqa: F401
    import worker.sources.mysql.translate  # noqa: F401
    import worker.sources.postgres.objects  # noqa: F401
    import worker.sources.postgres.source  # noqa: F401


_warm_imports()


def store() -> StateStore:
    global _store
    if _store is None:
        _store = StateStore.from_settings(settings)
    return _store


def _backoff(retries: int) -> float:
    return min(settings.source_retry_backoff_s * 2**retries, 300.0)


@app.task(bind=True, name=PLAN_TASK)
def plan_job(self: Any, job_id: str) -> None:
    structlog.contextvars.bind_contextvars(job_id=job_id, task_id=self.request.id)
    try:
        plan.plan_job(settings, store(), send, job_id)
    except JobCancelled as exc:
        get_logger().info("plan_stopped", reason=str(exc))
    except LiteshiftError as exc:
        if exc.transient and self.request.retries < settings.source_retry_limit:
            get_logger().warning("plan_retrying", error=str(exc))
            raise self.retry(countdown=_backoff(self.request.retries)) from None
        _fail_job(job_id, exc, release=True)
    except Exception as exc:  # a bug: fail loudly, with the trace in the log
        get_logger().exception("plan_crashed")
        _fail_job(job_id, exc, release=True)
    finally:
        _clean_if_cancelled(job_id)
        structlog.contextvars.clear_contextvars()


@app.task(bind=True, name=COPY_TASK)
def copy_table(self: Any, job_id: str, table: str) -> None:
    structlog.contextvars.bind_contextvars(job_id=job_id, table=table, task_id=self.request.id)
    try:
        _copy_and_map(self, job_id, table,
                      lambda: copying.copy_table(settings, store(), send, job_id, table))
    finally:
        _clean_if_cancelled(job_id)
        structlog.contextvars.clear_contextvars()


@app.task(bind=True, name=COPY_TABLES_TASK)
def copy_tables(self: Any, job_id: str, tables: list[str]) -> None:
    """A group of small tables (worker/jobs/grouping.py); a retry runs the group again, and
    the tables it already copied are skipped."""
    structlog.contextvars.bind_contextvars(job_id=job_id, task_id=self.request.id)
    try:
        with copying.TableGroup(settings, store(), send, job_id, tables) as group:
            for table in group.pending():
                structlog.contextvars.bind_contextvars(table=table)
                if not _copy_and_map(self, job_id, table, functools.partial(group.copy, table)):
                    break
    finally:
        _clean_if_cancelled(job_id)
        structlog.contextvars.clear_contextvars()


def _copy_and_map(task: Any, job_id: str, table: str, copy: Callable[[], None]) -> bool:
    """Copy one table and map its errors: retry a transient one (raises Celery's Retry),
    fail the table otherwise. False when the job was cancelled."""
    try:
        copy()
    except JobCancelled as exc:
        get_logger().info("table_stopped", reason=str(exc))
        return False
    except LeaseLost as exc:
        get_logger().info("table_stopped", reason=str(exc))
    except LiteshiftError as exc:
        if _cancelled(job_id):
            # The cancel deleted the work files under the writer: a table's own file, in a
            # rollback journal, fails to open its journal where its directory was.
            get_logger().info("table_stopped", reason="job cancelled", error=str(exc))
            return False
        if exc.transient and task.request.retries < settings.source_retry_limit:
            get_logger().warning("table_retrying", error=str(exc),
                                 attempt=task.request.retries + 1)
            countdown = _backoff(task.request.retries)
            # retry_at tells the reaper when this table's retry is due: were this worker to
            # die holding the retry's message, the reaper queues the table again after that.
            store().set_table_state(job_id, table, TableState.PENDING, error=str(exc),
                                    retry_at=time.time() + countdown)
            raise task.retry(countdown=countdown) from None
        copying.fail_table(settings, store(), send, job_id, table, exc)
    except Exception as exc:
        get_logger().exception("table_crashed")
        copying.fail_table(settings, store(), send, job_id, table, LiteshiftError(
            f"unexpected error: {redact(repr(exc))}; this is a liteshift bug, please report it",
            job_id=job_id, table=table))
    return True


@app.task(bind=True, name=FINALIZE_TASK)
def finalize_job(self: Any, job_id: str) -> None:
    structlog.contextvars.bind_contextvars(job_id=job_id, task_id=self.request.id)
    try:
        finalize.finalize_job(settings, store(), job_id)
        if store().job_state(job_id) == JobState.FOLLOWING:
            send(FOLLOW_TASK, job_id)
    except LiteshiftError as exc:
        _fail_job(job_id, exc)
    except Exception as exc:
        if _cancelled(job_id):  # its files were removed under the build: expected
            get_logger().info("finalize_stopped", reason="job cancelled", error=repr(exc))
        else:
            get_logger().exception("finalize_crashed")
            _fail_job(job_id, exc)
    finally:
        _clean_if_cancelled(job_id)
        structlog.contextvars.clear_contextvars()


@app.task(bind=True, name=FOLLOW_TASK)
def follow_job(self: Any, job_id: str) -> None:
    """One run of a job's follower; it queues the next run itself, so the follow is a chain
    of short tasks (the reaper queues one again when a worker died holding it)."""
    structlog.contextvars.bind_contextvars(job_id=job_id, task_id=self.request.id)
    try:
        outcome = follower.follow_job(settings, store(), job_id)
        if outcome == "again":
            send(FOLLOW_TASK, job_id)
    except LeaseLost as exc:
        get_logger().info("follow_stopped", reason=str(exc))
    except LiteshiftError as exc:
        if exc.transient and self.request.retries < settings.source_retry_limit:
            get_logger().warning("follow_retrying", error=str(exc))
            raise self.retry(countdown=_backoff(self.request.retries)) from None
        _fail_job(job_id, exc)
    except Exception as exc:
        get_logger().exception("follow_crashed")
        _fail_job(job_id, exc)
    finally:
        structlog.contextvars.clear_contextvars()


@app.task(bind=True, name=RESUME_TASK)
def resume_job(self: Any, job_id: str) -> None:
    structlog.contextvars.bind_contextvars(job_id=job_id, task_id=self.request.id)
    try:
        get_logger().info("job_resumed", outcome=recover.resume_job(settings, store(), send,
                                                                     job_id))
    except LiteshiftError as exc:
        get_logger().error("resume_failed", error=str(exc))
    finally:
        structlog.contextvars.clear_contextvars()


@app.task(bind=True, name=VERIFY_TASK)
def verify_job(self: Any, job_id: str, against_source: bool = False) -> None:
    structlog.contextvars.bind_contextvars(job_id=job_id, task_id=self.request.id)
    try:
        result = verify.verify_job(settings, store(), job_id, against_source=against_source)
    except LiteshiftError as exc:
        result = {"state": "error", "error": hide_paths(str(exc)), "source": against_source}
    except Exception as exc:
        get_logger().exception("verify_crashed")
        result = {"state": "error", "error": redact(hide_paths(repr(exc))),
                  "source": against_source}
    finally:
        structlog.contextvars.clear_contextvars()
    write_json_atomic(verify.verification_path(settings, job_id), result)
    store().update_job(job_id, verification=result)
    get_logger(job_id=job_id).info("job_verified", result=result["state"])


def _fail_job(job_id: str, exc: BaseException, *, release: bool = False) -> None:
    """Fail the job (never a cancelled one); with `release`, a plan that failed, free its
    target too: nothing of the job can write it until a retry plans it again."""
    message = redact(str(exc) if isinstance(exc, LiteshiftError) else
                     f"unexpected error: {exc!r}; this is a liteshift bug, please report it")
    job = store().job(job_id)
    if job and release:  # first: whoever sees the job failed finds its target free
        store().release_target(job["target"], job_id)
    if store().set_job_state(job_id, JobState.FAILED, error=message):
        get_logger().error("job_failed", error=message)
    else:
        get_logger().info("job_stopped", reason="job cancelled", error=message)
    if job and cutover.follows(job):  # a failed follow job's slot must not fill the source
        cutover.end_failed(settings, store(), job)


def _cancelled(job_id: str) -> bool:
    try:
        return store().job_state(job_id) == JobState.CANCELLED
    except redis.RedisError:
        return False  # Redis away: the next task to see the cancel cleans up


def _clean_if_cancelled(job_id: str) -> None:
    """A task that ran beside a cancel may have written in the job's directory after the
    cancel cleaned it (a work file opened, a partial file built): remove that again."""
    if _cancelled(job_id):
        control.clean_cancelled(settings, job_id)
