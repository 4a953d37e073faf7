"""Measure issue 6's performance targets through the real queue: submit, a real Celery worker
process, a published and verified file.

    .venv/bin/python ops/bench/bench_targets.py                 # every target, full sizes
    .venv/bin/python ops/bench/bench_targets.py --small         # every target, small sizes
    .venv/bin/python ops/bench/bench_targets.py --targets memory,resume --blob-rows 200

Targets (each printed with its measured value, the target and PASS/MISS):
  memory    a worker's peak RSS <= 256 MB copying a table of --blob-rows rows of --blob-mb MB
            bytea blobs, and one of --text-rows rows of --text-kb KB text
  parallel  --parallel-tables tables of --parallel-rows rows: 2 worker processes >= 1.4x
            faster than 1
  overhead  a job of --empty-tables empty tables published in <= 10 s; progress mirroring
            (the after-commit Redis write and log line) < 2% of the copy time of a
            --parallel-rows table
  manytables  jobs of --many-tables tables of --many-rows rows each: 200 in <= 3 s and
            2,000 in <= 20 s (issue 22), with phases, tasks, Redis round trips and CPU
  resume    kill -9 of the worker at about half a --resume-rows table: the rows the source
            streams again after resume are at most one chunk

Source tables live in their own PostgreSQL database (--database, dropped at the end unless
--keep-source). Every run uses its own Redis prefix and queue and a data directory under /tmp,
removed at the end. Workers are started through a small shim (this file, `_worker`) that
times the copy and the progress mirror and records each phase's peak RSS in a side file, and
counts each task's Redis round trips and CPU; nothing is added to the worker's own code.
`--worker-env LITESHIFT_BENCH_PROFILE=DIR` also profiles each pool process (cProfile, a file
per process in DIR: `python -m pstats DIR/worker-PID.prof`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker_process import WorkerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[2]
SERVER = "postgresql://postgres@127.0.0.1"
MB = 1024 * 1024
RSS_TARGET_MB = 256
BIGROW_TARGET_X = 3.0  # a big row's memory, as a multiple of the row
SPEEDUP_TARGET = 1.4
EMPTY_JOB_TARGET_S = 10.0
MANY_TABLES_TARGET_S = {200: 3.0, 2000: 20.0}  # issue 22: tables of 10 rows
MIRROR_TARGET_PCT = 2.0


def busy_cpu_s() -> float:
    """bench.py's: one definition of the machine's CPU time. Imported when first used, so
    that the shim's reader processes do not load bench.py (its imports would count in the
    RSS they measure)."""
    from bench import busy_cpu_s as busy

    return float(busy())


# -- the worker shim: runs inside the worker process ---------------------------------------

def _peak_rss_mb() -> float:
    """This process's peak RSS since the last reset (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> None:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reader_shim() -> int:
    """A reader process (worker/sources/reader_process.py) that records its idle RSS once
    its imports are done, and its peak RSS when it ends (VmHWM is gone with the process)."""
    sys.path.insert(0, str(ROOT))
    from worker.sources import import_readers, reader_process

    import_readers()  # what the reader loads before its request: its idle size
    idle = _rss_mb()
    _reset_peak()
    try:
        return reader_process.main()
    finally:
        with open(os.environ["LITESHIFT_BENCH_PROBE"], "a") as out:
            out.write(json.dumps({"pid": os.getpid(), "at": time.time(), "phase": "reader",
                                  "seconds": 0.0, "idle_rss_mb": idle,
                                  "peak_rss_mb": _peak_rss_mb()}) + "\n")


def chunk_phases(phased: Callable[[str, Callable[..., Any]], Callable[..., Any]],
                 ) -> dict[tuple[Any, str], Any]:
    """Each chunk's making, insert and read-back as phases of their own (peak RSS in each),
    to tell which copies of a big row live together. Only for rows of big values: for
    small ones the reader thread makes a chunk while the writer inserts another, and the
    phases overlap."""
    from worker.native import fastsqlite
    from worker.sqlite import chunks

    make_chunks = chunks.make_chunks

    def phased_make_chunks(*args: Any, **kwargs: Any) -> Iterator[Any]:
        made = make_chunks(*args, **kwargs)
        while (chunk := phased("chunk_make", lambda: next(made, None))()) is not None:
            yield chunk
            del chunk

    return {(fastsqlite, "insert_rows"): phased("chunk_insert", fastsqlite.insert_rows),
            (fastsqlite, "readback"): phased("chunk_readback", fastsqlite.readback),
            (chunks, "make_chunks"): phased_make_chunks}


def worker_shim(celery_args: list[str]) -> None:
    """Wrap a few functions of the worker to time them, then run `celery worker`. Each wrapped
    call appends one JSON line to $LITESHIFT_BENCH_PROBE: phase, seconds, peak RSS in it."""
    sys.path.insert(0, str(ROOT))
    from worker.jobs import copying, finalize

    probe_path = os.environ["LITESHIFT_BENCH_PROBE"]
    lock = threading.Lock()

    def record(**fields: Any) -> None:
        with lock, open(probe_path, "a") as out:
            out.write(json.dumps({"pid": os.getpid(), "at": time.time(), **fields}) + "\n")

    def phased(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _reset_peak()
            started, start_rss = time.perf_counter(), _rss_mb()
            try:
                return func(*args, **kwargs)
            finally:
                record(phase=name, seconds=time.perf_counter() - started,
                       start_rss_mb=start_rss, peak_rss_mb=_peak_rss_mb())
        return wrapper

    mirror = copying._mirror

    # Wall time inside the mirror is mostly waiting for the GIL while the reader thread
    # converts rows, which costs the copy nothing; the thread's CPU time is what it takes
    # away from the copy.
    def timed_mirror(store: Any, job_id: str, plan: Any, progress: Any, log: Any) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        mirror(store, job_id, plan, progress, log)
        record(phase="mirror", table=plan.name, seconds=time.perf_counter() - started,
               cpu_seconds=time.thread_time() - cpu, rows_done=progress.rows_done)

    copy_rows = copying.copy_rows

    def timed_copy_rows(**kwargs: Any) -> Any:
        before = kwargs["before_commit"]

        def timed_before() -> None:  # the cancel/lease check: one Redis read per chunk
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                before()
            finally:
                record(phase="before_commit", table=kwargs["plan"].name,
                       seconds=time.perf_counter() - started,
                       cpu_seconds=time.thread_time() - cpu)
        kwargs["before_commit"] = timed_before
        return phased("copy_rows", copy_rows)(**kwargs)

    if os.environ.get("LITESHIFT_BENCH_SCAN_BYTES"):
        copying.verify_work_file = bounded_verify(int(os.environ["LITESHIFT_BENCH_SCAN_BYTES"]))
    patches: dict[tuple[Any, str], Any] = {
        (copying, "_mirror"): timed_mirror, (copying, "copy_rows"): timed_copy_rows,
        (copying, "verify_work_file"): phased("verify_work_file", copying.verify_work_file),
        (finalize, "build_database"): phased("build_database", finalize.build_database)}
    if os.environ.get("LITESHIFT_BENCH_CHUNK_PHASES"):
        patches.update(chunk_phases(phased))
    for (module, name), replacement in patches.items():
        setattr(module, name, replacement)
    count_tasks(record)
    from worker.sources import reader_process

    def spawn_probed() -> subprocess.Popen[bytes]:  # reader_process._spawn, through the shim
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_reader"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=reader_process.without_driver_env({**reader_process.memory.ENV, **os.environ}))
        assert child.stdout is not None
        reader_process._widen_pipe(child.stdout.fileno())
        return child
    reader_process._spawn = spawn_probed
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *celery_args]
    celery_main()


def count_tasks(record: Callable[..., None]) -> None:
    """After each task: its name, the Redis round trips it made (a pipeline is one), and the
    CPU seconds of the process meanwhile. With $LITESHIFT_BENCH_PROFILE (a directory), each
    pool process also runs under cProfile and writes its statistics there after each
    task."""
    import redis.connection
    from celery import signals

    sent = [0]
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent[0] += 1
        send(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    marks: dict[str, tuple[int, float]] = {}
    profile_dir = os.environ.get("LITESHIFT_BENCH_PROFILE")
    profiler: list[Any] = []

    @signals.worker_process_init.connect(weak=False)
    def start_profile(**_: Any) -> None:
        if profile_dir:
            import cProfile

            profiler.append(cProfile.Profile())
            profiler[0].enable()

    @signals.task_prerun.connect(weak=False)
    def before(task_id: str, **_: Any) -> None:
        marks[task_id] = (sent[0], time.process_time())

    @signals.task_postrun.connect(weak=False)
    def after(task_id: str, task: Any, **_: Any) -> None:
        trips, cpu = marks.pop(task_id, (sent[0], time.process_time()))
        record(phase="task", task=task.name, redis_round_trips=sent[0] - trips,
               cpu_seconds=time.process_time() - cpu)
        if profiler:
            profiler[0].dump_stats(f"{profile_dir}/worker-{os.getpid()}.prof")
            profiler[0].enable()  # dump_stats stopped it


def bounded_verify(budget: int) -> Callable[..., None]:
    """An experiment, not liteshift's code: verify_work_file reading the work file in batches
    bounded by bytes (sized from the previous batch, starting at one row) instead of 5,000
    rows (WorkFile.scan), to show what that change does to the peak RSS."""
    from worker.core import checksum as ck
    from worker.core.errors import VerificationFailed
    from worker.core.identifiers import quote

    def encode(batch: list[tuple]) -> list[Any]:
        if hasattr(ck, "encode_rows"):  # the checksum's own encoding, whichever it is
            return list(ck.encode_rows(batch))
        return list(map(repr, batch))

    def part(encoded: list[Any]) -> int:
        if hasattr(ck, "encoded_checksum"):
            return int(ck.encoded_checksum(encoded))
        return int(ck.rows_checksum(encoded))

    def verify(work: Any, expected: Any) -> None:
        cols = ", ".join(quote(c.name) for c in work.plan.columns)
        cursor = work.db.execute(f"SELECT {cols} FROM {quote(work.plan.name)}")
        rows = checksum = 0
        size_batch = 1
        while batch := cursor.fetchmany(size_batch):
            encoded = encode(batch)
            per_row = max(1, sum(map(len, encoded)) // len(batch))
            rows += len(batch)
            checksum = ck.fold(checksum, part(encoded))
            del batch, encoded
            size_batch = max(1, min(5000, budget // per_row))
        if rows != expected.rows or checksum != expected.checksum:
            raise VerificationFailed(f"table {work.plan.name!r} reads back differently",
                                     table=work.plan.name)
    return verify


# -- source data ---------------------------------------------------------------------------

def pg(database: str, statement: str, params: Any = None) -> list[tuple]:
    import psycopg

    with psycopg.connect(f"{SERVER}/{database}", autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def ensure_database(database: str) -> None:
    if not pg("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (database,)):
        pg("postgres", f'CREATE DATABASE "{database}"')


def ensure_table(database: str, name: str, rows: int, create: str, fill: str,
                 schema: str = "public") -> None:
    """Create and fill `name` unless it already holds `rows` rows. UNLOGGED: no WAL for data
    that only lives for the benchmark."""
    qualified = f'"{schema}"."{name}"'
    exists = pg(database, "SELECT to_regclass(%s)", (f"{schema}.{name}",))[0][0]
    if exists and pg(database, f"SELECT count(*) FROM {qualified}")[0][0] == rows:
        return
    started = time.perf_counter()
    pg(database, f"DROP TABLE IF EXISTS {qualified}")
    pg(database, f"CREATE UNLOGGED TABLE {qualified} {create}")
    if rows:
        pg(database, f"INSERT INTO {qualified} {fill.format(rows=int(rows))}")
        pg(database, f"VACUUM (FREEZE, ANALYZE) {qualified}")
    print(f"  made {schema}.{name}: {rows:,} rows in {time.perf_counter() - started:.1f} s",
          flush=True)


def blob_fill(mb: float) -> str:
    # 32 md5-derived bytes repeated: bytes that look random to Python (repr ~4x), while the
    # server compresses them (TOAST) so the table costs little disk and time to build.
    repeats = max(1, int(mb * MB) // 32)
    return (f"SELECT i, decode(repeat(md5(i::text) || md5((i * 7)::text), {repeats}), 'hex') "
            "FROM generate_series(1, {rows}) i")


def text_fill(kb: float) -> str:
    repeats = max(1, int(kb * 1024) // 32)
    return f"SELECT i, repeat(md5(i::text), {repeats}) FROM generate_series(1, {{rows}}) i"


NARROW = ("(id bigint PRIMARY KEY, n integer, s text, at timestamptz)",
          "SELECT i, (i * 7919) % 1000003, 'r' || i || ' ' || md5(i::text), "
          "timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second' "
          "FROM generate_series(1::bigint, {rows}) i")


# -- workers and jobs ----------------------------------------------------------------------

class Worker(WorkerProcess):
    """A worker started through the shim, whose memory the run samples."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.peak_total_mb = 0.0  # sampled: the worker and its children together
        self._sampling = threading.Event()

    def pids(self) -> list[int]:
        found = [self.proc.pid]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    found.append(int(entry))
        return found

    def rss_mb(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                pass
        return total

    def sample(self, ceiling_mb: float) -> None:
        """Sample RSS every 20 ms in a thread; kill the worker past `ceiling_mb` so a runaway
        copy cannot take the machine down (the run then reports the ceiling as a MISS)."""
        def run() -> None:
            while not self._sampling.is_set() and self.proc.poll() is None:
                self.peak_total_mb = max(self.peak_total_mb, self.rss_mb())
                if self.peak_total_mb > ceiling_mb:
                    print(f"  worker RSS passed the {ceiling_mb:.0f} MB ceiling: killed",
                          flush=True)
                    self.kill()
                    return
                time.sleep(0.02)
        threading.Thread(target=run, daemon=True).start()

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.json_lines() if event is None or r.get("event") == event]

    def stop(self) -> None:
        self._sampling.set()
        super().stop()


class Bench:
    """One run's scratch space, Redis prefix and queue, and its source database."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.run_id = f"liteshift-targets-{os.getpid()}"
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{self.run_id}-", dir="/tmp"))
        self.probe_path = self.scratch / "probe.jsonl"
        self.source = f"{SERVER}/{args.database}"
        self.workers: list[Worker] = []
        # Before importing worker code: its settings are read from the environment once.
        os.environ.update({
            "LITESHIFT_REDIS_URL": args.redis_url, "LITESHIFT_QUEUE": self.run_id,
            "LITESHIFT_REDIS_PREFIX": self.run_id, "LITESHIFT_LOG_FORMAT": "json",
            "LITESHIFT_DATA_DIR": str(self.scratch / "data"),
            "LITESHIFT_BENCH_PROBE": str(self.probe_path),
        })
        sys.path.insert(0, str(ROOT))
        from celery import Celery

        from worker.core.config import get_settings
        from worker.state.store import StateStore

        self.settings = get_settings()
        self.store = StateStore.from_settings(self.settings)
        self.app = Celery("liteshift-bench-targets", broker=args.redis_url)

    def send(self, name: str, *args: Any) -> None:
        self.app.send_task(name, args=list(args), queue=self.settings.queue)

    def start_worker(self, *, pool: str = "solo", concurrency: int = 1,
                     env: dict[str, str] | None = None) -> Worker:
        name = f"{self.run_id}-w{len(self.workers) + 1}@bench"
        log_path = self.scratch / f"worker-{len(self.workers) + 1}.log"
        worker = Worker(name=name, queue=self.settings.queue, log_path=log_path, pool=pool,
                        concurrency=concurrency, loglevel="INFO",
                        env={**os.environ, **self.args.worker_env, **(env or {})},
                        entry=(sys.executable, str(Path(__file__).resolve()), "_worker"),
                        extra_args=("--without-heartbeat",))
        self.workers.append(worker)
        worker.wait_ready(self.app)
        return worker

    @contextmanager
    def worker(self, **kwargs: Any) -> Iterator[Worker]:
        worker = self.start_worker(**kwargs)
        try:
            yield worker
        except BaseException:
            print(f"worker log {worker.log_path}:\n{worker.tail()}", file=sys.stderr)
            raise
        finally:
            worker.stop()

    def submit(self, target: str, tables: list[str], *, schema: str = "public",
               options: dict[str, Any] | None = None,
               source: str | None = None) -> tuple[str, float]:
        from worker.jobs.control import submit_job

        for old in self.settings.data_dir.glob(f"{target}*"):
            old.unlink()
        started = time.perf_counter()
        job_id = submit_job(self.settings, self.store, self.send, source=source or self.source,
                            target=target, schema=schema, tables=tables,
                            options=options or {})
        return job_id, started

    def wait(self, job_id: str, timeout_s: float = 3600, *,
             workers: list[Worker] | None = None) -> dict[str, Any]:
        from worker.state.store import JobState

        deadline = time.monotonic() + timeout_s
        while True:
            state = self.store.job_state(job_id)
            if state is not None and state.finished:
                break
            if workers and all(w.proc.poll() is not None for w in workers):
                raise SystemExit(f"job {job_id}: every worker exited:\n{workers[0].tail()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job_id} still {state} after {timeout_s} s")
            time.sleep(0.02)
        job = self.store.job(job_id) or {}
        if state != JobState.DONE:
            failed = [f"{t['name']}: {t.get('error')}"
                      for t in self.store.tables(job_id, job.get("tables") or [])
                      if t.get("error")]
            raise SystemExit(f"job {job_id} {state.value}: {job.get('error')} "
                             f"{'; '.join(failed)[:2000]}")
        return job

    def run_job(self, target: str, tables: list[str], *, workers: list[Worker],
                schema: str = "public", options: dict[str, Any] | None = None,
                expected_rows: dict[str, int] | None = None,
                source: str | None = None) -> tuple[str, float]:
        """Submit, wait for the published file, check its row counts; seconds taken."""
        job_id, started = self.submit(target, tables, schema=schema, options=options,
                                      source=source)
        self.wait(job_id, workers=workers)
        seconds = time.perf_counter() - started
        if expected_rows:
            self.check_rows(target, expected_rows)
        return job_id, seconds

    def check_rows(self, target: str, expected: dict[str, int]) -> None:
        path = self.settings.data_dir / f"{target}.db"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for table, rows in expected.items():
                got = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                if got != rows:
                    raise SystemExit(f"{target}.db holds {got:,} rows of {table}, not {rows:,}")
        finally:
            db.close()

    def cancel_unfinished(self) -> None:
        from worker.jobs.control import cancel_job

        for job_id in self.store.active_job_ids():
            cancel_job(self.settings, self.store, job_id)

    def drop_published(self, target: str) -> None:
        for path in self.settings.data_dir.glob(f"{target}*"):
            path.unlink()

    def probes(self, since: float, phase: str | None = None) -> list[dict[str, Any]]:
        if not self.probe_path.exists():
            return []
        out = []
        for line in self.probe_path.read_text().splitlines():
            record = json.loads(line)
            if record["at"] >= since and (phase is None or record["phase"] == phase):
                out.append(record)
        return out

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        keys = list(self.store.redis.scan_iter(f"{self.run_id}:*"))
        keys += list(self.store.redis.scan_iter(f"{self.run_id}*"))
        if keys:
            self.store.redis.delete(*keys)
        self.app.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


# -- results -------------------------------------------------------------------------------

@dataclass
class Result:
    target: str
    measured: str
    goal: str
    passed: bool
    notes: list[str] = field(default_factory=list)


RESULTS: list[Result] = []


def result(target: str, measured: str, goal: str, passed: bool, *notes: str) -> None:
    RESULTS.append(Result(target, measured, goal, passed, list(notes)))
    print(f"  {target}: {measured} (target {goal}) {'PASS' if passed else 'MISS'}", flush=True)
    for note in notes:
        print(f"    {note}", flush=True)


# -- the targets ---------------------------------------------------------------------------

def target_memory(bench: Bench) -> None:
    a = bench.args
    cases = [("t_blob", a.blob_rows, "(id integer PRIMARY KEY, b bytea)", blob_fill(a.blob_mb),
              f"{a.blob_rows:,} rows of {a.blob_mb:g} MB bytea"),
             ("t_text", a.text_rows, "(id integer PRIMARY KEY, t text)", text_fill(a.text_kb),
              f"{a.text_rows:,} rows of {a.text_kb:g} KB text")]
    for table, rows, create, fill, what in cases:
        print(f"memory: {what}", flush=True)
        ensure_table(a.database, table, rows, create, fill)
        with bench.worker() as worker:
            idle = worker.rss_mb()
            worker.sample(a.rss_ceiling_mb)
            since = time.time()
            try:
                _, seconds = bench.run_job(f"mem_{table}", [table], workers=[worker],
                                           expected_rows={table: rows})
            except SystemExit as exc:
                bench.cancel_unfinished()  # or the next worker's reaper takes it up again
                done = ", ".join(f"{p['phase']} {p['peak_rss_mb']:,.0f} MB"
                                 for p in bench.probes(since) if "peak_rss_mb" in p)
                result(f"memory {what}", f"peak RSS over {worker.peak_total_mb:,.0f} MB",
                       f"<= {RSS_TARGET_MB} MB", False,
                       f"the job did not finish: {str(exc).splitlines()[0][:300]}",
                       f"phases that ended before: {done or 'none'}")
                continue
            finally:
                worker._sampling.set()
            phases = {p["phase"]: p for p in bench.probes(since)  # the worker's, its readers'
                      if "peak_rss_mb" in p}
            bench.drop_published(f"mem_{table}")
        peak = max([worker.peak_total_mb, *(p["peak_rss_mb"] for p in phases.values())])
        detail = ", ".join(f"{name} {p['peak_rss_mb']:,.0f} MB in {p['seconds']:.1f} s"
                           for name, p in phases.items())
        result(f"memory {what}", f"peak RSS {peak:,.0f} MB", f"<= {RSS_TARGET_MB} MB",
               peak <= RSS_TARGET_MB,
               f"idle worker {idle:,.0f} MB; job {seconds:.1f} s; peak per phase: {detail}")
        if not a.keep_source:
            pg(a.database, f'DROP TABLE IF EXISTS "{table}"')


def bigrow_fill(mb: float) -> str:
    # Like blob_fill: values that look random to Python, compressed by the server.
    repeats = max(1, int(mb * MB) // 32)
    return (f"SELECT i, decode(repeat(md5(i::text) || md5((i * 7)::text), {repeats}), 'hex'), "
            f"repeat(md5((i * 3)::text), {repeats}) FROM generate_series(1, {{rows}}) i")


def target_bigrow(bench: Bench) -> None:
    """Issue 20's finding 8: the memory one big row costs, the worker's and its reader's
    growth over their idle sizes, against a small multiple of the row."""
    a = bench.args
    row_mb = 2 * a.bigrow_mb
    what = f"{a.bigrow_rows} row(s) of {a.bigrow_mb:g} MB bytea + {a.bigrow_mb:g} MB text"
    print(f"bigrow: {what}", flush=True)
    ensure_table(a.database, "t_bigrow", a.bigrow_rows, "(id integer PRIMARY KEY, b bytea, t text)",
                 bigrow_fill(a.bigrow_mb))
    with bench.worker() as worker:
        time.sleep(1)  # the reader kept ready has done its imports
        idle = _process_rss_mb(worker.proc.pid)
        since = time.time()
        _, seconds = bench.run_job("bigrow", ["t_bigrow"], workers=[worker],
                                   expected_rows={"t_bigrow": a.bigrow_rows})
        probes = bench.probes(since)
        bench.drop_published("bigrow")
    phases = {p["phase"]: p for p in probes if "start_rss_mb" in p}  # the worker's
    readers = [p for p in probes if p["phase"] == "reader"]
    worker_growth = max(p["peak_rss_mb"] for p in phases.values()) - idle
    reader_growth = max((p["peak_rss_mb"] - p["idle_rss_mb"] for p in readers), default=0.0)
    total = worker_growth + reader_growth
    goal = BIGROW_TARGET_X * row_mb
    detail = ", ".join(f"{name} {p['peak_rss_mb'] - idle:+,.0f} MB (from "
                       f"{p['start_rss_mb'] - idle:+,.0f} MB at its start)"
                       for name, p in phases.items())
    result(f"memory {what}", f"worker + reader grew {total:,.0f} MB "
           f"({total / row_mb:.1f}x the row)", f"<= {goal:,.0f} MB ({BIGROW_TARGET_X:g}x)",
           total <= goal,
           f"worker {worker_growth:+,.0f} MB over its idle {idle:,.0f} MB (per phase: {detail}); "
           f"reader {reader_growth:+,.0f} MB over its idle "
           f"{max((p['idle_rss_mb'] for p in readers), default=0):,.0f} MB; job {seconds:.1f} s")
    if not a.keep_source:
        pg(a.database, 'DROP TABLE IF EXISTS "t_bigrow"')


def _process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def parallel_tables(bench: Bench) -> dict[str, int]:
    a = bench.args
    tables = {f"p{i}": a.parallel_rows for i in range(1, a.parallel_tables + 1)}
    for name, rows in tables.items():
        ensure_table(a.database, name, rows, *NARROW)
    return tables


def target_parallel(bench: Bench) -> None:
    a = bench.args
    print(f"parallel: {a.parallel_tables} tables of {a.parallel_rows:,} rows, 1 vs 2 "
          f"worker processes (one prefork worker, concurrency 1 vs 2)", flush=True)
    tables = parallel_tables(bench)
    times: dict[int, list[float]] = {1: [], 2: []}
    busy: dict[int, list[float]] = {1: [], 2: []}  # cores kept busy on average
    for round_no in range(a.rounds):
        for processes in (1, 2):
            with bench.worker(pool="prefork", concurrency=processes) as worker:
                cpu_before = busy_cpu_s()
                job_id, seconds = bench.run_job(f"par{processes}", list(tables),
                                                workers=[worker], expected_rows=tables)
                cores = (busy_cpu_s() - cpu_before) / seconds
                bench.drop_published(f"par{processes}")
            times[processes].append(seconds)
            busy[processes].append(cores)
            print(f"  round {round_no + 1}: {processes} process(es) {seconds:.1f} s, "
                  f"{cores:.2f} of {os.cpu_count()} cores busy ("
                  + ", ".join(f"{k} {v:.1f} s" for k, v in job_phases(bench, job_id).items())
                  + ")", flush=True)
    one, two = min(times[1]), min(times[2])
    # The same work on every core the machine has cannot take less than its CPU time over
    # the cores: this is the most that a second process could give.
    bound = (os.cpu_count() or 1) / min(busy[1])
    result("parallel tables", f"{one / two:.2f}x faster with 2 ({one:.1f} s vs {two:.1f} s)",
           f">= {SPEEDUP_TARGET}x", one / two >= SPEEDUP_TARGET,
           f"best of {a.rounds} round(s); all: 1 -> {times[1]}, 2 -> {times[2]}",
           f"cores busy (machine CPU s / wall s): 1 process {_spread(busy[1])}, 2 processes "
           f"{_spread(busy[2])}; so at most {bound:.2f}x on this machine's "
           f"{os.cpu_count()} cores whatever the worker does")


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}" if len(values) == 1 else f"{min(values):.2f}-{max(values):.2f}"


def target_overhead(bench: Bench) -> None:
    a = bench.args
    print(f"overhead: {a.empty_tables} empty tables", flush=True)
    schema = "bench_empty"
    pg(a.database, f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    names = [f"e{i:04d}" for i in range(1, a.empty_tables + 1)]
    have = {r[0] for r in pg(a.database, "SELECT tablename FROM pg_tables WHERE schemaname = "
                                          "%s", (schema,))}
    for name in names:
        if name not in have:
            pg(a.database, f'CREATE UNLOGGED TABLE "{schema}"."{name}" '
                           "(id bigint PRIMARY KEY, s text)")
    for concurrency in (1, 2):
        with bench.worker(pool="prefork", concurrency=concurrency) as worker:
            since = time.time()
            job_id, seconds = bench.run_job("empty", names, schema=schema, workers=[worker],
                                            expected_rows=dict.fromkeys(names, 0))
            bench.drop_published("empty")
            phases = job_phases(bench, job_id)
            build = [p["seconds"] for p in bench.probes(since, "build_database")]
        result(f"{a.empty_tables} empty tables, concurrency {concurrency}",
               f"{seconds:.1f} s submit to published", f"<= {EMPTY_JOB_TARGET_S:g} s",
               seconds <= EMPTY_JOB_TARGET_S,
               "phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
               + (f"; merge+checks (build_database) {build[0]:.1f} s" if build else ""))

    print(f"overhead: progress mirror on a {a.parallel_rows:,}-row table", flush=True)
    tables = parallel_tables(bench)
    first = next(iter(tables))
    with bench.worker() as worker:
        since = time.time()
        bench.run_job("mirror", [first], workers=[worker], expected_rows={first: tables[first]})
        bench.drop_published("mirror")
    mirror = bench.probes(since, "mirror")
    before = bench.probes(since, "before_commit")
    copy_s = sum(p["seconds"] for p in bench.probes(since, "copy_rows"))
    cpu = sum(p["cpu_seconds"] for p in mirror)
    wall = sum(p["seconds"] for p in mirror)
    share = 100 * cpu / copy_s
    result("progress mirror", f"{share:.2f}% of copy time ({cpu * 1000:.0f} ms CPU over "
           f"{len(mirror)} chunks, copy {copy_s:.1f} s)", f"< {MIRROR_TARGET_PCT:g}%",
           share < MIRROR_TARGET_PCT,
           f"per chunk {1000 * cpu / max(1, len(mirror)):.2f} ms CPU, "
           f"{1000 * wall / max(1, len(mirror)):.2f} ms wall in the writer thread (mostly "
           f"waiting for the GIL the reader thread holds: {100 * wall / copy_s:.1f}% of copy "
           "time, overlapped with the reader's work)",
           f"the cancel/lease check before each commit (a Redis read): "
           f"{sum(p['cpu_seconds'] for p in before) * 1000:.0f} ms CPU, "
           f"{sum(p['seconds'] for p in before) * 1000:.0f} ms wall")


def target_manytables(bench: Bench) -> None:
    """Jobs of many small tables (--many-tables, --many-rows rows each), through the queue:
    submit to published, per phase, tasks and Redis round trips per table, and the CPU the
    worker's processes and the whole machine spent (the machine is shared: load average
    printed)."""
    a = bench.args
    pool = a.many_concurrency
    for count in (int(n) for n in a.many_tables.split(",")):
        schema = f"bench_many_{count}x{a.many_rows}"
        names = [f"m{i:05d}" for i in range(1, count + 1)]
        source = None
        if a.many_source == "mysql":  # a database per table count; the job's schema: default
            source = make_many_mysql_tables(f"liteshift_{schema}", names, a.many_rows)
            schema = "public"
        else:
            make_many_tables(a.database, schema, names, a.many_rows)
        for round_ in range(a.rounds):
            load = os.getloadavg()
            print(f"manytables: {count} tables x {a.many_rows} rows, round {round_ + 1}, "
                  f"load average {load[0]:.1f} {load[1]:.1f}", flush=True)
            with bench.worker(pool="prefork", concurrency=pool) as worker:
                # A warm worker, as a running service has: each pool process has planned
                # and copied once, and its snapshot holder is started ahead.
                for _ in range(pool):
                    bench.run_job("manywarm", names[:2], schema=schema, workers=[worker],
                                  source=source)
                    bench.drop_published("manywarm")
                time.sleep(1)
                pids = worker.pids()
                cpu_before, busy_before = [process_cpu_s(p) for p in pids], busy_cpu_s()
                since = time.time()
                job_id, seconds = bench.run_job(
                    f"many{count}", names, schema=schema, workers=[worker], source=source,
                    expected_rows=dict.fromkeys(names, a.many_rows))
                cpu = [process_cpu_s(p) - c for p, c in zip(pids, cpu_before, strict=True)]
                busy = busy_cpu_s() - busy_before
                unusual = {e: len(worker.events(e)) for e in (
                    "stalled_work_requeued", "table_retrying", "table_skipped", "table_failed")}
                bench.drop_published(f"many{count}")
                phases = job_phases(bench, job_id)
                tasks = bench.probes(since, "task")
            goal = MANY_TABLES_TARGET_S.get(count)
            by_name: dict[str, int] = {}
            for t in tasks:
                by_name[t["task"].rsplit(".", 1)[-1]] = by_name.get(
                    t["task"].rsplit(".", 1)[-1], 0) + 1
            trips = sum(t["redis_round_trips"] for t in tasks)
            result(f"{a.many_source}: {count} tables x {a.many_rows} rows, {pool} processes",
                   f"{seconds:.1f} s submit to published",
                   f"<= {goal:g} s" if goal else "no target",
                   goal is None or seconds <= goal,
                   "phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()),
                   f"load average at the start {load[0]:.1f}; machine busy {busy:.1f} CPU s "
                   f"of {seconds * (os.cpu_count() or 1):.1f} (all processes, every user)",
                   "worker CPU s, main then pool processes: "
                   + ", ".join(f"{c:.2f}" for c in cpu),
                   f"tasks: {by_name}; Redis round trips {trips} ({trips / count:.1f} per "
                   "table)", f"worker events (whole run, warm-up included): {unusual}")


def make_many_tables(database: str, schema: str, names: list[str], rows: int) -> None:
    """`names` tables of `rows` rows in `schema`, made once (in one transaction)."""
    import psycopg

    have = {r[0] for r in pg(database, "SELECT tablename FROM pg_tables WHERE schemaname = "
                                       "%s", (schema,))}
    missing = [n for n in names if n not in have]
    if not missing:
        return
    started = time.perf_counter()
    with psycopg.connect(f"{SERVER}/{database}") as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for name in missing:
            conn.execute(f'CREATE UNLOGGED TABLE "{schema}"."{name}" '
                         "(id bigint PRIMARY KEY, s text, at timestamptz)")
            conn.execute(f'INSERT INTO "{schema}"."{name}" SELECT i, md5(i::text), '
                         "timestamptz '2024-01-01 00:00:00+00' + i * interval '1 day' "
                         f"FROM generate_series(1, {int(rows)}) i")
    pg(database, "ANALYZE")
    print(f"  made {len(missing)} tables in {schema} in {time.perf_counter() - started:.1f} s",
          flush=True)


def make_many_mysql_tables(database: str, names: list[str], rows: int) -> str:
    """The same tables in a MariaDB/MySQL database of their own (made once); its URL."""
    import mysql.connector

    conn = mysql.connector.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
        cur.execute(f"USE `{database}`")  # seq_1_to_N (MariaDB's sequence engine) is looked up here
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (database,))
        have = {r[0] for r in cur.fetchall()}
        started = time.perf_counter()
        missing = [n for n in names if n not in have]
        for name in missing:
            # One statement: a table is there with its rows, or not at all.
            cur.execute(f"CREATE TABLE `{name}` (id bigint PRIMARY KEY, s varchar(64), "
                        "at datetime(6)) SELECT seq AS id, md5(seq) AS s, "
                        f"'2024-01-01' + INTERVAL seq DAY AS at FROM seq_1_to_{int(rows)}")
        if missing:
            print(f"  made {len(missing)} tables in MariaDB {database} in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
    finally:
        conn.close()
    return f"mysql://root@127.0.0.1:3306/{database}"


def process_cpu_s(pid: int) -> float:
    """A process's user + system CPU seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def job_phases(bench: Bench, job_id: str) -> dict[str, float]:
    entered = {e["state"]: e["at"] for _, e in bench.store.events(job_id, count=100_000)
               if e["event"] == "job_state"}
    steps = (("plan", "queued", "copying"), ("copy", "copying", "finalizing"),
             ("finalize", "finalizing", "done"))
    return {name: entered[end] - entered[start] for name, start, end in steps
            if start in entered and end in entered}


def target_resume(bench: Bench) -> None:
    a = bench.args
    rows, chunk = a.resume_rows, a.chunk_rows
    print(f"resume: kill -9 at about half of a {rows:,}-row table, chunks of {chunk:,} rows",
          flush=True)
    ensure_table(a.database, "r1", rows, *NARROW)
    env = {"LITESHIFT_LEASE_TTL_S": "3"}  # the table is handed on 3 s after the kill
    first = bench.start_worker(env=env)
    job_id, _ = bench.submit("resume", ["r1"], options={"chunk_rows": chunk})
    key = bench.store.keys.table(job_id, "r1")
    while int(json.loads(bench.store.redis.hget(key, "rows_done") or "0")) < rows // 2:
        if first.proc.poll() is not None:
            raise SystemExit(f"worker exited:\n{first.tail()}")
        time.sleep(0.005)
    sent = pg(a.database, "SELECT tuples_processed FROM pg_stat_progress_copy "
                          "WHERE datname = current_database() AND command = 'COPY TO'")
    first.kill()
    sent_before_kill = max((r[0] for r in sent), default=0)
    reported = max((e["rows_done"] for e in first.events("chunk_committed")), default=0)
    checkpoint = read_checkpoint(bench, job_id, "r1")
    second = bench.start_worker(env=env)
    bench.wait(job_id, workers=[second])
    bench.check_rows("resume", {"r1": rows})
    bench.drop_published("resume")
    starts = second.events("table_copying")
    resumed_from = starts[0]["rows_done"] if starts else None
    after = [e["chunk_rows"] for e in second.events("chunk_committed")]
    streamed_again = sum(after) - (rows - checkpoint["rows"])
    lag = checkpoint["rows"] - reported
    result("resume re-read", f"{streamed_again:,} committed rows streamed again "
           f"(resumed at {resumed_from:,} = checkpoint {checkpoint['rows']:,}; streamed "
           f"{sum(after):,} = rows remaining {rows - checkpoint['rows']:,})",
           f"<= one chunk ({chunk:,})", 0 <= streamed_again <= chunk and
           resumed_from == checkpoint["rows"],
           f"checkpoint {checkpoint['rows']:,} vs last chunk_committed logged before the kill "
           f"{reported:,}: {lag:,} rows ({lag / chunk:.1f} chunk) committed but not yet "
           "mirrored",
           f"rows the source had sent to the killed attempt but it had not committed (read "
           f"ahead, lost with the process, read again): {sent_before_kill - checkpoint['rows']:,}"
           f" = {(sent_before_kill - checkpoint['rows']) / chunk:.1f} chunks "
           f"(pg_stat_progress_copy just before the kill; a lower bound)")
    for worker in (first, second):
        worker.stop()


def read_checkpoint(bench: Bench, job_id: str, table: str) -> dict[str, Any]:
    files = list((bench.settings.job_dir(job_id) / "tables").glob("*.db"))
    db = sqlite3.connect(f"file:{files[0]}?mode=ro", uri=True)
    try:
        last_key, rows, chunks = db.execute(
            "SELECT last_key, rows, chunks FROM _liteshift_checkpoint").fetchone()
        count = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    finally:
        db.close()
    if count != rows:
        raise SystemExit(f"work file holds {count} rows, its checkpoint says {rows}")
    return {"last_key": last_key, "rows": rows, "chunks": chunks}


TARGETS = {"memory": target_memory, "bigrow": target_bigrow, "parallel": target_parallel,
           "overhead": target_overhead, "resume": target_resume,
           "manytables": target_manytables}
SMALL = {"blob_rows": 100, "text_rows": 10_000, "parallel_rows": 200_000, "empty_tables": 200,
         "resume_rows": 200_000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated, from {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--small", action="store_true",
                        help="small sizes for a quick run: " + ", ".join(
                            f"{k.replace('_', '-')} {v:,}" for k, v in SMALL.items()))
    parser.add_argument("--blob-rows", type=int, default=2000)
    parser.add_argument("--blob-mb", type=float, default=5.0)
    parser.add_argument("--text-rows", type=int, default=100_000)
    parser.add_argument("--text-kb", type=float, default=50.0)
    parser.add_argument("--bigrow-rows", type=int, default=3)
    parser.add_argument("--bigrow-mb", type=float, default=20.0,
                        help="MB of bytea and as many of text in each big row")
    parser.add_argument("--parallel-tables", type=int, default=4)
    parser.add_argument("--parallel-rows", type=int, default=1_000_000,
                        help="rows per table of the parallel target, and of the mirror one")
    parser.add_argument("--rounds", type=int, default=1, help="parallel rounds (best is kept)")
    parser.add_argument("--empty-tables", type=int, default=200)
    parser.add_argument("--resume-rows", type=int, default=1_000_000)
    parser.add_argument("--many-tables", default="200,2000",
                        help="manytables: comma-separated table counts, one job each")
    parser.add_argument("--many-rows", type=int, default=10,
                        help="manytables: rows in each table")
    parser.add_argument("--many-source", choices=("pg", "mysql"), default="pg",
                        help="manytables: the tables in PostgreSQL or in MariaDB/MySQL "
                        "(127.0.0.1:3306, root)")
    parser.add_argument("--many-concurrency", type=int, default=2,
                        help="manytables: the worker's pool processes")
    parser.add_argument("--chunk-rows", type=int, default=20_000,
                        help="rows per chunk in the resume target (the default is the "
                        "service's)")
    parser.add_argument("--rss-ceiling-mb", type=float, default=4096,
                        help="kill a worker whose RSS passes this (protects the machine)")
    parser.add_argument("--database", default="liteshift_targets",
                        help="source database in the local PostgreSQL, dropped at the end")
    parser.add_argument("--keep-source", action="store_true",
                        help="keep the source database and tables for the next run")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the workers, to try a setting "
                        "(LITESHIFT_CHUNK_BYTES=16777216); repeatable")
    args = parser.parse_args(argv)
    try:
        args.worker_env = dict(item.split("=", 1) for item in args.worker_env)
    except ValueError:
        parser.error("--worker-env takes NAME=VALUE")
    if args.small:
        for name, value in SMALL.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    unknown = set(args.targets.split(",")) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_database(args.database)
    bench = Bench(args)
    try:
        for name in args.targets.split(","):
            TARGETS[name](bench)
    finally:
        bench.close()
        if not args.keep_source:
            pg("postgres", f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    print("\nsummary")
    for r in RESULTS:
        print(f"  {'PASS' if r.passed else 'MISS'}  {r.target}: {r.measured} "
              f"(target {r.goal})")
    return 0 if all(r.passed for r in RESULTS) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["_worker"]:
        worker_shim(sys.argv[2:])
    elif sys.argv[1:2] == ["_reader"]:
        sys.exit(reader_shim())
    else:
        sys.exit(main())
