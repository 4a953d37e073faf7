#!/usr/bin/env python3
"""Kill liteshift workers at random for a while; then count rows lost and duplicated.

    .venv/bin/python ops/chaos/chaos.py --seconds 300 --rows 3000000

Creates a PostgreSQL database with four narrow tables (`--rows` in all, values computed from
the key), starts `--workers` real Celery workers, and runs jobs one after another for
`--seconds`; while each job runs, a random worker is killed with SIGKILL every `--min-gap` to
`--max-gap` seconds (with `--pool prefork`, sometimes only its pool child) and a fresh one is
started. After each job, the published file is checked with plain SQL (every key once, every
value equal to the formula) and its checksums against a clean one-pass read of the source
(`verify --source`) and against the report. Prints the totals and exits 0 only for
"rows lost: 0, rows duplicated: 0, checksums match: yes" with every job done.

Needs PostgreSQL (--pg, a superuser URL) and Redis (--redis); uses its own database, Redis key
prefix, queue and data directory, and removes them at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from celery import Celery  # noqa: E402

TABLE_SHARES = {"chaos_a": 0.4, "chaos_b": 0.3, "chaos_c": 0.2, "chaos_d": 0.1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300, help="how long to keep going")
    parser.add_argument("--rows", type=int, default=3_000_000, help="rows per job, all tables")
    parser.add_argument("--workers", type=int, default=2, help="workers running at once")
    parser.add_argument("--pool", choices=("solo", "prefork"), default="solo")
    parser.add_argument("--chunk-rows", type=int, default=4000)
    parser.add_argument("--lease-ttl", type=float, default=2.0, help="LITESHIFT_LEASE_TTL_S")
    parser.add_argument("--min-gap", type=float, default=0.3, help="least seconds between kills")
    parser.add_argument("--max-gap", type=float, default=3.0, help="most seconds between kills")
    parser.add_argument("--job-timeout", type=float, default=600,
                        help="a job not finished by then counts as stuck")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    return parser.parse_args(argv)


@dataclass
class Totals:
    jobs: int = 0
    jobs_done: int = 0
    kills: int = 0
    child_kills: int = 0
    rows_expected: int = 0
    rows_lost: int = 0
    rows_duplicated: int = 0
    rows_wrong: int = 0
    checksum_mismatches: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Workers:
    """Real `celery worker` processes, each in its own process group."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], queue: str, logs: Path):
        self.args, self.env, self.queue, self.logs = args, env, queue, logs
        self.procs: list[subprocess.Popen] = []
        self.started = 0

    def start(self) -> subprocess.Popen:
        self.started += 1
        name = f"chaos{self.started}-{uuid.uuid4().hex[:4]}@{socket.gethostname()}"
        log = self.logs / f"worker-{self.started}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q",
                 self.queue, "--pool", self.args.pool, "--concurrency", "1",
                 "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle",
                 "--without-heartbeat", "--loglevel", "INFO", "-n", name],
                cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def kill_one(self, rng: random.Random, totals: Totals) -> str:
        alive = [p for p in self.procs if p.poll() is None]
        if not alive:
            self.start()
            return "none alive; started one"
        victim = rng.choice(alive)
        if self.args.pool == "prefork" and rng.random() < 0.5:
            kids = children(victim.pid)
            if kids:
                os.kill(rng.choice(kids), signal.SIGKILL)
                totals.child_kills += 1
                return f"killed a pool child of worker {victim.pid}"
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        totals.kills += 1
        self.procs.remove(victim)
        self.start()
        return f"killed worker {victim.pid}"

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def make_source(admin_url: str, name: str, rows: int) -> dict[str, int]:
    sizes = {t: max(1, int(rows * share)) for t, share in TABLE_SHARES.items()}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(url, autocommit=True) as conn:
        for table, count in sizes.items():
            conn.execute(f'CREATE UNLOGGED TABLE "{table}" (id bigint NOT NULL, n integer, '
                         "s text)")
            conn.execute(f'INSERT INTO "{table}" SELECT i, (i * 7919) % 1000003, CASE WHEN '
                         f"i % 13 = 0 THEN NULL ELSE 'r' || i END FROM "
                         f"generate_series(1::bigint, {count}) AS i")
            conn.execute(f'ALTER TABLE "{table}" ADD PRIMARY KEY (id)')
            conn.execute(f'ANALYZE "{table}"')
    return sizes


def check_job(settings: Any, store: Any, job_id: str, target: str, sizes: dict[str, int],
              totals: Totals) -> str:
    """Count lost, duplicated and wrong rows with plain SQL; compare checksums."""
    from worker.core.checksum import as_hex, cursor_checksum
    from worker.jobs import verify

    path = settings.data_dir / f"{target}.db"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    readback = {}
    try:
        for table, rows in sizes.items():
            count, distinct, wrong = db.execute(
                f"SELECT count(*), count(DISTINCT id), sum(n IS NOT (id * 7919) % 1000003 "
                f"OR s IS NOT (CASE WHEN id % 13 = 0 THEN NULL ELSE 'r' || id END) OR id < 1 "
                f'OR id > ?) FROM "{table}"', (rows,)).fetchone()
            totals.rows_expected += rows
            totals.rows_lost += rows - distinct
            totals.rows_duplicated += count - distinct
            totals.rows_wrong += wrong or 0
            _, total = cursor_checksum(db.execute(f'SELECT * FROM "{table}"'))
            readback[table] = as_hex(total)
    finally:
        db.close()
    result = verify.verify_job(settings, store, job_id, against_source=True)
    for entry in result["tables"]:
        same = (entry["checksum"] == entry["source_checksum"] == entry["expected_checksum"]
                == readback[entry["name"]])
        if not same or not entry["ok"]:
            totals.checksum_mismatches.append(f"{job_id}/{entry['name']}: {entry}")
    return "checksums match" if result["state"] == "ok" else "CHECKSUMS DIFFER"


def run(args: argparse.Namespace) -> Totals:
    rng = random.Random(args.seed)
    tag = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix=f"liteshift-chaos-{tag}-"))
    # LITESHIFT_READER_PROCESS_BYTES=0 sends every table through a reader process
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LITESHIFT_") or k == "LITESHIFT_READER_PROCESS_BYTES"}
    env.update({
        "LITESHIFT_REDIS_URL": args.redis, "LITESHIFT_REDIS_PREFIX": f"chaos-{tag}",
        "LITESHIFT_QUEUE": f"chaos-q-{tag}", "LITESHIFT_DATA_DIR": str(work / "data"),
        "LITESHIFT_LEASE_TTL_S": str(args.lease_ttl), "LITESHIFT_LOG_FORMAT": "json",
        "LITESHIFT_SOURCE_RETRY_BACKOFF_S": "0.5",
    })
    os.environ.update(env)
    from worker.core.config import Settings
    from worker.jobs import control
    from worker.state.store import StateStore

    settings = Settings()
    store = StateStore.from_settings(settings)
    celery = Celery("liteshift-chaos", broker=settings.redis_url)

    def send(name: str, *task_args: Any) -> None:
        celery.send_task(name, args=list(task_args), queue=settings.queue)

    database = f"chaos_{tag}"
    say(f"creating {args.rows:,} rows in database {database}; work dir {work}")
    sizes = make_source(args.pg, database, args.rows)
    source = args.pg.rsplit("/", 1)[0] + f"/{database}"
    workers = Workers(args, env, settings.queue, work)
    totals = Totals()
    started = time.monotonic()
    try:
        for _ in range(args.workers):
            workers.start()
        while time.monotonic() - started < args.seconds:
            totals.jobs += 1
            target = f"chaos_{totals.jobs}"
            job_id = control.submit_job(settings, store, send, source=source, target=target,
                                        options={"chunk_rows": args.chunk_rows})
            job_started, kills_before = time.monotonic(), totals.kills + totals.child_kills
            next_kill = job_started + rng.uniform(args.min_gap, args.max_gap)
            state = "queued"
            while True:
                state = (store.job_state(job_id) or control.JobState.QUEUED).value
                if state in ("done", "failed", "cancelled"):
                    break
                if time.monotonic() - job_started > args.job_timeout:
                    totals.problems.append(f"job {job_id} stuck in {state}: "
                                           f"{control.job_view(store, job_id)}")
                    break
                if time.monotonic() >= next_kill:
                    workers.kill_one(rng, totals)
                    next_kill = time.monotonic() + rng.uniform(args.min_gap, args.max_gap)
                time.sleep(0.05)
            kills = totals.kills + totals.child_kills - kills_before
            seconds = time.monotonic() - job_started
            if state == "done":
                totals.jobs_done += 1
                verdict = check_job(settings, store, job_id, target, sizes, totals)
                (settings.data_dir / f"{target}.db").unlink()
            else:
                verdict = f"job ended {state}: {store.job(job_id)}"
                totals.problems.append(verdict)
            say(f"job {totals.jobs} ({job_id}): {state} in {seconds:.0f} s with {kills} "
                f"kills; {verdict}")
    finally:
        workers.stop_all()
        celery.close()
        cleanup(args, store, settings, database, work)
    return totals


def cleanup(args: argparse.Namespace, store: Any, settings: Any, database: str,
            work: Path) -> None:
    client = store.redis
    keys = [*client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000),
            *client.scan_iter(match=f"{settings.queue}*", count=1000)]
    if keys:
        client.delete(*keys)
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seed is None:
        args.seed = int(time.time())
    say(f"seed {args.seed}: --seconds {args.seconds:g} --rows {args.rows:,} --workers "
        f"{args.workers} --pool {args.pool}")
    started = time.monotonic()
    totals = run(args)
    ok = (totals.rows_lost == 0 and totals.rows_duplicated == 0 and totals.rows_wrong == 0
          and not totals.checksum_mismatches and not totals.problems
          and totals.jobs_done == totals.jobs)
    print(f"""
ran:               {time.monotonic() - started:.0f} s, seed {args.seed}
jobs:              {totals.jobs} ({totals.jobs_done} done)
workers killed:    {totals.kills} (SIGKILL), pool children killed: {totals.child_kills}
rows checked:      {totals.rows_expected:,}
rows lost:         {totals.rows_lost}
rows duplicated:   {totals.rows_duplicated}
rows with wrong values: {totals.rows_wrong}
checksums match:   {"yes" if not totals.checksum_mismatches else "NO"}""")
    for line in totals.checksum_mismatches + totals.problems:
        print(f"  problem: {line}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
