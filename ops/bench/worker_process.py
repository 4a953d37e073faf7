"""A benchmark's own `celery worker`: on the run's queue, in a session of its own (so a hung
worker and its pool and reader processes can be killed as one group), logging to a file.
Every script in ops/bench starts its workers through this class."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One `celery worker` process tree. `entry` replaces `python -m celery` (a script that
    patches the worker before handing over to Celery); `cwd` is the tree whose `worker`
    package it imports (another commit's, for a baseline)."""

    def __init__(self, *, name: str, queue: str, log_path: Path, concurrency: int = 1,
                 pool: str = "prefork", loglevel: str = "WARNING", cwd: Path = ROOT,
                 env: dict[str, str] | None = None, entry: Sequence[str] | None = None,
                 extra_args: Sequence[str] = ()):
        self.name, self.log_path = name, log_path
        command = [*(entry or (sys.executable, "-m", "celery")), "-A", "worker.celery_app",
                   "worker", "-Q", queue, "-n", name, "--pool", pool,
                   "--concurrency", str(concurrency), "--prefetch-multiplier", "1",
                   "--without-gossip", "--without-mingle", *extra_args, "--loglevel", loglevel]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def wait_ready(self, app: Any, timeout_s: float = 60) -> None:
        """Until the worker answers a ping; SystemExit with its log if it exits or stays
        silent."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the worker exited ({self.proc.returncode}):\n{self.tail()}")
            if app.control.ping(destination=[self.name], timeout=0.5):
                return
        self.stop()
        raise SystemExit(f"the worker did not answer within {timeout_s:.0f} s:\n{self.tail()}")

    def json_lines(self) -> Iterator[dict[str, Any]]:
        """The worker's structured log lines (LITESHIFT_LOG_FORMAT=json), oldest first."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except ValueError:
                    continue

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session, started above
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Warm shutdown (the pool children go with the main process); killed past 30 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
