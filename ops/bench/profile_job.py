"""Where a liteshift job's time and CPU go, per phase: one job through the real queue (the
API, Redis, a Celery worker as bench.py runs it) on one of bench.py's data sets, with every
process's CPU sampled from /proc while it runs.

    .venv/bin/python ops/bench/profile_job.py --only pg-app [--sizes full] [--rounds 1]
        [--concurrency 2] [--interval 0.1]

Per phase (plan, copy, finalize, and finalize's steps: merging, indexing, objects,
checking, publishing, from the job's own record), the CPU seconds of:
  worker    the Celery worker's processes (main and pool), the writers of the work files
  readers   their reader processes and snapshot holders (worker/sources, worker/jobs), and
            a holder's children, which read MySQL tables (detached from the worker)
  source    the source database's server: PostgreSQL backends connected to the data set's
            database, or the whole mysqld (every thread: other users' queries too)
  api+redis the API (uvicorn) and redis-server
  others    everything else on the machine: other people's work on a shared host
and idle: the cores' time nobody used. A phase is bound by the cores when worker + readers
+ source + others fill them; idle time in a phase is time liteshift left on the table.
Then each table's copy, from its table_state events: when it started, when it was
verified (its rows read back and its indexes built in its work file), and its rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import bench  # noqa: E402
from isolation import isolated_run  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
CATEGORIES = ("worker", "readers", "source", "api+redis", "others", "idle")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _machine() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the machine since boot, all cores."""
    with open("/proc/stat") as stat:
        user, nice, system, idle, iowait, irq, softirq = (
            int(t) for t in stat.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / TICK, (idle + iowait) / TICK


class Sampler(threading.Thread):
    """Every `interval` seconds: each category's CPU seconds so far, with a timestamp."""

    def __init__(self, *, worker_pid: int, api_pid: int, kind: str, database: str,
                 interval: float):
        super().__init__(daemon=True)
        self.worker_pid, self.api_pid = worker_pid, api_pid
        self.kind, self.database, self.interval = kind, database, interval
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.stopping = threading.Event()
        self._seen: dict[int, tuple[str, float]] = {}  # pid -> (category, last CPU seconds)
        self._gone: dict[str, float] = defaultdict(float)  # CPU of processes that ended
        self._names: dict[int, str] = {}
        self._cwd = _cwd(worker_pid)
        self.categories: dict[int, str] = {}  # every pid seen: its category (for --pids)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.samples.append(self.sample())
            self.stopping.wait(self.interval)
        self.samples.append(self.sample())

    def _category(self, pid: int, ppid: int, tree: set[int]) -> str | None:
        if pid in tree:
            line = self._names.setdefault(pid, _cmdline(pid))
            if "reader_process" in line or "snapshot_holder" in line:
                return "readers"
            if pid != self.worker_pid and "celery" not in line:
                return "readers"  # a holder's or reader's own child
            return "worker"
        if pid == self.api_pid:
            return "api+redis"
        line = self._names.setdefault(pid, _cmdline(pid))
        if "worker.jobs.snapshot_holder" in line and _cwd(pid) == self._cwd:
            # A holder detaches from the worker (a double fork: init is its parent), and so do
            # the children that read MySQL tables for it: this tree's own by their directory.
            return "readers"
        if line.startswith("redis-server"):
            return "api+redis"
        if self.kind == "pg" and line.startswith("postgres: ") and f" {self.database} " in line:
            return "source"
        if self.kind == "mysql" and ("mysqld" in line or "mariadbd" in line):
            return "source"
        return None

    def sample(self) -> tuple[float, dict[str, float]]:
        now = time.perf_counter()
        busy, idle = _machine()
        parents: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                found = _stat(int(entry))
                if found:
                    parents[int(entry)], cpu[int(entry)] = found
        tree = {self.worker_pid}
        grew = True
        while grew:  # descendants of the worker, however deep
            grew = False
            for pid, ppid in parents.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        totals: dict[str, float] = defaultdict(float)
        for pid in list(self._seen):
            if pid not in cpu:  # ended since the last sample: keep what it spent
                category, spent = self._seen.pop(pid)
                self._gone[category] += spent
        for pid, spent in cpu.items():
            category = self._category(pid, parents[pid], tree)
            if category is None:
                continue
            self._seen[pid] = (category, spent)
            self.categories[pid] = category
            totals[category] += spent
        for category, spent in self._gone.items():
            totals[category] += spent
        ours = sum(totals.values())
        totals["busy"] = busy
        totals["idle"] = idle
        totals["ours"] = ours
        return now, dict(totals)


def between(samples: list[tuple[float, dict[str, float]]], start: float,
            end: float) -> dict[str, float]:
    """Each category's CPU seconds from the sample nearest `start` to the one nearest `end`
    (perf_counter times)."""
    first = min(samples, key=lambda s: abs(s[0] - start))
    last = min(samples, key=lambda s: abs(s[0] - end))
    keys = set(first[1]) | set(last[1])
    spent = {k: last[1].get(k, 0.0) - first[1].get(k, 0.0) for k in keys}
    mine = sum(spent.get(k, 0.0) for k in CATEGORIES[:4])
    spent["others"] = max(spent.get("busy", 0.0) - mine, 0.0)
    spent["wall"] = last[0] - first[0]
    return spent


def phase_bounds(store: Any, job: dict[str, Any], job_id: str, offset: float,
                 submitted: float) -> list[tuple[str, float, float]]:
    """(name, start, end) in perf_counter time: the job's phases and finalize's steps."""
    entered = {e["state"]: e["at"] + offset for _, e in store.events(job_id, count=100_000)
               if e["event"] == "job_state"}
    bounds = [(name, entered[a], entered[b]) for name, a, b in bench.Liteshift.PHASES
              if a in entered and b in entered]
    if "queued" in entered:  # POST /jobs probes the source before it records the job
        bounds.insert(0, ("submit", submitted, entered["queued"]))
    at = entered.get("finalizing")
    for step in ((job.get("finalize") or {}).get("steps") or []) if at else []:
        bounds.append((f"  {step['step']}", at, at + step["seconds"]))
        at += step["seconds"]
    return bounds


def table_timeline(store: Any, job_id: str, start: float) -> list[str]:
    began: dict[str, float] = {}
    lines = ["| table | started s | verified s | seconds | rows |", "|---|---:|---:|---:|---:|"]
    rows: dict[str, int] = {}
    ended: dict[str, float] = {}
    for _, e in store.events(job_id, count=100_000):
        if e["event"] == "table_state" and e["state"] == "copying":
            began.setdefault(e["table"], e["at"])
        elif e["event"] == "table_state" and e["state"] == "verified":
            ended[e["table"]] = e["at"]
        elif e["event"] == "chunk_committed":
            rows[e["table"]] = e.get("rows_done", 0)
    for table in sorted(began, key=began.__getitem__):
        end = ended.get(table)
        lines.append(f"| {table} | {began[table] - start:.2f} | "
                     f"{'-' if end is None else f'{end - start:.2f}'} | "
                     f"{'-' if end is None else f'{end - began[table]:.2f}'} | "
                     f"{rows.get(table, 0):,} |")
    return lines


def profile_round(lite: bench.Liteshift, ds: bench.Dataset, interval: float,
                  pids: Path | None = None) -> list[str]:
    import httpx

    data = lite.settings.data_dir
    (data / f"{ds.target}.db").unlink(missing_ok=True)
    (data / f"{ds.target}.report.json").unlink(missing_ok=True)
    worker = lite._start_worker()
    sampler = Sampler(worker_pid=worker.proc.pid, api_pid=lite.api.pid, kind=ds.kind,
                      database=ds.database, interval=interval)
    try:
        sampler.start()
        time.sleep(interval * 3)
        started = time.perf_counter()
        offset = started - time.time()  # event times are wall-clock
        answer = httpx.post(f"{lite.api_url}/jobs", timeout=120, json={
            "source": ds.liteshift_url, "target": ds.target, "options": {}})
        answer.raise_for_status()
        job_id = answer.json()["job_id"]
        while True:
            state = lite.store.job_state(job_id)
            if state is not None and state.finished:
                break
            time.sleep(0.02)
        ended = time.perf_counter()
        time.sleep(interval * 2)
    finally:
        sampler.stopping.set()
        sampler.join()
        worker.stop()
        if pids is not None:  # to split a `perf record -a` of the run by process
            with open(pids, "a") as out:
                for pid, category in sorted(sampler.categories.items()):
                    out.write(f"{pid} {category} {sampler._names.get(pid, '')[:200]}\n")
    job = lite.store.job(job_id) or {}
    if job.get("state") != "done":
        raise SystemExit(f"job {job.get('state')}: {job.get('error')} ({worker.tail(4)})")
    mismatch = bench.count_mismatch(data / f"{ds.target}.db", ds, "the published file")
    if mismatch:
        raise SystemExit(f"published file wrong: {mismatch}")
    whole = between(sampler.samples, started, ended)
    lines = [f"job {job_id}: {ended - started:.2f} s submit to published, load average "
             f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}", "",
             "| phase | wall s | " + " | ".join(CATEGORIES) + " | cores used by the job |",
             "|---|---:|" + "---:|" * (len(CATEGORIES) + 1)]
    spans = [("job", started, ended), *phase_bounds(lite.store, job, job_id, offset, started)]
    for name, a, b in spans:
        spent = whole if name == "job" else between(sampler.samples, a, b)
        wall = max(b - a, 1e-9)
        mine = sum(spent.get(k, 0.0) for k in CATEGORIES[:4])
        cells = " | ".join(f"{spent.get(k, 0.0):.2f}" for k in CATEGORIES)
        lines.append(f"| {name} | {b - a:.2f} | {cells} | {mine / wall:.2f} |")
    lines += ["", f"CPU seconds; idle = {CORES} cores' time nobody used (idle + iowait); "
              "others = the machine's busy time less this job's processes.", ""]
    lines += table_timeline(lite.store, job_id, started - offset)
    return lines


def profile_peer(name: str, ds: bench.Dataset, scratch: Path, interval: float) -> list[str]:
    """A peer of bench.py run the same way, sampled the same way: its process tree counts as
    `worker` (DuckDB reads and writes in one process)."""
    import subprocess

    out = scratch / "out" / f"{ds.key}.{name}.db"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    argv, env = bench.TOOLS[name].command(ds, out, scratch)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    sampler = Sampler(worker_pid=proc.pid, api_pid=-1, kind=ds.kind, database=ds.database,
                      interval=interval)
    sampler.start()
    _, err = proc.communicate()
    ended = time.perf_counter()
    sampler.stopping.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{name} failed: {err.decode(errors='replace')[-500:]}")
    mismatch = bench.count_mismatch(out, ds, "the output")
    if mismatch:
        raise SystemExit(f"{name}'s output is wrong: {mismatch}")
    spent = between(sampler.samples, started, ended)
    cells = " | ".join(f"{spent.get(k, 0.0):.2f}" for k in CATEGORIES)
    mine = sum(spent.get(k, 0.0) for k in CATEGORIES[:4])
    return [f"| {name} | {ended - started:.2f} | {cells} | {mine / (ended - started):.2f} |"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="pg-app", help="data sets (bench.py's names)")
    parser.add_argument("--sizes", choices=("full", "small", "tiny"), default="full")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    parser.add_argument("--peers", default="",
                        help="bench.py peers to profile after each job the same way, "
                        "comma-separated (duckdb, duckdb-indexes)")
    parser.add_argument("--pids", type=Path, help="append each process's pid and category "
                        "here (to split a `perf record -a -g` of the run by process)")
    parser.add_argument("--database", default="liteshift_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    bench_args = bench.parse_args(["--only", args.only, "--sizes", args.sizes, "--database",
                                   args.database])
    dsets = bench.datasets(bench_args)
    for ds in dsets:
        bench.ensure_dataset(ds)
    run_id, scratch = isolated_run("profile", args.redis_url)
    lite = bench.Liteshift(run_id, scratch, args.concurrency, 1800)
    try:
        lite.wait_api()
        for ds in dsets:
            for n in range(1, args.rounds + 1):
                os.sync()
                print(f"\n### {ds.key} ({ds.title}), round {n}\n", flush=True)
                print("\n".join(profile_round(lite, ds, args.interval, args.pids)), flush=True)
                peers = [p for p in args.peers.split(",") if p]
                if peers:
                    print("\n| peer | wall s | " + " | ".join(CATEGORIES) + " | cores used |"
                          "\n|---|---:|" + "---:|" * (len(CATEGORIES) + 1))
                for peer in peers:
                    os.sync()
                    print("\n".join(profile_peer(peer, ds, scratch, args.interval)),
                          flush=True)
    finally:
        lite.close()
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
