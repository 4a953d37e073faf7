"""Helpers for the fault tests (the fixtures built on them are in conftest.py).

Narrow source tables whose values follow from the key, so a copy can be checked by plain SQL
without trusting liteshift's code; process helpers; a private redis-server; a private
PostgreSQL cluster that checks passwords; the API as a real process; and a watcher that
catches a published file that is not complete.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
import redis

from api.cli.serve import redis_answers
from worker.core.checksum import as_hex, cursor_checksum
from worker.core.config import Settings
from worker.jobs import verify
from worker.state.store import StateStore

REPO = Path(__file__).resolve().parents[2]


def _pg_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian's layout)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
# `liteshift …` run by this interpreter (works whether or not the console script is installed)
LITESHIFT = (sys.executable, "-c", "import sys; from api.cli import main; sys.exit(main())")


# -- source data ------------------------------------------------------------------------

def make_narrow_tables(db: Any, sizes: dict[str, int]) -> None:
    """Tables (id bigint PK, n integer, s text) whose values follow from the key."""
    with db.connect() as conn:
        for name, rows in sizes.items():
            conn.execute(f'CREATE UNLOGGED TABLE "{name}" (id bigint NOT NULL, n integer, s text)')
            conn.execute(
                f'INSERT INTO "{name}" SELECT i, (i * 7919) % 1000003, '
                f"CASE WHEN i % 13 = 0 THEN NULL ELSE 'r' || i END "
                f"FROM generate_series(1::bigint, {rows}) AS i")
            conn.execute(f'ALTER TABLE "{name}" ADD PRIMARY KEY (id)')
            conn.execute(f'ANALYZE "{name}"')


def formula_problems(db: sqlite3.Connection, table: str, rows: int) -> dict[str, int]:
    """Rows lost, duplicated and with wrong values, by plain SQL on the SQLite file."""
    count, distinct, wrong = db.execute(
        f"SELECT count(*), count(DISTINCT id), "
        f"sum(n IS NOT (id * 7919) % 1000003 OR s IS NOT "
        f"(CASE WHEN id % 13 = 0 THEN NULL ELSE 'r' || id END) OR id < 1 OR id > ?) "
        f'FROM "{table}"', (rows,)).fetchone()
    return {"lost": rows - distinct, "duplicated": count - distinct, "wrong": wrong or 0}


def sqlite_checksum(db: sqlite3.Connection, table: str) -> tuple[int, str]:
    """Row count and checksum of a published table, recomputed with worker.checksum."""
    rows, total = cursor_checksum(db.execute(f'SELECT * FROM "{table}"'))
    return rows, as_hex(total)


def assert_exactly_once(settings: Settings, store: StateStore, job_id: str, target: str,
                        sizes: dict[str, int]) -> dict[str, Any]:
    """Every source row is in the published file once with its values, and each table's row
    count and checksum equal (a) the file's, recomputed with worker.checksum, (b) the report's
    and (c) a clean uninterrupted read of the source (verify --source reads each table again
    in one pass, with the same conversions, as a clean job would)."""
    path = settings.data_dir / f"{target}.db"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for table, rows in sizes.items():
            assert formula_problems(db, table, rows) == {"lost": 0, "duplicated": 0,
                                                         "wrong": 0}, table
        readback = {table: sqlite_checksum(db, table) for table in sizes}
    finally:
        db.close()
    result = verify.verify_job(settings, store, job_id, against_source=True)
    assert result["state"] == "ok", result
    by_name = {t["name"]: t for t in result["tables"]}
    for table, rows in sizes.items():
        entry = by_name[table]
        assert entry["rows"] == entry["source_rows"] == entry["expected_rows"] == rows
        assert entry["checksum"] == entry["source_checksum"] == entry["expected_checksum"] \
            == readback[table][1], table
    return by_name


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log records in a worker's output (Celery's own lines are skipped)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def iso(timestamp: str) -> float:
    """A log record's ISO 8601 UTC timestamp as seconds since the epoch."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def outcome(view: dict[str, Any]) -> str:
    """A job view in a line: why it ended where it did (an assertion's message)."""
    tables = "; ".join(f"{t.get('name')} {t.get('state')}"
                      + (f" ({t['error']})" if t.get("error") else "")
                      for t in view.get("tables") or [])
    return f"job {view.get('state')}: {view.get('error')}; tables: {tables}"


def rows_done(store: StateStore, job_id: str) -> int:
    return sum(int(t.get("rows_done") or 0) for t in table_states(store, job_id).values())


def table_states(store: StateStore, job_id: str) -> dict[str, dict[str, Any]]:
    job = store.job(job_id) or {}
    return {t["name"]: t for t in store.tables(job_id, job.get("tables") or [])}


def queue_length(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a Celery queue (kombu keeps priorities in extra lists)."""
    return sum(client.llen(key) for key in client.scan_iter(match=f"{queue}*")
               if client.type(key) in (b"list", "list"))


def tree(path: Path) -> dict[str, int]:
    """Every file under `path` with its size: to show that nothing was written."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*"))
            if p.is_file()}


# -- processes --------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc (psutil is not a dependency)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name in parentheses may hold spaces: split after its closing one
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def start_worker(settings: Settings, log_path: Path, *, pool: str = "solo",
                 concurrency: int = 1, ready_s: float = 30.0) -> subprocess.Popen:
    """A real worker with the pool of our choosing (tests/conftest.py's factory runs solo)."""
    name = f"fw-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    command = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
               "-Q", settings.queue, "--pool", pool, "--concurrency", str(concurrency),
               "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle",
               "--without-heartbeat", "--loglevel", "INFO", "-n", name]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=dict(os.environ), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + ready_s
    while f"{name} ready." not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            pytest.fail(f"worker did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    return proc


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Wake the process group (it may be SIGSTOPped), SIGTERM it, then SIGKILL it."""
    if proc.poll() is not None:
        return
    signal_group(proc, signal.SIGCONT)
    signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)


# -- the published file is never seen incomplete -----------------------------------------

@dataclass
class PublishWatch:
    """Polls the data directory every 10 ms. Records every name that begins with the target;
    the first time <target>.db exists it opens it and counts each table's rows, so a file
    published early or half-written cannot go unnoticed."""

    data_dir: Path
    target: str
    expected_rows: dict[str, int]
    seen: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    appeared_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> PublishWatch:
        self._thread = threading.Thread(target=self._run, name="publish-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        final = self.data_dir / f"{self.target}.db"
        while True:
            # One last look after stop(): a file published just before it (the job is done
            # a few ms after its rename) must still be seen.
            stopping = self._stop.is_set()
            try:
                names = os.listdir(self.data_dir)
            except FileNotFoundError:
                names = []
            self.seen.extend(n for n in names if n.startswith(self.target)
                             and n not in self.seen)
            if self.appeared_at is None and final.exists():
                self.appeared_at = time.time()
                self._check(final)
            if stopping:
                return
            time.sleep(0.01)

    def _check(self, path: Path) -> None:
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                for table, rows in self.expected_rows.items():
                    got = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                    if got != rows:
                        self.problems.append(f"{path.name} appeared with {got} rows in "
                                             f"{table}, not {rows}")
            finally:
                db.close()
        except sqlite3.Error as exc:
            self.problems.append(f"{path.name} appeared but could not be read: {exc}")


# -- a private redis-server that a test may kill -----------------------------------------

@dataclass
class PrivateRedis:
    port: int
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if not redis_answers(self.url, timeout_s=10, exited=self.proc.poll):
            pytest.fail(f"could not start `redis-server --port {self.port}`")

    def kill(self) -> None:
        """kill -9: everything it held is gone (no RDB, no AOF)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


# -- a private PostgreSQL that checks passwords ------------------------------------------

@dataclass
class ScramPostgres:
    """A throwaway cluster with scram-sha-256 over TCP, so a wrong password is refused (the
    machine's own cluster trusts 127.0.0.1, and its pg_hba.conf is not ours to change)."""

    port: int
    datadir: Path

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.datadir}&port={self.port}"

    def url(self, user: str, password: str, database: str) -> str:
        return (f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
                f"@127.0.0.1:{self.port}/{database}")

    def execute(self, statement: str, database: str = "postgres") -> None:
        with psycopg.connect(self.admin_url(database), autocommit=True) as conn:
            conn.execute(statement)

    def role(self, name: str, password: str) -> None:
        """Create the role, or set its password if it exists (the cluster lives a session)."""
        self.execute(f"DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object "
                     f"THEN NULL; END $$")
        self.execute(f"ALTER ROLE {name} PASSWORD '{password}'")

    def database(self, owner: str) -> str:
        name = f"ls_{uuid.uuid4().hex[:10]}"
        self.execute(f"CREATE DATABASE {name} OWNER {owner}")
        return name


# -- the API as a real process -----------------------------------------------------------

@dataclass
class ApiProcess:
    proc: subprocess.Popen
    url: str
    log_path: Path

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
