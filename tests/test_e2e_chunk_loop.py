"""The chunk loop on its own: a fake row source, a real SQLite work file, no services."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import accumulate, islice
from pathlib import Path
from typing import Any

import pytest

from worker.core.checksum import encode_rows, rows_checksum
from worker.core.errors import LeaseLost, VerificationFailed
from worker.core.model import ColumnPlan, TablePlan
from worker.native.fastsqlite import payload_of
from worker.sqlite.chunks import copy_rows, make_chunks, ramp
from worker.sqlite.workfile import WorkFile, open_work_db


def _column(name: str, sqlite_type: str, rule: str) -> ColumnPlan:
    return ColumnPlan(name=name, source_type=rule, sqlite_type=sqlite_type, select_sql=name,
                      wire="text", converter=None, rule=rule, lossy=False, note="",
                      nullable=name != "id")


PLAN = TablePlan(
    name="items", file="00000.db",
    columns=[_column("id", "INTEGER", "integer"), _column("body", "TEXT", "text")],
    key=["id"], key_kind="primary_key", key_types=["bigint"], key_positions=[0],
    create_sql='CREATE TABLE "items" ("id" INTEGER PRIMARY KEY NOT NULL, "body" TEXT)',
    insert_sql='INSERT INTO "items" ("id", "body") VALUES (?, ?)',
)


class FakeSource:
    """Rows in key order after a resume key, like pg_source.stream_rows; can fail once after
    yielding a given number of rows, as a cut connection would."""

    def __init__(self, rows: list[tuple], *, fail_after: int | None = None):
        self.rows = rows
        self.fail_after = fail_after
        self.calls: list[Sequence[Any] | None] = []

    def __call__(self, after: Sequence[Any] | None) -> Iterator[tuple]:
        self.calls.append(after)
        for sent, row in enumerate(r for r in self.rows if after is None or r[0] > after[0]):
            if self.fail_after is not None and sent == self.fail_after:
                self.fail_after = None
                raise ConnectionError("connection cut")
            yield row


def run_copy(work: WorkFile, source: FakeSource, *, token: int = 1, chunk_rows: int = 100,
             chunk_bytes: int = 1 << 20):
    return copy_rows(plan=PLAN, source=source, work=work, token=token, chunk_rows=chunk_rows,
                      chunk_bytes=chunk_bytes)


def chunk_ends(chunk_rows: int, rows: int) -> list[int]:
    """Where the chunks of a copy of `rows` rows end (chunks.ramp: the first ones smaller)."""
    ends = list(accumulate(islice(ramp(chunk_rows), rows)))
    return [e for e in ends if e < rows] + [rows]


def rows_of(count: int, width: int = 10) -> list[tuple]:
    return [(i, f"{i:0{width}d}") for i in range(1, count + 1)]


@pytest.fixture
def work(tmp_path: Path) -> Iterator[WorkFile]:
    file = WorkFile(tmp_path / "work" / PLAN.file, PLAN)
    yield file
    file.close()


def test_chunks_are_bounded_by_rows_and_the_first_ones_ramp_up():
    chunks = list(make_chunks(iter(rows_of(1000)), PLAN, chunk_rows=320, chunk_bytes=1 << 30))

    assert [len(c.rows) for c in chunks] == [20, 40, 80, 160, 320, 320, 60]
    assert [c.last_key for c in chunks] == [[20], [60], [140], [300], [620], [940], [1000]]
    assert [row for c in chunks for row in c.rows] == rows_of(1000)
    assert sum(c.checksum for c in chunks) % 2**64 == rows_checksum(rows_of(1000))


def test_wide_rows_make_small_chunks():
    # Given rows of about 100 kB and a budget of 1 MB per chunk (and a large row bound)
    rows = rows_of(200, width=100_000)
    row_bytes = len(repr(rows[0]))

    # When they are chunked
    chunks = list(make_chunks(iter(rows), PLAN, chunk_rows=10_000, chunk_bytes=1_000_000))

    # Then no chunk holds much more than the budget: at most one row past it
    assert len(chunks) >= 200 * row_bytes // 1_000_000
    assert all(c.size_bytes <= 1_000_000 + row_bytes for c in chunks), \
        [c.size_bytes for c in chunks]
    assert sum(len(c.rows) for c in chunks) == 200


def test_resume_after_interruption_continues_after_the_last_committed_key(tmp_path, work):
    # Given a copy cut off after 2,500 rows were read, with chunks of 1,000 rows
    rows = rows_of(5000)
    source = FakeSource(rows, fail_after=2500)
    with pytest.raises(ConnectionError):
        run_copy(work, source, chunk_rows=1000)
    interrupted = work.checkpoint()

    # When the copy runs again
    final = run_copy(work, source, chunk_rows=1000)

    # Then only whole chunks had committed, the rerun read from after the last one, and the
    # table holds every row once, with the checksum of an uninterrupted copy
    whole = max(e for e in chunk_ends(1000, 5000) if e <= 2500)
    assert (interrupted.rows, interrupted.last_key, interrupted.done) == (whole, [whole], False)
    assert source.calls == [None, [whole]]
    assert final.done and final.rows == 5000
    assert work.db.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM items"
                           ).fetchone() == (5000, 5000, 1, 5000)
    assert work.db.execute("SELECT id, body FROM items ORDER BY id").fetchall() == rows
    clean = WorkFile(tmp_path / "clean.db", PLAN)
    try:
        assert run_copy(clean, FakeSource(rows), chunk_rows=700).checksum == final.checksum
    finally:
        clean.close()


def test_a_finished_work_file_is_not_copied_again(work):
    source = FakeSource(rows_of(10))
    first = run_copy(work, source)

    again = run_copy(work, source, token=2)

    assert again.done and again.rows == first.rows == 10
    assert source.calls == [None]


def test_an_older_token_cannot_commit_once_a_newer_writer_fenced_the_file(tmp_path, work):
    # Given writer 1 has committed a chunk, then writer 2 (a newer lease) claims the file
    rows = rows_of(100)
    state = work.fence(1)
    state.rows, state.last_key = 10, [10]
    work.commit_chunk(1, payload_of(encode_rows(rows[:10])), state)
    newer = WorkFile(work.path, PLAN)
    try:
        assert newer.fence(2).rows == 10

        # When writer 1 tries to commit again, or to start over with its token
        # Then it is refused and nothing of it lands
        with pytest.raises(LeaseLost):
            work.commit_chunk(1, payload_of(encode_rows(rows[10:20])), state)
        with pytest.raises(LeaseLost):
            run_copy(work, FakeSource(rows), token=1)
        assert newer.db.execute("SELECT count(*) FROM items").fetchone() == (10,)

        # and writer 2 finishes the table from where the checkpoint says
        final = run_copy(newer, FakeSource(rows), token=2)
        assert final.rows == 100
        assert newer.db.execute("SELECT count(DISTINCT id) FROM items").fetchone() == (100,)
    finally:
        newer.close()


def test_a_chunk_sqlite_stores_differently_is_refused_and_nothing_of_it_kept(work):
    # Given rows of which one in a later chunk holds a value a TEXT column rewrites
    # (int 5 -> '5')
    rows = rows_of(200)
    rows[150] = (151, 5)
    source = FakeSource(rows)

    # When they are copied 100 rows at a time
    with pytest.raises(VerificationFailed) as failed:
        run_copy(work, source)

    # Then the chunks before it are committed, its own is refused with the key it ended at,
    # and the work file holds exactly the ones before
    ends = chunk_ends(100, 200)
    bad = next(i for i, e in enumerate(ends) if e >= 151)
    assert f"ending at key [{ends[bad]}]" in str(failed.value) and "nothing of this chunk" in \
        str(failed.value)
    assert work.checkpoint().rows == ends[bad - 1] and work.count() == ends[bad - 1]


def rows_in_file_alone(path: Path) -> int:
    """The rows the database file itself holds, its WAL ignored (immutable: no -wal read);
    0 while the file is being written (immutable also means no locks: a page may be torn)."""
    db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return int(db.execute('SELECT count(*) FROM "items"').fetchone()[0])
    except sqlite3.DatabaseError:  # the table is still only in the WAL, or a torn read
        return 0
    finally:
        db.close()


def test_committed_pages_reach_the_file_from_a_thread_and_close_lets_go_of_it(tmp_path):
    # Given a group's work file (WAL) whose writer stays open
    path = tmp_path / "work" / "group00001.db"
    work = WorkFile(path, PLAN, db=open_work_db(path, [PLAN.name]))
    work._owns_db = True  # closed with the work file, as the group closes its connection
    assert work.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    # When a few small chunks are committed (far below the writer's own checkpoint size)
    run_copy(work, FakeSource(rows_of(500)))

    # Then a thread copies them from the WAL into the file while the writer goes on
    deadline = time.monotonic() + 10
    while (in_file := rows_in_file_alone(work.path)) < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_file == 500
    assert work.count() == 500

    # When the work file is closed
    work.close()

    # Then no connection is left on it: another process can take it alone (as finalize does)
    alone = sqlite3.connect(work.path, isolation_level=None, timeout=0)
    try:
        alone.execute("PRAGMA main.locking_mode=EXCLUSIVE")
        assert alone.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
        alone.execute("BEGIN EXCLUSIVE")
        alone.execute("COMMIT")
    finally:
        alone.close()


def test_a_tables_own_work_file_is_copied_with_a_rollback_journal_and_left_in_wal(work,
                                                                                  tmp_path):
    # Given a table's own work file: a rollback journal, synced at every commit
    assert work.db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert work.db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL

    # When chunks are committed
    run_copy(work, FakeSource(rows_of(500)))

    # Then their rows are in the file as soon as committed, with no WAL beside it
    assert rows_in_file_alone(work.path) == 500
    assert not work.path.with_name(work.path.name + "-wal").exists()

    # and once closed, the file is in WAL, as finalize expects a file at rest
    work.close()
    work.db = sqlite3.connect(work.path)  # for the fixture's close
    assert work.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert work.db.execute('SELECT count(*) FROM "items"').fetchone() == (500,)

    # When a table opens a file that another connection has open (a group's, retried alone)
    shared = tmp_path / "group00001.db"
    group = open_work_db(shared, [PLAN.name])
    alone = WorkFile(shared, PLAN)
    try:
        # Then it stays in WAL, which it could not leave under the other connection
        assert alone.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        alone.close()
        group.close()


class BigRowSource:
    """Where copy_rows reads on once a row longer than a chunk shows up (in the worker, a
    reader process): the same rows after the key it is given, made into chunks as a reader
    process makes them."""

    def __init__(self, source: FakeSource, plan: TablePlan, chunk_bytes: int):
        self.source, self.plan, self.chunk_bytes = source, plan, chunk_bytes
        self.calls: list[Sequence[Any] | None] = []

    def __call__(self, after: Sequence[Any] | None) -> Iterator[Any]:
        self.calls.append(after)
        return make_chunks(self.source(after), self.plan, chunk_rows=100,
                           chunk_bytes=self.chunk_bytes)


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "keyless"])
def test_a_row_longer_than_a_chunk_has_the_rest_read_elsewhere_after_the_last_commit(
        tmp_path, keyed):
    # Given rows read in the worker, the 250th longer than a chunk, and a reader process
    # to read elsewhere
    plan = PLAN if keyed else replace(
        PLAN, name="loose", key=[], key_kind="none", key_types=[], key_positions=[],
        create_sql='CREATE TABLE "loose" ("id" INTEGER NOT NULL, "body" TEXT)',
        insert_sql='INSERT INTO "loose" ("id", "body") VALUES (?, ?)')
    rows = rows_of(400)
    rows[249] = (250, "x" * 300_000)
    source, chunk_bytes = FakeSource(rows), 200_000
    elsewhere = BigRowSource(FakeSource(rows), plan, chunk_bytes)
    work = WorkFile(tmp_path / "work" / plan.file, plan)
    try:
        # When the table is copied
        final = copy_rows(plan=plan, source=source, work=work, token=1, chunk_rows=100,
                          chunk_bytes=chunk_bytes, big_row_source=elsewhere)

        # Then the rows before the big one were committed here, the rest came from the
        # reader process from after the last of them (a keyless table: from the start, its
        # rows emptied first), and the table holds every row once, with its checksum
        assert source.calls == [None]
        assert elsewhere.calls == ([[249]] if keyed else [None])
        assert final.done and final.rows == 400
        assert final.checksum == rows_checksum(rows)
        assert work.db.execute(f"SELECT count(*), count(DISTINCT id), sum(length(body)) "
                               f"FROM {plan.name}").fetchone() == (400, 400, 399 * 10 + 300_000)
    finally:
        work.close()
