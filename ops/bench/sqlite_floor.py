"""The least CPU any tool can spend to make what liteshift publishes, against issue 22's
targets: is a target reachable on this machine's cores at all?

    .venv/bin/python ops/bench/sqlite_floor.py --file PUBLISHED.db --only pg-app \
        [--rounds 3] [--tools duckdb,duckdb-indexes]

PUBLISHED.db is liteshift's output for the data set (`bench.py --only pg-app --keep` says
where it left it). Each round measures, in CPU seconds of the process doing the work:
  source      the source server reading every table once, rows discarded: PostgreSQL's
              backend for a binary COPY of each table (/proc/<pid>/stat), or the whole
              mysqld for an unbuffered SELECT * of each table (quiet machine: nobody else)
  insert      SQLite storing every row into a fresh file of the same tables (INSERT ...
              SELECT from the published file, attached; not SQLite's transfer shortcut,
              which only copies records between files that already have them)
  indexes     SQLite building every secondary index of the file
  read-back   reading every row back once, checksummed (worker/native's read-back, what
              issue 22 keeps: "every row verified")
  quick_check the file's structure, every page of every b-tree read once
The floor is their sum: no driver, no conversion, no transport, no merge of work files, no
index-against-table check, no fsync, no Python. Divided by the cores, it is the fewest
seconds a job on this machine could take if every core were busy with nothing else, and
the peers' seconds in the same round turn each target ratio into the seconds liteshift
would have to reach.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parents[1]))

import bench  # noqa: E402

from worker.core.identifiers import quote  # noqa: E402
from worker.native import fastsqlite  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
TARGETS = {"duckdb": 0.8, "duckdb-indexes": 1.2}  # issue 22: liteshift's speed over theirs


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, every thread


def source_cpu_s(ds: bench.Dataset, tables: list[str]) -> float:
    if ds.kind == "pg":
        import psycopg

        with psycopg.connect(host=bench.PG_HOST, port=bench.PG_PORT, user=bench.PG_USER,
                             dbname=ds.database, autocommit=True) as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            before = proc_cpu_s(pid)
            for table in tables:
                with conn.cursor().copy(f"COPY {quote(table)} TO STDOUT (FORMAT binary)") as copy:
                    for _ in copy:
                        pass
            return proc_cpu_s(pid) - before
    import mysql.connector

    mysqld = int(Path("/run/mysqld/mysqld.pid").read_text())
    conn = mysql.connector.connect(host=bench.MY_HOST, port=bench.MY_PORT, user=bench.MY_USER,
                                   database=ds.database, raw=True)
    try:
        before = proc_cpu_s(mysqld)
        for table in tables:
            cursor = conn.cursor(raw=True, buffered=False)
            cursor.execute(f"SELECT * FROM `{table}`")
            while cursor.fetchmany(10_000):
                pass
            cursor.close()
        return proc_cpu_s(mysqld) - before
    finally:
        conn.close()


def sqlite_cpu_s(published: Path, scratch: Path) -> dict[str, float]:
    fresh = scratch / "floor.db"
    for stale in scratch.glob("floor.db*"):
        stale.unlink()
    db = sqlite3.connect(fresh, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("ATTACH ? AS published", (str(published),))
    tables = [(name, sql) for name, sql in db.execute(
        "SELECT name, sql FROM published.sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite_%'")]
    indexes = [sql for (sql,) in db.execute(
        "SELECT sql FROM published.sqlite_master WHERE type = 'index' AND sql IS NOT NULL")]
    spent = dict.fromkeys(("insert", "indexes", "read-back", "quick_check"), 0.0)

    def timed(part: str, sql: str) -> None:
        start = time.process_time()
        db.execute("BEGIN")
        db.execute(sql).fetchall()
        db.execute("COMMIT")
        spent[part] += time.process_time() - start

    for name, sql in tables:
        db.execute(sql)
        # WHERE keeps SQLite from its transfer shortcut: each row is stored as a new one
        timed("insert", f"INSERT INTO main.{quote(name)} SELECT * FROM published.{quote(name)} "
                        "WHERE 1")
    db.execute("DETACH published")
    for sql in indexes:
        timed("indexes", sql)
    if not fastsqlite.usable(db, fresh):
        raise SystemExit("worker/native's C extensions are not built in this tree: "
                         "run `.venv/bin/python setup.py build_ext --inplace` first")
    for name, _ in tables:
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({quote(name)})")]
        start = time.process_time()
        fastsqlite.readback(db, f"SELECT {', '.join(map(quote, columns))} FROM {quote(name)}",
                            None, fast=True)
        spent["read-back"] += time.process_time() - start
    start = time.process_time()
    assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    spent["quick_check"] = time.process_time() - start
    db.close()
    for stale in scratch.glob("floor.db*"):
        stale.unlink()
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, required=True, help="liteshift's published file")
    parser.add_argument("--only", default="pg-app", choices=("pg-app", "mysql-app"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tools", default="duckdb,duckdb-indexes",
                        help="peers timed in the same rounds (empty: none)")
    args = parser.parse_args()
    bench_args = bench.parse_args(["--only", args.only, "--install", "no"])
    ds = bench.datasets(bench_args)[0]
    tools = [bench.TOOLS[name] for name in filter(None, args.tools.split(","))]
    cores = os.cpu_count() or 1
    parts: dict[str, list[float]] = {}
    peers: dict[str, list[float]] = {tool.name: [] for tool in tools}
    with tempfile.TemporaryDirectory(prefix="liteshift-floor-") as tmp:
        scratch = Path(tmp)
        for number in range(1, args.rounds + 1):
            spent = {"source": source_cpu_s(ds, list(ds.expected)),
                     **sqlite_cpu_s(args.file, scratch)}
            for part, seconds in spent.items():
                parts.setdefault(part, []).append(seconds)
            line = ", ".join(f"{part} {seconds:.2f}" for part, seconds in spent.items())
            print(f"round {number}: {line}; sum {sum(spent.values()):.2f} CPU s", flush=True)
            for tool in tools:
                run = bench.run_peer(tool, ds, scratch, timeout_s=600)
                if run.error:
                    raise SystemExit(f"{tool.name}: {run.error}")
                peers[tool.name].append(run.seconds)
                print(f"round {number}: {tool.name} {run.seconds:.2f} s", flush=True)
    medians = {part: statistics.median(values) for part, values in parts.items()}
    floor_cpu = sum(medians.values())
    print(f"\n### {ds.key}: the floor, medians of {args.rounds} "
          f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})\n")
    print("| part | CPU s |\n|---|---:|")
    for part, seconds in medians.items():
        print(f"| {part} | {seconds:.2f} |")
    print(f"| **floor** | **{floor_cpu:.2f}** |")
    print(f"\nOn {cores} cores, all busy: at least {floor_cpu / cores:.2f} s.\n")
    if peers:
        print("| peer | seconds | target | liteshift must take at most | floor / that |")
        print("|---|---:|---:|---:|---:|")
        for name, seconds in peers.items():
            peer_s = statistics.median(seconds)
            most = peer_s / TARGETS.get(name, 1.0)
            print(f"| {name} | {peer_s:.2f} | {TARGETS.get(name, 1.0)} | {most:.2f} s "
                  f"| {floor_cpu / cores / most:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
