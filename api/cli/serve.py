"""`liteshift serve`: the API, a worker and, when no LITESHIFT_REDIS_URL is given and
redis-server is installed, a private Redis, as one supervised process tree.

For hosts where a volume belongs to one machine (Fly.io): everything that touches the data
directory runs beside it. A child that dies is started again (after a pause that grows while
it keeps dying); SIGTERM or SIGINT stops them all, the worker with a warm shutdown (a chunk
in flight is redelivered and resumes), Redis last. The private Redis listens on a unix
socket in the data directory only (no TCP port) and keeps an append-only file there.

A small loop rather than supervisord or circus: three children, one restart rule, and the
process tree must stop with its parent; a second daemon and its configuration file would be
more to run than this.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from api.cli.client import CliError
from worker.core import filemodes
from worker.core.config import Settings
from worker.core.logs import configure_logging, get_logger

RESTART_PAUSE_S = (1.0, 30.0)  # the first pause after a death, and the longest
STEADY_S = 60.0  # a child that ran this long starts again with the first pause
STOP_GRACE_S = {"worker": 60.0, "api": 10.0, "redis": 10.0}  # warm shutdown, then SIGKILL
REDIS_READY_S = 10.0
SOCKET_PATH_MAX = 107  # sun_path's size on Linux, less the terminating NUL


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    pause_s: float = RESTART_PAUSE_S[0]
    restart_at: float = 0.0
    restarts: int = 0
    log: Any = field(default=None, repr=False)

    def start(self) -> None:
        # Its own process group: a terminal's Ctrl-C reaches only `serve`, which stops the
        # children in order; and a kill reaches a worker's pool processes too.
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.started_at = time.monotonic()
        self.log.info("child_started", child=self.name, pid=self.proc.pid,
                      restarts=self.restarts)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_GRACE_S[self.name])
        except subprocess.TimeoutExpired:
            self.log.warning("child_killed", child=self.name, pid=self.proc.pid,
                             after_s=STOP_GRACE_S[self.name])
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # what is left of its group
            os.killpg(self.proc.pid, signal.SIGKILL)


def serve(settings: Settings, *, host: str, port: int, concurrency: int,
          redis_server: str | None = None) -> int:
    configure_logging(settings.log_format)
    log = get_logger(component="serve")
    filemodes.make_dirs(settings.state_dir)
    lock = _lock(settings.state_dir / "serve.lock")
    env = dict(os.environ)
    children: list[Child] = []
    private = "redis_url" not in settings.model_fields_set
    redis_server = redis_server or shutil.which("redis-server")
    if private and redis_server:
        socket_path = settings.state_dir / "redis.sock"
        children.append(_private_redis(redis_server, settings.state_dir, socket_path, env))
        env["LITESHIFT_REDIS_URL"] = f"unix://{socket_path}"
    cli = [sys.executable, "-m", "api.cli"]
    children.append(Child("api", [*cli, "api", "--host", host, "--port", str(port)], env))
    children.append(Child("worker", [*cli, "worker", "--concurrency", str(concurrency)], env))
    for child in children:
        child.log = log
    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("serve_starting", children=[c.name for c in children],
                 redis=env.get("LITESHIFT_REDIS_URL", settings.redis_url) if private else
                 "from LITESHIFT_REDIS_URL", data_dir=str(settings.data_dir))
        for child in children:
            child.start()
            if child.name == "redis":
                _wait_for_redis(child, env["LITESHIFT_REDIS_URL"])
        while not stopping:
            _supervise(children, log)
            time.sleep(0.2)
    finally:
        log.info("serve_stopping", signal=stopping[0] if stopping else None)
        for child in reversed(children):  # worker and API first, Redis last
            child.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        lock.close()
    return 0


def _supervise(children: list[Child], log: Any) -> None:
    now = time.monotonic()
    for child in children:
        code = child.exited()
        if code is None:
            continue
        if child.restart_at == 0.0:  # just found dead: schedule its restart
            if now - child.started_at >= STEADY_S:
                child.pause_s = RESTART_PAUSE_S[0]
            child.restart_at = now + child.pause_s
            log.warning("child_exited", child=child.name, code=code,
                        restart_in_s=child.pause_s)
            child.pause_s = min(child.pause_s * 2, RESTART_PAUSE_S[1])
        elif now >= child.restart_at:
            child.restart_at = 0.0
            child.restarts += 1
            child.start()


def _private_redis(redis_server: str, state_dir: Path, socket_path: Path,
                   env: dict[str, str]) -> Child:
    if len(str(socket_path)) > SOCKET_PATH_MAX:
        raise CliError(f"the private Redis's socket {socket_path} is longer than a unix socket "
                       f"path may be ({SOCKET_PATH_MAX} bytes): use a shorter "
                       "LITESHIFT_DATA_DIR, or give LITESHIFT_REDIS_URL")
    workdir = state_dir / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    # No TCP port: only processes that can reach the data directory can reach it.
    argv = [redis_server, "--port", "0", "--unixsocket", str(socket_path),
            "--unixsocketperm", "700", "--dir", str(workdir), "--appendonly", "yes",
            "--save", "", "--daemonize", "no", "--logfile", str(workdir / "redis.log")]
    return Child("redis", argv, env)


def _wait_for_redis(child: Child, url: str) -> None:
    if not redis_answers(url, timeout_s=REDIS_READY_S, exited=child.exited):
        raise CliError(f"the private redis-server did not start (see "
                       f"{child.argv[child.argv.index('--dir') + 1]}/redis.log)", 1)


def redis_answers(url: str, *, timeout_s: float, exited: Callable[[], int | None]) -> bool:
    """Ping a redis-server just started until it answers (true), its process `exited()` with
    a code, or `timeout_s` passed (false)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                client.ping()
                return True
            except redis.RedisError:
                if exited() is not None or time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
    finally:
        client.close()


def _lock(path: Path) -> Any:
    """One `serve` per data directory: a second would start a second Redis on its socket."""
    handle = open(path, "a")  # held open (and locked) until serve ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise CliError(f"another `liteshift serve` runs on {path.parent.parent}") from None
    return handle
