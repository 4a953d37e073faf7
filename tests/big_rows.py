"""Helpers for the big-row memory tests: a real worker started through the benchmark's shim
(ops/bench/bench_targets.py `_worker`), which records each phase's peak RSS in the worker
and every reader process's peak at its end, and what one job of big rows made them grow.

Peaks are read from VmHWM (reset per phase through /proc/self/clear_refs), never sampled:
they do not depend on how loaded the machine is.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHIM = REPO / "ops" / "bench" / "bench_targets.py"
MB = 1024 * 1024
# A row of big values may cost this many times itself in each process. A reader process
# holds the driver's buffer and the driver's copy of the row (libpq's message, MySQL's
# values), which go to the pipe as they are; the worker holds the payload it received and,
# while it inserts it, SQLite's record of the row. A worker reading a table itself holds
# the driver's buffer and copy of the first such row, then has a reader process read on
# (copy_rows' big_row_source). The rest is the process's own start, and libpq's buffer, a
# power of two its reads may fill. What each copy is: ops/bench/RESULTS.md (big rows).
GROWTH_LIMIT = 3.0


@dataclass
class Growth:
    worker_mb: float  # the worker's peak over its idle RSS before the job
    readers_mb: list[float]  # each reader process's peak over its RSS before its request
    # With LITESHIFT_BENCH_CHUNK_PHASES=1: the worker's peak over idle in each chunk phase
    phases_mb: dict[str, float] = field(default_factory=dict)

    def describe(self, row_mb: float) -> str:
        readers = ", ".join(f"{r:.0f} MB ({r / row_mb:.1f}x)" for r in self.readers_mb)
        phases = "".join(f"; {name} {mb:.0f} MB ({mb / row_mb:.1f}x)"
                         for name, mb in self.phases_mb.items())
        return (f"worker grew {self.worker_mb:.0f} MB ({self.worker_mb / row_mb:.1f}x a row of "
                f"{row_mb:.0f} MB); reader processes: {readers or 'none'}{phases}")


class ProbedWorker:
    def __init__(self, proc: subprocess.Popen, log_path: Path, probe_path: Path, name: str):
        self.proc, self.log_path, self.probe_path, self.name = proc, log_path, probe_path, name

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no VmRSS for worker {self.proc.pid}")

    def probes(self) -> list[dict[str, Any]]:
        if not self.probe_path.exists():
            return []
        return [json.loads(line) for line in self.probe_path.read_text().splitlines()]

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def growth(self, idle_mb: float) -> Growth:
        probes = self.probes()
        worker = [p["peak_rss_mb"] for p in probes
                  if p["pid"] == self.proc.pid and "peak_rss_mb" in p]
        readers = [p["peak_rss_mb"] - p["idle_rss_mb"] for p in probes if p["phase"] == "reader"]
        assert worker, f"the shim recorded no phase of the worker:\n{self.tail()}"
        phases: dict[str, float] = {}
        for p in probes:
            if p["phase"].startswith("chunk_"):
                phases[p["phase"]] = max(phases.get(p["phase"], 0.0), p["peak_rss_mb"] - idle_mb)
        return Growth(max(worker) - idle_mb, readers, phases)


@contextmanager
def probed_worker(tmp_path: Path, queue: str, env: dict[str, str]) -> Iterator[ProbedWorker]:
    """A solo worker on `queue` through the shim; stopped (and its readers with it) at the
    end. `env` adds to the test's LITESHIFT_* environment."""
    name = f"{queue}-big@{socket.gethostname()}"
    log_path, probe_path = tmp_path / "worker-big.log", tmp_path / "probe.jsonl"
    command = [sys.executable, str(SHIM), "_worker", "-A", "worker.celery_app", "worker",
               "-Q", queue, "-n", name, "--pool", "solo", "--concurrency", "1",
               "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle",
               "--without-heartbeat", "--loglevel", "INFO"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **env,
                                     "LITESHIFT_BENCH_PROBE": str(probe_path)})
    worker = ProbedWorker(proc, log_path, probe_path, name)
    try:
        deadline = time.monotonic() + 60
        while f"{name} ready." not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, f"worker exited:\n{worker.tail()}"
            assert time.monotonic() < deadline, f"worker not ready:\n{worker.tail()}"
            time.sleep(0.05)
        yield worker
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)


# LITESHIFT_BENCH_CHUNK_PHASES=1 (ops/bench/bench_targets.py's chunk_phases), read before
# the tests' fixtures drop the caller's LITESHIFT_* variables: each chunk phase's peak too.
CHUNK_PHASES = os.environ.get("LITESHIFT_BENCH_CHUNK_PHASES", "")

# Tables under LITESHIFT_READER_PROCESS_BYTES are read in the worker (a thread) until a row
# longer than a chunk comes; the others in a reader process from the start.
PATHS = {"in the worker": "-1", "in a reader process": "0"}


def copy_big_rows(tmp_path: Path, settings_env: Any, store: Any, send: Any, source: str,
                  reader_process_bytes: str, options: dict[str, Any] | None = None,
                  ) -> tuple[dict[str, Any], Growth]:
    """Copy the source's table `big` into target `big` through a probed worker; the job's
    final view and what the worker and its readers grew by."""
    from worker.jobs import control

    with probed_worker(tmp_path, settings_env.queue,
                       {"LITESHIFT_READER_PROCESS_BYTES": reader_process_bytes,
                        "LITESHIFT_BENCH_CHUNK_PHASES": CHUNK_PHASES}) as worker:
        idle = worker.rss_mb()
        job_id = control.submit_job(settings_env, store, send, source=source, target="big",
                                    options=options)
        deadline = time.monotonic() + 300
        while (view := control.job_view(store, job_id))["state"] not in ("done", "failed"):
            assert worker.proc.poll() is None, f"the worker exited:\n{worker.tail()}"
            assert time.monotonic() < deadline, f"job still {view['state']}:\n{worker.tail()}"
            time.sleep(0.1)
        return view, worker.growth(idle)


def assert_bounded(growth: Growth, row_mb: float) -> None:
    """Neither the worker nor any reader grew by more than GROWTH_LIMIT rows, and a reader
    process read the big rows (on every path: a worker reading alone hands them over). The
    figures show with `pytest -rP`."""
    print(growth.describe(row_mb))
    assert growth.worker_mb <= GROWTH_LIMIT * row_mb, growth.describe(row_mb)
    assert growth.readers_mb, "no reader process recorded its peak"
    assert all(r <= GROWTH_LIMIT * row_mb for r in growth.readers_mb), growth.describe(row_mb)
