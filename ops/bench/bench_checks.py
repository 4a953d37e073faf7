"""What finalize's checks cost: `PRAGMA integrity_check` against worker/sqlite/checks.py
(quick_check plus one scan of each index and its table), on one SQLite file, same run.

    .venv/bin/python ops/bench/bench_checks.py [--rows 1000000] [--indexes 1] [--rounds 3]
        [--file PATH] [--mmap-bytes N]

The file is an events-like table (integer key, 9 mixed columns) with `--indexes` secondary
indexes, (user_id, happened_at) first, made once under /tmp and kept; or, with `--file`, an
existing file (a published app database: `bench.py --only pg-app --keep` says where it
left it), without integrity_check, which takes minutes there. Each round times, each on a
fresh connection: integrity_check, quick_check alone, run_checks on one connection
(`readers=0`) and run_checks as finalize runs it (on both cores). Prints medians of wall
and CPU seconds (this process's, every thread), ratios, and the load average. With
`--mmap-bytes N`, each check is also timed with `PRAGMA mmap_size=N` on every connection it
opens, run_checks' readers too, in turns with the default reads through the OS.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from worker.sqlite import checks as checks_module  # noqa: E402
from worker.sqlite.checks import run_checks  # noqa: E402

_open_reader = checks_module.open_reader

INDEXES = [
    "CREATE INDEX events_user_time ON events (user_id, happened_at)",
    "CREATE INDEX events_kind ON events (kind, amount)",
    "CREATE UNIQUE INDEX events_ref ON events (ref)",
    "CREATE INDEX events_open ON events (user_id) WHERE ok = 0",
    "CREATE INDEX events_lower_note ON events ((lower(note)))",
]


def make(path: Path, rows: int, indexes: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER, happened_at TEXT, "
               "kind TEXT, payload TEXT, amount REAL, ok INTEGER, ref TEXT, data BLOB, note TEXT)")
    r = random.Random(1)
    db.execute("BEGIN")
    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
        (i, r.randrange(50_000), f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
         ("click", "view", "buy")[i % 3], f'{{"a": {i}, "b": "{"x" * (i % 20)}"}}', i * 0.25,
         i % 2, f"{r.getrandbits(128):032x}", r.randbytes(16), f"Note {i}")
        for i in range(1, rows + 1)))
    db.execute("COMMIT")
    for sql in INDEXES[:indexes]:
        db.execute(sql)
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()


def timed(path: Path, check: str, mmap_bytes: int = 0) -> tuple[float, float]:
    """Wall and CPU seconds of one check on a fresh connection."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA mmap_size={mmap_bytes}")

    def open_reader(path: Path, setup: Any) -> sqlite3.Connection | None:
        reader = _open_reader(path, setup)
        if reader is not None:
            reader.execute(f"PRAGMA mmap_size={mmap_bytes}")
        return reader
    checks_module.open_reader = open_reader  # type: ignore[assignment]
    started, cpu = time.perf_counter(), time.process_time()
    if check == "run_checks":
        run_checks(db)
    elif check == "run_checks, one connection":
        run_checks(db, readers=0)
    else:
        assert db.execute(f"PRAGMA {check}").fetchall() == [("ok",)]
        db.execute("PRAGMA foreign_key_check").fetchall()
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    db.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--indexes", type=int, default=1, choices=range(len(INDEXES) + 1))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--file", type=Path, help="an existing file to check instead")
    parser.add_argument("--mmap-bytes", type=int, default=0,
                        help="also time each check with PRAGMA mmap_size set to this")
    args = parser.parse_args()
    path = args.file or (Path(tempfile.gettempdir())
                         / f"liteshift-checks-{args.rows}-{args.indexes}.db")
    if not path.exists():
        make(path, args.rows, args.indexes)
    checks = ["quick_check", "run_checks, one connection", "run_checks"]
    if not args.file:
        checks.insert(0, "integrity_check")
    if args.mmap_bytes:
        checks = [name for check in checks for name in (check, f"{check}, mmap")]
    times: dict[str, list[tuple[float, float]]] = {check: [] for check in checks}
    for _ in range(args.rounds):
        for check, found in times.items():
            name, mapped = check.removesuffix(", mmap"), check.endswith(", mmap")
            found.append(timed(path, name, args.mmap_bytes if mapped else 0))
    base = statistics.median(wall for wall, _ in times[checks[0]])
    print(f"{path.name}: {path.stat().st_size:,} bytes, {args.rounds} rounds, load average "
          f"{os.getloadavg()[0]:.1f}; wall (and CPU) seconds")
    for check, found in times.items():
        median = statistics.median(wall for wall, _ in found)
        cpu = statistics.median(cpu for _, cpu in found)
        print(f"  {check:27s} median {median:.3f} s, CPU {cpu:.3f} s ({median / base:.2f} of "
              f"{checks[0]})  {' '.join(f'{wall:.3f} ({cpu:.2f})' for wall, cpu in found)}")


if __name__ == "__main__":
    main()
