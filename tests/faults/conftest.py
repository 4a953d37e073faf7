"""Fixtures for the fault tests, on top of tests/conftest.py (a PostgreSQL database, a Redis
prefix, a queue and a data volume per test; real Celery workers; wait helpers).

Helpers they use are in support.py. A service or tool that is missing fails the test with the
command that installs or starts it; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from faults.support import (
    LITESHIFT,
    PG_BIN,
    REPO,
    ApiProcess,
    PrivateRedis,
    PublishWatch,
    ScramPostgres,
    free_port,
    stop_process,
)
from worker.core.config import Settings


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Processes a test started itself; each one is stopped at teardown."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        stop_process(proc)


@pytest.fixture
def publish_watch() -> Iterator[Callable[[Path, str, dict[str, int]], PublishWatch]]:
    watches: list[PublishWatch] = []

    def start(data_dir: Path, target: str, expected_rows: dict[str, int]) -> PublishWatch:
        watch = PublishWatch(data_dir, target, expected_rows).start()
        watches.append(watch)
        return watch

    yield start
    for watch in watches:
        watch.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own (no persistence), which it may kill -9 and restart
    empty without disturbing anybody else's Redis."""
    if not Path("/usr/bin/redis-server").exists():
        pytest.fail("/usr/bin/redis-server is missing: `apt-get install -y redis-server`")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = PrivateRedis(free_port(), workdir)
    server.start()
    yield server
    server.kill()


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def scram_postgres() -> Iterator[ScramPostgres]:
    """A private PostgreSQL cluster (initdb, about 3 s) that checks passwords over TCP."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"{PG_BIN}/initdb is missing: `apt-get install -y postgresql` (the "
                    "server package: initdb and pg_ctl)")
    base = Path(f"/tmp/ls-scram-{uuid.uuid4().hex[:8]}")  # short: it holds the socket
    datadir = base / "data"
    datadir.mkdir(parents=True)
    if os.geteuid() == 0:
        for path in (base, datadir):
            shutil.chown(path, "postgres", "postgres")
    port = free_port()
    steps = [
        [str(PG_BIN / "initdb"), "-D", str(datadir), "-U", "postgres", "-E", "UTF8",
         "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"],
        [str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-w", "-l", str(datadir / "server.log"),
         "-o", f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
    ]
    for step in steps:
        done = subprocess.run(_as_postgres(step), capture_output=True, text=True)
        if done.returncode:
            shutil.rmtree(base, ignore_errors=True)
            pytest.fail(f"`{' '.join(step)}` failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    try:
        yield ScramPostgres(port, datadir)
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-m",
                                     "immediate", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def api_process(settings_env: Settings, tmp_path: Path,
                processes: list[subprocess.Popen]) -> Callable[..., ApiProcess]:
    """`start(env=None)`: run `liteshift api` on a free port with this test's environment
    (plus `env`), and wait for /healthz."""

    def start(env: dict[str, str] | None = None) -> ApiProcess:
        port = free_port()
        log_path = tmp_path / f"api-{port}.log"
        full_env = {**os.environ, "LITESHIFT_API_URL": f"http://127.0.0.1:{port}",
                    **(env or {})}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([*LITESHIFT, "api", "--port", str(port)], cwd=REPO,
                                    env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        processes.append(proc)
        api = ApiProcess(proc, f"http://127.0.0.1:{port}", log_path)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{api.url}/healthz", timeout=1).status_code == 200:
                    return api
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`liteshift api` did not start:\n{api.log_text()[-3000:]}")
            time.sleep(0.1)

    return start
