"""A job's snapshot holder: the small process that keeps the source's moment open for the
whole copy phase, then closes it (`python -m worker.jobs.snapshot_holder`).

plan_job starts one per job (start()) on the planning worker. It runs in a session of its
own, detached from the worker (a double fork: init reaps it), so that a worker killed with
its whole process group takes nothing of the job's moment with it: the copies resumed by
other workers still enter the same snapshot. It takes the snapshot, answers the plan with
its record on a pipe, and then only watches, twice a second:

- the job's state in Redis: once the job is no longer planning or copying (finalizing, done,
  failed, cancelled, forgotten), the copy phase is over and the holder closes the snapshot
  and exits. So does a holder the job does not name (a plan that died and was run again
  started another one), and one whose plan never recorded it. A follow job's slot outlives
  the snapshot (it is permanent): the holder drops it too, unless the job goes on to follow
  from it.
- its own connection: when the source ends it (restart, terminated backend), the moment is
  gone; readers that start after that get SnapshotLost and the tables fail, saying why.
- the job's workers, every IDLE_CHECK_S: a copying job with none of its leases held and no
  worker of its queue running (all killed, none restarted) makes no progress, while its
  snapshot keeps the source's old rows (PostgreSQL: its WAL) from being reclaimed. After
  `snapshot_idle_timeout_s` of that, the holder fails the job, saying why and that
  `liteshift retry` plans it again under a new snapshot, then closes the snapshot.

Redis away, or without the job (lost, to be rebuilt from the volume), is the one case where
it cannot learn that the job ended: it holds on while the volume says the job is not over,
and gives up after REDIS_GRACE_S rather than hold the source's old rows (and, for
PostgreSQL, its vacuum horizon) indefinitely.

The request comes as JSON on stdin (it holds the source URL: never argv, which `ps` shows).
"""

from __future__ import annotations

import gc
import json
import os
import secrets
import select
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from worker.core import errors, memory
from worker.core.config import Settings
from worker.core.errors import LiteshiftError, SourceUnavailable
from worker.core.logs import get_logger
from worker.core.redact import redact
from worker.sources import snapshot
from worker.sources.ambient import drop_driver_env, without_driver_env
from worker.sources.standby import Standby, python_main
from worker.sources.url import SourceURL

POLL_S = 0.5  # how soon a holder notices that its job's copy phase ended
PLAN_GRACE_S = 120.0  # a holder its job never named (the plan died) stops after this
REDIS_GRACE_S = 300.0  # Redis unreachable this long: stop holding rather than hold forever
KEEP_STATES = ("planning", "copying")
IDLE_CHECK_S = 2.0  # how often a holder looks for its job's workers (it scans Redis keys)


def start(settings: Settings, *, job_id: str, source: SourceURL,
          permanent: bool = False, tables: int = 1) -> dict[str, Any]:
    """Start the job's holder and return its snapshot record. A source that refuses a
    snapshot (a privilege missing, a server that cannot export one) gives a record saying
    `consistent: false` and why; a source that cannot be reached raises (the plan retries)."""
    request = {"source": source.url, "job_id": job_id, "kind": source.kind,
               "timeout_s": settings.connect_timeout_s, "permanent": permanent,
               "tables": tables}
    proc = _standby.take() or _spawn()
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
        answer = _read_answer(proc.stdout, timeout_s=4 * settings.connect_timeout_s + 10)
    finally:
        proc.stdout.close()
        proc.wait()  # the intermediate process exits at once; the holder lives on
        if _keep_ready:
            _standby.keep()  # for the next job this process plans
    if "snapshot" in answer:
        return dict(answer["snapshot"])
    cls = getattr(errors, answer.get("kind", ""), None)
    if isinstance(cls, type) and issubclass(cls, SourceUnavailable):
        raise SourceUnavailable(answer["message"], job_id=job_id)
    return snapshot.not_taken(answer.get("message") or "the snapshot holder did not answer")


# A holder started ahead of need, its imports done: under load they were most of the
# 1.4-1.8 s a plan waited for its snapshot (ops/bench/RESULTS.md).
_standby = Standby(lambda: _spawn())
_keep_ready = False


def keep_one_ready() -> None:
    """From now on keep a holder started ahead in this process (worker/sources/standby.py)."""
    global _keep_ready
    _keep_ready = True
    _standby.keep()


def _spawn() -> subprocess.Popen[bytes]:
    # memory.ENV: a MySQL holder's children read the tables and build each chunk's payload
    # as a reader process does (worker/core/memory.py); sources/ambient.py: the driver's env
    return subprocess.Popen(python_main("worker.jobs.snapshot_holder"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            start_new_session=True,
                            env=without_driver_env({**memory.ENV, **os.environ}))


def _import_ahead() -> None:
    """What a holder needs, imported before its request comes (a holder kept ready)."""
    import contextlib

    import worker.core.config  # noqa: F401
    import worker.sources.sealing  # noqa: F401
    import worker.state.store  # noqa: F401
    from worker.sources import import_readers

    import_readers()
    for module in snapshot.MODULES.values():
        with contextlib.suppress(ImportError):  # a missing driver is told with its request
            __import__(module)


def _read_answer(stream: Any, *, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([stream], [], [], left)[0]:
            return {"kind": "SourceUnavailable",
                    "message": f"the snapshot holder did not answer within {timeout_s:.0f} s"}
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            break
        data += chunk
    try:
        return dict(json.loads(data or b"{}"))
    except ValueError:
        return {}


def main() -> int:
    _import_ahead()
    # Started with the GC off (standby.python_main): what the imports made is never scanned
    # again; what the holder makes from here on (a MariaDB holder reads tables) is collected.
    gc.freeze()
    gc.enable()
    request = json.loads(sys.stdin.buffer.read() or b"{}")
    if not request:
        return 0  # a holder kept ready whose worker stopped without using it
    if os.fork():
        os._exit(0)  # the worker reaps this one at once; init adopts the holder
    from worker.core.config import get_settings
    from worker.core.logs import configure_logging
    from worker.sources.url import parse_source_url, remember_url_password

    settings = get_settings()
    configure_logging(settings.log_format)
    drop_driver_env()
    remember_url_password(request["source"])
    job_id, holder_id = request["job_id"], uuid.uuid4().hex[:12]
    log = get_logger(job_id=job_id, step="snapshot_holder", holder=holder_id)
    out = sys.stdout.buffer
    try:
        held = snapshot.take(request["kind"], parse_source_url(request["source"],
                                                               allow=settings.host_allow),
                             job_id=job_id, timeout_s=request["timeout_s"],
                             permanent=bool(request.get("permanent")),
                             tables=request.get("tables", 1))
    except LiteshiftError as exc:
        _answer(out, {"kind": type(exc).__name__, "message": redact(str(exc))})
        return 0
    except Exception as exc:  # never a traceback with a URL in it
        _answer(out, {"kind": "LiteshiftError", "message": redact(
            f"taking a snapshot failed: {type(exc).__name__}: {exc}")})
        return 0
    held.record.update(holder=holder_id, holder_pid=os.getpid(),
                       holder_host=socket.gethostname())
    if hasattr(held, "serve"):  # MySQL: the holder reads the tables for the workers
        _serve(settings, held)
    _answer(out, {"snapshot": held.record})
    log.info("snapshot_held", **snapshot.public(held.record) or {})
    try:
        reason = _hold(settings, held, job_id, holder_id)
    finally:
        held.close()
    log.info("snapshot_released", reason=reason)
    if held.record.get("slot_temporary") is False and _slot_unwanted(settings, job_id,
                                                                     holder_id):
        _drop_slot(settings, request, held.record, log)
    return 0


def _slot_unwanted(settings: Settings, job_id: str, holder_id: str) -> bool:
    """Whether no follow will ever read from this holder's permanent slot (a follow job's):
    the job failed, was cancelled or is gone, or took another snapshot. When unsure (Redis
    away, the job lost from it but unfinished on the volume) the slot stays, for the
    reaper's sweep to judge."""
    from worker.state.store import StateStore

    try:
        job = StateStore.from_settings(settings).job(job_id)
    except Exception:  # redis.RedisError and socket errors alike
        return False
    if job is None:
        return not _unfinished_on_volume(settings, job_id)
    if job.get("state") in ("failed", "cancelled"):
        return True
    return bool((job.get("snapshot") or {}).get("holder") != holder_id)


def _drop_slot(settings: Settings, request: dict[str, Any], record: dict[str, Any],
               log: Any) -> None:
    """Best effort: the job's failure path and the reaper's sweep drop it too."""
    from worker.sources.url import parse_source_url

    try:
        source = parse_source_url(request["source"], allow=settings.host_allow)
        if snapshot.drop_slot(request["kind"], source, record,
                              timeout_s=request["timeout_s"]):
            log.info("snapshot_slot_dropped", slot=record["slot"])
    except LiteshiftError as exc:
        log.warning("snapshot_slot_not_dropped", slot=record["slot"], error=str(exc))


def _serve(settings: Settings, held: Any) -> None:
    """Listen for the workers' table requests; a random token, sealed in the record,
    keeps anyone else from reading the source through this port."""
    from worker.sources.sealing import seal

    listener = socket.create_server((settings.snapshot_address, 0))
    port = listener.getsockname()[1]
    host = (socket.gethostname() if settings.snapshot_address in ("0.0.0.0", "::")
            else settings.snapshot_address)
    token = secrets.token_hex(16)
    held.record.update(address=f"{host}:{port}", token_sealed=seal(settings, token))
    held.serve(listener, token)
    listener.close()  # the children accept on their copies


def _answer(out: Any, answer: dict[str, Any]) -> None:
    try:
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
        out.close()
    except OSError:
        pass  # the plan gave up waiting: the job's state tells the holder what to do


def _hold(settings: Settings, held: Any, job_id: str, holder_id: str) -> str:
    """Wait until the copy phase is over (or the moment is lost); returns why it ended."""
    from worker.state.store import StateStore

    store = StateStore.from_settings(settings)
    started = last_seen = time.monotonic()
    unattended = Unattended(settings.snapshot_idle_timeout_s,
                            attended=lambda job: _attended(store, job, settings.queue))
    while True:
        time.sleep(POLL_S)
        if not held.alive():
            return "the source ended the snapshot's session"
        try:
            job = store.job(job_id)
        except Exception:  # redis.RedisError and socket errors alike: Redis is away
            if time.monotonic() - last_seen > REDIS_GRACE_S:
                return f"Redis unreachable for {REDIS_GRACE_S:.0f} s"
            continue
        if job is None and _unfinished_on_volume(settings, job_id):
            # Redis lost the job: the volume says it is not over, and a rebuild (reaper,
            # `liteshift resume`) brings it back with this snapshot, so hold on a while.
            if time.monotonic() - last_seen > REDIS_GRACE_S:
                return f"the job was missing from Redis for {REDIS_GRACE_S:.0f} s"
            continue
        last_seen = time.monotonic()
        reason = _why_stop(job, holder_id, time.monotonic() - started)
        if reason:
            return reason
        try:
            if job is not None and unattended.expired(job):
                reason = f"no worker for {settings.snapshot_idle_timeout_s:.0f} s"
                if _fail_unattended(store, job, settings.snapshot_idle_timeout_s):
                    return reason
        except Exception:  # Redis away: the next turn's store.job() keeps the count
            continue


class Unattended:
    """How long a copying job has had no worker, looked at every IDLE_CHECK_S."""

    def __init__(self, timeout_s: float, *, attended: Callable[[dict[str, Any]], bool]):
        self.timeout_s = timeout_s
        self.attended = attended
        self.since: float | None = None  # when the job was first seen without a worker
        self.checked = float("-inf")

    def expired(self, job: dict[str, Any]) -> bool:
        now = time.monotonic()
        if job.get("state") != "copying":
            self.since = None
            return False
        if now - self.checked < IDLE_CHECK_S:
            return False
        self.checked = now
        if self.attended(job):
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.timeout_s


def _attended(store: Any, job: dict[str, Any], queue: str) -> bool:
    """A worker is on the job (one of its leases is held), or some worker of its queue runs:
    the reaper of a running worker queues the job's stalled tables again, so the job moves
    on."""
    names = ["plan", "finalize", *(f"table:{name}" for name in job.get("tables") or [])]
    return bool(store.any_lease(job["id"], names) or store.any_worker(queue))


def _fail_unattended(store: Any, job: dict[str, Any], timeout_s: float) -> bool:
    """Fail the tables not yet verified, then the job, before its snapshot closes: a worker
    coming back starts no read in a snapshot about to go, and `liteshift retry` (failed
    tables of a job whose snapshot ended) plans the job again under a new one. False when
    the job moved meanwhile (the loop looks again)."""
    from worker.state.store import JobState, TableState

    job_id = job["id"]
    message = (f"job {job_id} had no worker for {timeout_s:.0f} s "
               "(LITESHIFT_SNAPSHOT_IDLE_TIMEOUT_S), so its snapshot of the source was released "
               "rather than keep the source's old rows (and PostgreSQL's WAL) any longer; start "
               f"a worker, then `liteshift retry {job_id}` plans the job again under a new "
               "snapshot and copies every table again")
    names = job.get("tables") or []
    for table in store.tables(job_id, names):
        if table.get("state") not in (TableState.VERIFIED.value, TableState.FAILED.value):
            store.set_table_state(job_id, table["name"], TableState.FAILED, error=message)
    if not store.set_job_state(job_id, JobState.FAILED, expect=(JobState.COPYING,),
                               error=message):
        return False
    get_logger(job_id=job_id, step="snapshot_holder").error("job_failed", error=message)
    return True


def _unfinished_on_volume(settings: Settings, job_id: str) -> bool:
    from worker.state.jobfiles import read_job_record, read_outcome

    job_dir = settings.job_dir(job_id)
    return read_job_record(job_dir) is not None and read_outcome(job_dir) is None


def _why_stop(job: dict[str, Any] | None, holder_id: str, age_s: float) -> str | None:
    if job is None:
        return "the job is gone"
    state = job.get("state")
    if state not in KEEP_STATES:
        return f"the job is {state}"
    named = (job.get("snapshot") or {}).get("holder")
    if named is not None and named != holder_id:
        return "the job holds another snapshot"
    if named is None and (state == "copying" or age_s > PLAN_GRACE_S):
        return "the job's plan never recorded this snapshot"
    return None


if __name__ == "__main__":
    sys.exit(main())
