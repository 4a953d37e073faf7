"""The copy path of one PostgreSQL table alone, without the queue: its reader process, a fresh
work file, copy_rows and (with --indexes) the table's indexes, as a worker's task runs them,
with the CPU of each part. For A/B runs of the work file's settings on one machine.

    .venv/bin/python ops/bench/copy_one_table.py --database liteshift_bench_app --table comments
        [--indexes] [--journal wal|delete] [--cache-kib 16384] [--rounds 3]

--journal and --cache-kib override what open_work_db and copy_rows choose (wal: the WAL and
its copier thread, as a group's work file has them). Printed per round: the main thread's
CPU in the insert, the read-back and the rest of the copy; the worker process's user and
system CPU (its threads: the WAL copier too); the reader process's; the bytes the process
gave the kernel to write (/proc/self/io), which a WAL doubles.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from worker.native import fastsqlite  # noqa: E402
from worker.sources.postgres import source as pg_source  # noqa: E402
from worker.sources.postgres.translate import translate  # noqa: E402
from worker.sources.reader_process import chunks_from_child  # noqa: E402
from worker.sources.url import parse_source_url  # noqa: E402
from worker.sqlite import workfile  # noqa: E402
from worker.sqlite.chunks import copy_rows  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432"
CHUNK_ROWS, CHUNK_BYTES = 100_000, 8 * 1024 * 1024  # the settings' defaults


class Timed:
    """Thread CPU spent inside a function, wrapped in place."""

    def __init__(self, owner: Any, name: str):
        self.owner, self.name, self.cpu = owner, name, 0.0
        self.inner = getattr(owner, name)
        setattr(owner, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.cpu += time.thread_time() - started


def override(journal: str | None, cache_kib: int | None) -> None:
    opened = workfile.open_work_db

    def open_work_db(path: Path, names: Any, *, alone: bool = False) -> Any:
        return opened(path, names, alone=alone if journal is None else journal != "wal")
    workfile.open_work_db = open_work_db  # type: ignore[assignment]
    if cache_kib is not None:
        workfile.WorkFile.hold_chunks = (  # type: ignore[method-assign]
            lambda self, _: self.db.execute(f"PRAGMA cache_size=-{cache_kib}"))


def written_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def one_round(url: str, plan: Any, *, indexes: bool) -> str:
    insert, readback = Timed(fastsqlite, "insert_rows"), Timed(fastsqlite, "readback")
    scratch = Path(tempfile.mkdtemp(prefix="copy-one-table-"))
    try:
        work = workfile.WorkFile(scratch / "work.db", plan)
        mode = work.db.execute("PRAGMA journal_mode").fetchone()[0]
        me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN)
        wrote, wall, cpu = written_bytes(), time.monotonic(), time.thread_time()
        final = copy_rows(plan=plan, work=work, token=1, chunk_rows=CHUNK_ROWS,
                          chunk_bytes=CHUNK_BYTES, chunk_source=lambda after: chunks_from_child(
                              source_url=url, schema="public", plan=plan, after=after,
                              chunk_rows=CHUNK_ROWS, chunk_bytes=CHUNK_BYTES,
                              connect_timeout_s=10))
        copy_cpu, copy_wall = time.thread_time() - cpu, time.monotonic() - wall
        if indexes:
            work.build_indexes(1)
        work.close()
        me2, children2 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN)
        size = (scratch / "work.db").stat().st_size
    finally:
        fastsqlite.insert_rows, fastsqlite.readback = insert.inner, readback.inner
        shutil.rmtree(scratch)
    return (f"{mode}: {final.rows:,} rows in {final.chunks} chunks, copy {copy_wall:.2f} s; "
            f"main thread CPU in the copy {copy_cpu:.2f} s (insert {insert.cpu:.2f}, "
            f"read-back {readback.cpu:.2f}); worker process user {me2.ru_utime - me.ru_utime:.2f}"
            f" + system {me2.ru_stime - me.ru_stime:.2f} s"
            f"{' (indexes included)' if indexes else ''}; reader user "
            f"{children2.ru_utime - children.ru_utime:.2f} + system "
            f"{children2.ru_stime - children.ru_stime:.2f} s; written "
            f"{(written_bytes() - wrote) / 1e6:,.0f} MB for a {size / 1e6:,.0f} MB file")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="liteshift_bench_app")
    parser.add_argument("--table", default="comments")
    parser.add_argument("--indexes", action="store_true", help="build its indexes too")
    parser.add_argument("--journal", choices=("wal", "delete"))
    parser.add_argument("--cache-kib", type=int)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    url = f"{PG}/{args.database}"
    source = parse_source_url(url)
    with pg_source.connect(source) as conn:
        tables = translate(pg_source.reflect(source, conn, "public", [args.table])).tables
    plan = next(t for t in tables if t.name == args.table)
    override(args.journal, args.cache_kib)
    for _ in range(args.rounds):
        print(one_round(url, plan, indexes=args.indexes), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
