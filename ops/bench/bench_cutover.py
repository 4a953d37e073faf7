"""Benchmark follow mode's cutover: the app's downtime, from the cutover request to the
published file, after a steady writer ran during and after the copy.

    .venv/bin/python ops/bench/bench_cutover.py [--sources pg,mysql] [--rate 300]
        [--write-s 30] [--rounds 3] [--rows 100000]

Each round, for each source: three tables chained by foreign keys (accounts <- ledger <-
audit, `--rows` ledger rows, a tenth as many of the others) are made afresh; writer threads
start a steady `--rate` transactions per second, each one inserting an account with its
ledger line and audit row, updating a ledger amount and an account name and deleting an
audit row; a follow job is submitted through the real queue (a prefork Celery worker on its
own queue, Redis prefix and data directory under /tmp) and copies the tables while they are
written; the writers go on until `--write-s` seconds have passed since the submit (and at
least `--follow-s` seconds of following), then stop; cutover is requested and timed until
the job is done. The downtime is the job's own (report `cutover.downtime_s`: the request's
time to the published file); the script also shows when the follower saw the request and
when its final checks ended, from the worker's log. Then every table of the published file
is compared with the source row for row; a difference fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from isolation import isolated_run
from worker_process import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
PG_SERVER = "postgresql://postgres@127.0.0.1"
MY_URL = "mysql://root@127.0.0.1:3306"
DATABASE = "liteshift_bench_cutover"
TABLES = ("accounts", "ledger", "zz_audit")
SOURCES = ("pg", "mysql")
SLOT_ATTEMPTS = 10
SLOT_WAITED = "creating a replication slot waited"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="pg,mysql",
                        help="comma-separated: pg, mysql (default both)")
    parser.add_argument("--rate", type=float, default=300.0,
                        help="writer transactions per second, all writers together (300)")
    parser.add_argument("--writers", type=int, default=8,
                        help="writer connections sharing the rate (8)")
    parser.add_argument("--write-s", type=float, default=30.0,
                        help="seconds of writing from the submit on (30)")
    parser.add_argument("--follow-s", type=float, default=5.0,
                        help="at least this many seconds of writing once the job follows (5)")
    parser.add_argument("--rows", type=int, default=100_000,
                        help="ledger rows before the writers start (100,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per source; medians (3)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="the worker's processes (2: the follower holds one)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="broker and job state (the run's own queue and key prefix, "
                        "removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = set(args.sources) - set(SOURCES)
    if unknown or not args.sources:
        parser.error(f"--sources takes pg and/or mysql, not {', '.join(sorted(unknown))}")
    if args.rate <= 0 or args.writers < 1 or args.rounds < 1 or args.rows < 10:
        parser.error("--rate, --writers, --rounds must be positive and --rows at least 10")
    return args


# -- the source's tables and the writer's transaction, per source kind -------------------

class PgSide:
    url = f"{PG_SERVER}/{DATABASE}"

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def create(self, rows: int) -> None:
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                 (DATABASE,)).fetchone():
                admin.execute(f"CREATE DATABASE {DATABASE}")
        small = max(1, rows // 10)
        with self.connect() as conn:
            conn.execute("DROP TABLE IF EXISTS zz_audit, ledger, accounts")
            conn.execute("CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL, "
                         "w smallint NOT NULL DEFAULT 0)")
            conn.execute("CREATE TABLE ledger (id bigserial PRIMARY KEY, account_id bigint "
                         "NOT NULL REFERENCES accounts, amount integer NOT NULL, "
                         "w smallint NOT NULL DEFAULT 0)")
            conn.execute("CREATE TABLE zz_audit (id bigserial PRIMARY KEY, ledger_id bigint "
                         "NOT NULL REFERENCES ledger, note text, w smallint NOT NULL DEFAULT 0)")
            conn.execute("INSERT INTO accounts (name) SELECT 'a' || i "
                         f"FROM generate_series(1, {small}) i")
            conn.execute(f"INSERT INTO ledger (account_id, amount) SELECT 1 + i % {small}, i "
                         f"FROM generate_series(1, {rows}) i")
            conn.execute("INSERT INTO zz_audit (ledger_id, note) SELECT i, 'n' || i "
                         f"FROM generate_series(1, {small}) i")
            conn.execute("VACUUM ANALYZE")

    def write(self, conn: Any, rows: int) -> None:
        small = max(1, rows // 10)
        with conn.transaction():
            conn.execute("""
                WITH a AS (INSERT INTO accounts (name, w) VALUES ('w', 1) RETURNING id),
                     l AS (INSERT INTO ledger (account_id, amount, w) SELECT id, 1, 1 FROM a
                           RETURNING id)
                INSERT INTO zz_audit (ledger_id, note, w) SELECT id, 'w', 1 FROM l""")
            conn.execute("UPDATE ledger SET amount = amount + 1 WHERE id = %s",
                         (random.randint(1, rows),))
            conn.execute("UPDATE accounts SET name = name || 'u' WHERE id = %s",
                         (random.randint(1, small),))
            conn.execute("DELETE FROM zz_audit WHERE id = %s", (random.randint(1, small),))

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]

    def slots(self) -> int:
        with self.connect() as conn:
            return int(conn.execute("SELECT count(*) FROM pg_replication_slots WHERE "
                                    "database = current_database()").fetchone()[0])

    def drop(self) -> None:
        with self.connect() as conn:
            conn.execute("DROP TABLE IF EXISTS zz_audit, ledger, accounts")


class MySide:
    url = f"{MY_URL}/{DATABASE}"

    def connect(self, database: str | None = DATABASE) -> Any:
        import mysql.connector

        return mysql.connector.connect(host="127.0.0.1", port=3306, user="root",
                                       database=database, autocommit=True, use_pure=False,
                                       charset="utf8mb4", collation="utf8mb4_general_ci")

    def _script(self, statements: list[str], database: str | None = DATABASE) -> None:
        conn = self.connect(database)
        try:
            cur = conn.cursor()
            for statement in statements:
                cur.execute(statement)
                if cur.with_rows:  # ANALYZE TABLE answers with rows
                    cur.fetchall()
            cur.close()
        finally:
            conn.close()

    def create(self, rows: int) -> None:
        small = max(1, rows // 10)
        self._script([f"CREATE DATABASE IF NOT EXISTS {DATABASE}"], database=None)
        self._script([
            "DROP TABLE IF EXISTS zz_audit, ledger, accounts",
            "CREATE TABLE accounts (id bigint AUTO_INCREMENT PRIMARY KEY, name varchar(200) "
            "NOT NULL, w smallint NOT NULL DEFAULT 0) ENGINE=InnoDB",
            "CREATE TABLE ledger (id bigint AUTO_INCREMENT PRIMARY KEY, account_id bigint NOT "
            "NULL, amount int NOT NULL, w smallint NOT NULL DEFAULT 0, FOREIGN KEY "
            "(account_id) REFERENCES accounts (id)) ENGINE=InnoDB",
            "CREATE TABLE zz_audit (id bigint AUTO_INCREMENT PRIMARY KEY, ledger_id bigint NOT "
            "NULL, note varchar(20), w smallint NOT NULL DEFAULT 0, FOREIGN KEY (ledger_id) "
            "REFERENCES ledger (id)) ENGINE=InnoDB",
            f"INSERT INTO accounts (name) SELECT CONCAT('a', seq) FROM seq_1_to_{small}",
            f"INSERT INTO ledger (account_id, amount) SELECT 1 + seq % {small}, seq "
            f"FROM seq_1_to_{rows}",
            f"INSERT INTO zz_audit (ledger_id, note) SELECT seq, CONCAT('n', seq) "
            f"FROM seq_1_to_{small}",
            "ANALYZE TABLE accounts, ledger, zz_audit"])

    def write(self, conn: Any, rows: int) -> None:
        small = max(1, rows // 10)
        from mysql.connector import errors

        for attempt in range(100):  # several writers lock neighbouring rows: deadlocks
            cur = conn.cursor()
            try:
                conn.start_transaction()
                cur.execute("INSERT INTO accounts (name, w) VALUES ('w', 1)")
                cur.execute("INSERT INTO ledger (account_id, amount, w) "
                            "VALUES (LAST_INSERT_ID(), 1, 1)")
                cur.execute("INSERT INTO zz_audit (ledger_id, note, w) "
                            "VALUES (LAST_INSERT_ID(), 'w', 1)")
                cur.execute("UPDATE ledger SET amount = amount + 1 WHERE id = %s",
                            (random.randint(1, rows),))
                cur.execute("UPDATE accounts SET name = LEFT(CONCAT(name, 'u'), 200) "
                            "WHERE id = %s", (random.randint(1, small),))
                cur.execute("DELETE FROM zz_audit WHERE id = %s", (random.randint(1, small),))
                conn.commit()
                return
            except errors.Error as exc:
                conn.rollback()
                if exc.errno not in (1205, 1213):
                    raise
                time.sleep(0.002 * min(attempt, 10))
            finally:
                cur.close()
        raise RuntimeError("a writer kept deadlocking")

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(f"SELECT * FROM {table} ORDER BY id")
            return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def slots(self) -> int:
        return 0  # nothing is held on a MySQL source between reads

    def drop(self) -> None:
        self._script(["DROP TABLE IF EXISTS zz_audit, ledger, accounts"])


# -- the writers: a steady pace shared by several connections ----------------------------

class Writers:
    """`count` threads writing `rate` transactions per second together, each on a schedule
    (thread i's k-th transaction at start + (k * count + i) / rate) so the pace stays
    steady whatever one transaction costs, as long as the source keeps up."""

    def __init__(self, side: Any, *, rate: float, count: int, rows: int):
        self.side, self.rate, self.count, self.rows = side, rate, count, rows
        self.halt = threading.Event()
        self.commits = [0] * count
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(count)]
        self.started = self.stopped = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()

    def _run(self, i: int) -> None:
        try:
            conn = self.side.connect()
            try:
                k = 0
                while not self.halt.is_set():
                    due = self.started + (k * self.count + i) / self.rate
                    if (wait := due - time.monotonic()) > 0 and self.halt.wait(wait):
                        break
                    self.side.write(conn, self.rows)
                    self.commits[i] += 1
                    k += 1
            finally:
                conn.close()
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)
            self.halt.set()

    def stop(self) -> tuple[int, float]:
        """Commits made, and the rate they were made at."""
        self.halt.set()
        for thread in self.threads:
            thread.join(timeout=60)
        self.stopped = time.monotonic()
        if self.errors:
            raise SystemExit(f"a writer failed: {self.errors[0]!r}")
        total = sum(self.commits)
        return total, total / max(1e-9, self.stopped - self.started)


# -- one round ---------------------------------------------------------------------------

def wait_state(store: Any, job_id: str, states: tuple[str, ...], timeout_s: float,
               worker: WorkerProcess) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = store.job(job_id) or {}
        if job.get("state") in states:
            return job
        if job.get("state") in ("failed", "cancelled") and job["state"] not in states:
            raise SystemExit(f"job {job_id} {job['state']}: {job.get('error')}\n{worker.tail()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} not {'/'.join(states)} after {timeout_s} s "
                             f"(it is {job.get('state')})\n{worker.tail()}")
        time.sleep(0.01)


def same_rows(side: Any, path: Path) -> dict[str, int]:
    """Every table of the file equals the source's, row for row; returns the row counts."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    counts = {}
    try:
        if db.execute("PRAGMA foreign_key_check").fetchall():
            raise SystemExit(f"{path}: rows whose parent is missing")
        for table in TABLES:
            source = side.rows(table)
            copied = [tuple(r) for r in db.execute(f'SELECT * FROM "{table}" ORDER BY id')]
            if copied != source:
                differ = next((a, b) for a, b in zip(source + [None] * len(copied),
                                                     copied + [None] * len(source)) if a != b)
                raise SystemExit(f"{table}: the file differs from the source "
                                 f"({len(copied)} rows against {len(source)}; first "
                                 f"difference source {differ[0]} file {differ[1]})")
            counts[table] = len(source)
    finally:
        db.close()
    return counts


def one_round(args: argparse.Namespace, kind: str, side: Any, round_no: int, settings: Any,
              store: Any, send: Any, worker: WorkerProcess) -> dict[str, Any]:
    from worker.jobs import control

    side.create(args.rows)
    target = f"cutover_{kind}_{round_no}"
    writers = Writers(side, rate=args.rate, count=args.writers, rows=args.rows)
    writers.start()
    time.sleep(0.5)
    for _attempt in range(SLOT_ATTEMPTS):
        submitted = time.monotonic()
        job_id = control.submit_job(settings, store, send, source=side.url, target=target,
                                    options={"follow": True})
        job = wait_state(store, job_id, ("following", "failed"), 600, worker)
        if job["state"] == "following":
            break
        if SLOT_WAITED not in str(job.get("error")):
            raise SystemExit(f"job {job_id} failed: {job.get('error')}\n{worker.tail()}")
        # Another session's long transaction on the server held the slot's creation
        # back (the machine is shared): submit again.
        print(f"  {kind}: {job.get('error')}; submitting again", flush=True)
    else:
        raise SystemExit(f"no replication slot could be made in {SLOT_ATTEMPTS} attempts")
    following = time.monotonic()
    while time.monotonic() < max(submitted + args.write_s, following + args.follow_s):
        if writers.halt.wait(0.1):
            break
    commits, rate = writers.stop()
    lag = (store.job(job_id) or {}).get("follow") or {}

    asked = time.monotonic()
    control.request_cutover(store, send, job_id, timeout_s=120)
    wait_state(store, job_id, ("done",), 180, worker)
    seen_s = time.monotonic() - asked
    path = settings.data_dir / f"{target}.db"
    report = json.loads((settings.data_dir / f"{target}.report.json").read_text())
    counts = same_rows(side, path)
    # The job's last event of each name.
    events = {e.get("event", ""): e for e in worker.json_lines() if e.get("job_id") == job_id}
    result = {
        "downtime_s": float(report["cutover"]["downtime_s"]), "seen_done_s": seen_s,
        "target_s": events.get("cutover_target", {}).get("since_request_s"),
        "checked_s": events.get("cutover_checked", {}).get("since_request_s"),
        "checks_s": events.get("cutover_checked", {}).get("seconds"),
        "commits": commits, "rate": rate, "copy_s": following - submitted,
        "write_s": writers.stopped - writers.started,
        "lag_bytes": lag.get("lag_bytes"), "changes_applied": lag.get("changes_applied"),
        "rows": counts, "bytes": path.stat().st_size, "job": job_id,
    }
    deadline = time.monotonic() + 30  # the slot goes right after publishing
    while side.slots() and time.monotonic() < deadline:
        time.sleep(0.1)
    result["slots_left"] = side.slots()
    if result["slots_left"]:
        raise SystemExit(f"job {job_id} left {result['slots_left']} replication slot(s)")
    for leftover in (path, settings.data_dir / f"{target}.report.json"):
        leftover.unlink(missing_ok=True)
    return result


def summary(kind: str, results: list[dict[str, Any]]) -> str:
    downtimes = [r["downtime_s"] for r in results]
    rows = results[-1]["rows"]
    lines = [f"\n{kind}: cutover downtime over {len(results)} round(s): median "
             f"{statistics.median(downtimes):.3f} s, min {min(downtimes):.3f} s, max "
             f"{max(downtimes):.3f} s",
             f"  writers {statistics.median(r['rate'] for r in results):.0f} tx/s for "
             f"{statistics.median(r['write_s'] for r in results):.1f} s (median), copy "
             f"{statistics.median(r['copy_s'] for r in results):.1f} s, file "
             + ", ".join(f"{t} {n:,}" for t, n in rows.items()) + " rows; every table equal "
             "to the source row for row; slots left "
             + str(max(r["slots_left"] for r in results))]
    return "\n".join(lines)


def line(kind: str, round_no: int, r: dict[str, Any]) -> str:
    def s(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    return (f"{kind} round {round_no}: downtime {r['downtime_s']:.3f} s (request seen "
            f"{s(r['target_s'])}, checks ended {s(r['checked_s'])}, checks {s(r['checks_s'])} s;"
            f" done seen by the client {r['seen_done_s']:.3f} s); lag at the request "
            f"{r['lag_bytes']} bytes; {r['commits']} commits at {r['rate']:.0f} tx/s over "
            f"{r['write_s']:.1f} s, copy {r['copy_s']:.1f} s, file {r['bytes']:,} bytes")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id, scratch = isolated_run("cutover", args.redis_url)
    from worker.celery_app import app, send
    from worker.core.config import get_settings
    from worker.state.store import StateStore

    settings = get_settings()
    store = StateStore.from_settings(settings)
    sides: dict[str, Callable[[], Any]] = {"pg": PgSide, "mysql": MySide}
    load = os.getloadavg()
    print(f"load average at the start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{args.rate:.0f} tx/s by {args.writers} writers, {args.write_s:.0f} s from the "
          f"submit, {args.rows:,} ledger rows", flush=True)
    worker = WorkerProcess(name=f"{run_id}@bench", queue=run_id, concurrency=args.concurrency,
                           log_path=scratch / "worker.log", loglevel="INFO")
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in args.sources}
    try:
        worker.wait_ready(app)
        for round_no in range(1, args.rounds + 1):
            for kind in args.sources:  # interleaved: drift on the machine hits both
                side = sides[kind]()
                try:
                    r = one_round(args, kind, side, round_no, settings, store, send, worker)
                finally:
                    side.drop()
                results[kind].append(r)
                print(line(kind, round_no, r), flush=True)
    except BaseException:
        print(f"worker log ({worker.log_path}):\n{worker.tail()}", file=sys.stderr)
        raise
    finally:
        worker.stop()
        keys = list(store.redis.scan_iter(f"{run_id}:*")) + [run_id]
        store.redis.delete(*keys)
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    for kind, rounds in results.items():
        print(summary(kind, rounds))
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
