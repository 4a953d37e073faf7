"""`liteshift serve` on one machine: the API, a worker and a private Redis on a unix socket
in the data directory, supervised; a job runs end to end through it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import redis
from faults.support import LITESHIFT, REPO, children, free_port, make_narrow_tables


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def child_running(serve: subprocess.Popen, word: str) -> int | None:
    return next((pid for pid in children(serve.pid) if word in cmdline(pid)), None)


def wait(condition, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.1)
    return value


def run_job(http: httpx.Client, source: str, target: str, log: Path) -> dict:
    job_id = http.post("/jobs", json={"source": source, "target": target}).json()["job_id"]
    return wait(lambda: (v := http.get(f"/jobs/{job_id}").json())["state"] in
                ("done", "failed", "cancelled") and v, 90, f"job {job_id}", log)


def test_serve_runs_a_job_with_its_private_redis_and_restarts_a_dead_worker(
        pg_db, settings_env, tmp_path):
    # Given `liteshift serve` with no LITESHIFT_REDIS_URL, on a data directory of its own
    make_narrow_tables(pg_db, {"things": 5000})
    data = Path(tempfile.mkdtemp(prefix="ls-serve-"))  # short: it holds a unix socket
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "LITESHIFT_REDIS_URL"}
    env.update(LITESHIFT_DATA_DIR=str(data), LITESHIFT_API_URL=f"http://127.0.0.1:{port}")
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen([*LITESHIFT, "serve", "--concurrency", "1"], cwd=REPO, env=env,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    seen: set[int] = set()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait(lambda: _healthy(http), 60, "the API", log)
            seen.update(children(serve.pid))

            # Then its Redis is a child listening only on a socket in the data directory
            assert child_running(serve, "redis-server")
            socket_path = data / ".liteshift" / "redis.sock"
            assert socket_path.is_socket()
            private = redis.Redis(unix_socket_path=str(socket_path), decode_responses=True)
            assert private.config_get("port") == {"port": "0"}  # no TCP port
            private.close()

            # When a job runs through it, the file is published
            view = run_job(http, pg_db.url, "served", log)
            assert view["state"] == "done", view
            db = sqlite3.connect(data / "served.db")
            assert db.execute("SELECT count(*) FROM things").fetchone()[0] == 5000
            db.close()

            # When the worker is killed, it is started again and takes the next job
            worker = wait(lambda: child_running(serve, "celery"), 30, "the worker", log)
            os.killpg(worker, signal.SIGKILL)
            again = wait(lambda: (pid := child_running(serve, "celery")) not in (None, worker)
                         and pid, 60, "a new worker", log)
            seen.add(again)
            assert run_job(http, pg_db.url, "served_again", log)["state"] == "done"

        # When serve gets SIGTERM, every child stops and serve exits 0
        seen.update(children(serve.pid))
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=90) == 0, log.read_text()[-3000:]
        wait(lambda: not [pid for pid in seen if cmdline(pid)], 20, "the children to end", log)
        assert not (data / ".liteshift" / "redis.sock").exists()
    finally:
        for pid in [serve.pid, *seen]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        serve.wait(timeout=10)
        shutil.rmtree(data, ignore_errors=True)


def _healthy(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
