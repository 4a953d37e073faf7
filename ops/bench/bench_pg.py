"""Benchmark liteshift against the read floor: `psql \\copy` of the same table to /dev/null.

    .venv/bin/python ops/bench/bench_pg.py [--rows 1000000] [--rounds 3]

Creates (or re-creates, when its row count differs) table bench_mixed in the local
PostgreSQL, then per round times psql's \\copy and a liteshift job through the real queue: a
prefork worker (concurrency 1) on its own queue, Redis prefix and data directory under /tmp,
timed from submit to the published file. Prints the medians and checks the published rows.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from isolation import isolated_run
from worker_process import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
SERVER = "postgresql://postgres@127.0.0.1"
TABLE = "bench_mixed"
TARGET = "bench"

CREATE_SQL = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
  id bigint PRIMARY KEY, n integer, t text, j jsonb, tags text[], price numeric(12,2),
  at timestamptz, flag boolean, u uuid, b bytea
);
INSERT INTO {TABLE}
SELECT g, ((g * 7919) % 1000003)::int, 'row ' || g || ' ' || md5(g::text),
       jsonb_build_object('id', g, 'kind', 'k' || g % 10, 'even', g % 2 = 0),
       ARRAY['t' || g % 5, 't' || g % 7], round((g % 100000) / 100.0, 2),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', g % 3 = 0,
       md5(g::text)::uuid, decode(md5(g::text), 'hex')
FROM generate_series(1::bigint, %(rows)s) g;
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are shown")
    parser.add_argument("--database", default="liteshift_bench",
                        help="source database in the local PostgreSQL (default liteshift_bench)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="Redis for the broker and job state (default db 0; the run uses "
                        "its own queue and key prefix there and removes them after)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.rounds < 1:
        parser.error("--rows and --rounds must be at least 1")
    return args


def ensure_table(database: str, rows: int) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                             (database,)).fetchone():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    with psycopg.connect(f"{SERVER}/{database}", autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()[0]
        if exists and conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] == rows:
            return
        print(f"creating {TABLE} with {rows:,} rows in {database} ...", flush=True)
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(CREATE_SQL.replace("%(rows)s", str(int(rows))))
        # Hint bits and statistics now, so the first timed read does not pay for them.
        conn.execute(f"VACUUM (FREEZE, ANALYZE) {TABLE}")
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)


def time_psql(database: str) -> float:
    command = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database,
               "-c", f"\\copy {TABLE} to /dev/null"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


PHASES = (("plan", "queued", "copying"), ("copy", "copying", "finalizing"),
          ("finalize", "finalizing", "done"))


def run_liteshift(settings: Any, store: Any, send: Any, source: str,
                  rows: int) -> tuple[float, dict[str, float]]:
    """Submit one job and wait for it to publish: seconds from submit to done, and the
    seconds each phase took by the job's own state events."""
    from worker.jobs.control import submit_job
    from worker.state.store import JobState

    data = settings.data_dir
    for leftover in (data / f"{TARGET}.db", data / f"{TARGET}.report.json"):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(settings.state_dir / "jobs", ignore_errors=True)
    started = time.perf_counter()
    job_id = submit_job(settings, store, send, source=source, target=TARGET)
    while True:
        state = store.job_state(job_id)
        if state is not None and state.finished:
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    if state != JobState.DONE:
        raise SystemExit(f"liteshift job {job_id} {state.value}: {store.job(job_id)['error']}")
    db = sqlite3.connect(f"file:{data / f'{TARGET}.db'}?mode=ro", uri=True)
    published = db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    db.close()
    if published != rows:
        raise SystemExit(f"the published file holds {published:,} rows, not {rows:,}")
    entered = {e["state"]: e["at"] for _, e in store.events(job_id, count=10_000)
               if e["event"] == "job_state"}
    return seconds, {name: entered[end] - entered[start] for name, start, end in PHASES}


def report(rows: int, rounds: int, psql_s: float, lite_s: float,
           phases: dict[str, float]) -> None:
    ratio, psql = lite_s / psql_s, "psql \\copy"
    print(f"\n{rows:,} rows of {TABLE}, median of {rounds} round(s)")
    print(f"{'tool':<12} {'seconds':>8} {'rows/s':>12} {'ratio':>7}")
    print(f"{psql:<12} {psql_s:>8.2f} {rows / psql_s:>12,.0f} {1:>7.2f}")
    print(f"{'liteshift':<12} {lite_s:>8.2f} {rows / lite_s:>12,.0f} {ratio:>7.2f}")
    print(f"ratio: liteshift takes {ratio:.2f}x the time of psql \\copy "
          f"(psql rows/s / liteshift rows/s = {(rows / psql_s) / (rows / lite_s):.2f}); "
          "published row count checked")
    print("liteshift phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("psql") is None:
        raise SystemExit("psql is not installed: apt-get install -y postgresql-client")
    ensure_table(args.database, args.rows)

    run_id, scratch = isolated_run("bench", args.redis_url)
    from worker.celery_app import app, send
    from worker.core.config import get_settings
    from worker.state.store import StateStore

    settings = get_settings()
    store = StateStore.from_settings(settings)
    worker = WorkerProcess(name=f"{run_id}@bench", queue=run_id,
                           log_path=scratch / "worker.log")
    psql_times: list[float] = []
    lite_times: list[float] = []
    phases: list[dict[str, float]] = []
    try:
        worker.wait_ready(app)
        source = f"{SERVER}/{args.database}"
        for round_no in range(1, args.rounds + 1):
            psql_times.append(time_psql(args.database))
            seconds, phase = run_liteshift(settings, store, send, source, args.rows)
            lite_times.append(seconds)
            phases.append(phase)
            print(f"round {round_no}: psql \\copy {psql_times[-1]:.2f} s, liteshift "
                  f"{seconds:.2f} s (" + ", ".join(f"{k} {v:.2f}" for k, v in phase.items())
                  + ")", flush=True)
    except BaseException:
        print(f"worker log ({worker.log_path}):\n{worker.tail()}", file=sys.stderr)
        raise
    finally:
        worker.stop()
        keys = list(store.redis.scan_iter(f"{run_id}:*")) + [run_id]
        store.redis.delete(*keys)
        shutil.rmtree(scratch, ignore_errors=True)
    report(args.rows, args.rounds, statistics.median(psql_times), statistics.median(lite_times),
           {name: statistics.median(p[name] for p in phases) for name, _, _ in PHASES})
    return 0


if __name__ == "__main__":
    sys.exit(main())
