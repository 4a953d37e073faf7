"""Fixtures for the end-to-end tests: real PostgreSQL, real Redis, real Celery workers.

Each test gets its own PostgreSQL database, its own Redis key prefix and Celery queue (so
tests never see each other's work and nothing else in Redis is flushed), and its own data
volume under tmp_path. A service that is down fails the test with the command to start it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from celery import Celery

from worker.core.config import Settings
from worker.jobs import control
from worker.state.store import StateStore

# LITESHIFT_READER_PROCESS_BYTES=0 ops/test.sh: every table through worker/sources/reader_process.py
READER_PROCESS_BYTES = os.environ.get("LITESHIFT_READER_PROCESS_BYTES")

REPO = Path(__file__).resolve().parents[1]
PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
REDIS_URL = "redis://127.0.0.1:6379/11"
WORKER_READY_S = 30.0


# -- services ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def services() -> None:
    """Fail (never skip) when PostgreSQL or Redis is down, saying how to start it."""
    problems = []
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        problems.append(
            f"PostgreSQL is not reachable as {PG_ADMIN_URL} ({str(exc).strip()}): start it with "
            "`pg_ctlcluster 15 main start` (trust auth for 127.0.0.1), or `docker run -d "
            "-p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15`")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        problems.append(f"Redis is not reachable at {REDIS_URL} ({exc}): start it with "
                        "`redis-server --daemonize yes`, or `docker run -d -p 6379:6379 redis:7`")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# -- PostgreSQL -------------------------------------------------------------------------

@dataclass
class PgDatabase:
    name: str
    url: str

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def execute(self, statement: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """Run one statement; returns its rows (empty for statements without any)."""
        with self.connect() as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []


def _admin(statement: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture
def pg_db(services: None) -> Iterator[PgDatabase]:
    name = f"lstest_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
    try:
        yield PgDatabase(name, f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}")
    finally:
        _drop_database(name)


def _drop_database(name: str) -> None:
    """DROP … WITH (FORCE) ends sessions but refuses a database that an active replication
    slot uses: a job's snapshot holder (worker/jobs/snapshot_holder.py) may not have seen
    its test end yet. Ending its session drops its temporary slot, a moment later."""
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.1)


# -- Redis and settings -----------------------------------------------------------------

def _clean_redis(client: redis.Redis, prefix: str, queue: str) -> None:
    """Delete this test's keys only: its prefix, its queue (and priority lists, bindings),
    its workers' remote-control bindings (their names start with the queue's), and messages
    of its queue left unacknowledged by a killed worker."""
    keys = [*client.scan_iter(match=f"{prefix}:*", count=1000),
            *client.scan_iter(match=f"{queue}*", count=1000),
            f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
    client.delete(*keys)
    pidbox = "_kombu.binding.celery.pidbox"
    for member in client.smembers(pidbox):
        if queue.encode() in member:
            client.srem(pidbox, member)
    for tag, payload in client.hscan_iter("unacked"):
        try:
            routing_key = json.loads(payload)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key == queue:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


@pytest.fixture
def settings_env(services: None, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """This test's LITESHIFT_* environment (inherited by its workers) and its Settings."""
    tag = uuid.uuid4().hex[:10]
    for name in [n for n in os.environ if n.startswith("LITESHIFT_")]:
        monkeypatch.delenv(name)
    env = {
        "LITESHIFT_REDIS_URL": REDIS_URL,
        "LITESHIFT_REDIS_PREFIX": f"lstest-{tag}",
        "LITESHIFT_QUEUE": f"lstest-q-{tag}",
        "LITESHIFT_DATA_DIR": str(tmp_path / "data"),
        "LITESHIFT_LEASE_TTL_S": "3",
        "LITESHIFT_SOURCE_RETRY_BACKOFF_S": "0.5",
        "LITESHIFT_LOG_FORMAT": "json",
    }
    if READER_PROCESS_BYTES is not None:  # run the suite with every table read in a child
        env["LITESHIFT_READER_PROCESS_BYTES"] = READER_PROCESS_BYTES
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # not get_settings(): it is cached for the whole process
    client = redis.Redis.from_url(REDIS_URL)
    _clean_redis(client, settings.redis_prefix, settings.queue)
    try:
        yield settings
    finally:
        _clean_redis(client, settings.redis_prefix, settings.queue)
        client.close()


@pytest.fixture
def store(settings_env: Settings) -> Iterator[StateStore]:
    state = StateStore.from_settings(settings_env)
    yield state
    state.redis.close()


@pytest.fixture
def send(settings_env: Settings) -> Iterator[control.Send]:
    """Queue tasks by name, as the API does; the test process never imports the worker app
    (worker.celery_app reads the settings when it is imported)."""
    app = Celery("liteshift-tests", broker=settings_env.redis_url)

    def send_task(name: str, *args: Any) -> None:
        app.send_task(name, args=list(args), queue=settings_env.queue)

    yield send_task
    app.close()


# -- workers ----------------------------------------------------------------------------

class WorkerProcess:
    """A real `celery worker` in its own process group, logging to a file."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, name: str):
        self.proc = proc
        self.log_path = log_path
        self.name = name

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self, event: str) -> list[dict[str, Any]]:
        """The worker's JSON log lines for one event name."""
        found = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == event:
                    found.append(record)
        return found

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """kill -9 the whole process group: no shutdown handlers, no acks."""
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Warm shutdown, and kill -9 if it does not come."""
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_proc(settings_env: Settings, tmp_path: Path) -> Iterator[Callable[[], WorkerProcess]]:
    """Start real workers on this test's queue; every one is stopped at teardown."""
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        name = f"{settings_env.queue}-w{len(started) + 1}@{socket.gethostname()}"
        log_path = tmp_path / f"worker-{len(started) + 1}.log"
        command = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
                   "-Q", settings_env.queue, "--pool", "solo", "--concurrency", "1",
                   "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle",
                   "--without-heartbeat", "--loglevel", "INFO", "-n", name]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, cwd=REPO, env=dict(os.environ), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        worker = WorkerProcess(proc, log_path, name)
        started.append(worker)
        deadline = time.monotonic() + WORKER_READY_S
        while f"{name} ready." not in worker.log_text():  # Celery's own line, at INFO
            if proc.poll() is not None:
                pytest.fail(f"worker exited with {proc.returncode} before it was ready:\n"
                            f"{worker.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"worker not ready after {WORKER_READY_S}s:\n{worker.tail()}")
            time.sleep(0.05)
        return worker

    yield start
    for worker in started:
        worker.stop()


# -- waiting ----------------------------------------------------------------------------

def _wait_for(store: StateStore, job_id: str, states: Sequence[str], timeout: float = 60.0,
              *, workers: Sequence[WorkerProcess] = ()) -> dict[str, Any]:
    """Poll the job until its state is one of `states`; fail with its view and the workers'
    log tails if it is not there in time."""
    deadline = time.monotonic() + timeout
    while True:
        view = control.job_view(store, job_id)
        if view["state"] in states:
            return view
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.tail()}" for w in workers)
            pytest.fail(f"job {job_id} is {view['state']!r} after {timeout}s, not one of "
                        f"{list(states)}:\n{json.dumps(view, indent=1, default=str)[:4000]}\n"
                        f"{logs}")
        time.sleep(0.1)


def _wait_until(condition: Callable[[], Any], timeout: float, what: str,
                interval: float = 0.02, *, workers: Sequence[WorkerProcess] = ()) -> Any:
    """Poll `condition` until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.tail()}" for w in workers)
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs}")
        time.sleep(interval)
    return value


@pytest.fixture
def wait_for() -> Callable[..., dict[str, Any]]:
    """`wait_for(store, job_id, states, timeout, workers=...)`: the job's view once there."""
    return _wait_for


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """`wait_until(condition, timeout, what, workers=...)`: the condition's first truthy
    value."""
    return _wait_until
