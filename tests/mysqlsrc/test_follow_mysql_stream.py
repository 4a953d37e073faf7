"""The MariaDB change stream (worker/sources/mysql/changes.py) on a real server, without a
job: changes made after a recorded binlog position come back as the follower's events, in
order, grouped in transactions, with values converted as the copy converts them; applied to
a file copied at that position, the file equals the source; DDL on a followed table stops
the stream naming the table."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from worker import sources
from worker.core.checksum import rows_checksum
from worker.core.identifiers import quote
from worker.follow import position
from worker.follow.apply import Applier, Batch
from worker.follow.changes import WHOLE, Begin, Commit, Row, Truncate
from worker.sources.mysql import changes
from worker.sources.url import parse_source_url


def _plans(db: Any) -> list[Any]:
    reader = sources.for_kind("mysql")
    source = parse_source_url(db.url)
    with reader.connect(source) as conn:
        names = reader.list_tables(conn, db.name)
        schema = reader.reflect(source, conn, db.name, names)
    return reader.translate(schema, {}).tables


def _copy(db: Any, plans: list[Any], path: Any) -> dict[str, tuple[int, int]]:
    """Each table's rows through the copy's own reader and chunk encoder, into SQLite."""
    from worker.sqlite.chunks import make_chunks

    reader = sources.for_kind("mysql")
    out = sqlite3.connect(path)
    counts = {}
    with reader.connect(parse_source_url(db.url)) as conn:
        for plan in plans:
            out.execute(plan.create_sql)
            rows = []
            for chunk in make_chunks(reader.stream_table(conn, schema=db.name, plan=plan,
                                                         after=None), plan, chunk_rows=10_000,
                                     chunk_bytes=1 << 26):
                rows += chunk.rows
            out.executemany(plan.insert_sql, rows)
            counts[plan.name] = (len(rows), rows_checksum(rows))
    out.commit()
    out.close()
    return counts


def _stream(db: Any, plans: list[Any], start: tuple[str, int]) -> Any:
    reader = sources.for_kind("mysql")
    source = parse_source_url(db.url)
    ctx = reader.connect(source)
    conn = ctx.__enter__()
    job = {"snapshot": {"binlog_file": start[0], "binlog_pos": start[1]}}
    return changes.open_changes(conn, job=job, plans=plans, source=source), ctx


def _read_all(stream: Any) -> list[Any]:
    """Every event to the binlog's end (other databases' transactions included: the server
    is shared), releasing as a follower does."""
    events: list[Any] = []
    while True:
        read = list(stream.read(5_000))
        events += read
        ends = [e.resume for e in read if isinstance(e, Commit)]
        if ends:
            stream.release(ends[-1])
        if stream.drained:
            return events


def _master(db: Any) -> tuple[str, int]:
    file, pos = db.execute("SHOW MASTER STATUS")[0][:2]
    return str(file), int(pos)


@pytest.fixture
def tables(my_db: Any) -> Any:
    my_db.script("""
CREATE TABLE parent (id int PRIMARY KEY, name varchar(40), amount decimal(12,3),
  at datetime(3), data json) ENGINE=InnoDB;
CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL, note text,
  FOREIGN KEY (parent_id) REFERENCES parent (id)) ENGINE=InnoDB;
INSERT INTO parent VALUES (1, 'one', 1.5, '2024-01-02 03:04:05.678', '{"a": 1}'),
  (2, 'two', NULL, NULL, NULL);
INSERT INTO child VALUES (1, 1, 'c1'), (2, 2, 'c2')""")
    return my_db


def test_changes_after_a_position_make_the_file_equal_the_source(tables, tmp_path):
    # Given a file copied at a binlog position
    plans = _plans(tables)
    start = _master(tables)
    path = tmp_path / "f.db"
    counts = _copy(tables, plans, path)

    # When the source changes after it: inserts, updates (one of the key), deletes, a
    # truncate, in several transactions
    tables.script("""
INSERT INTO parent VALUES (3, 'three', 3.25, '2025-05-05 05:05:05.5', '[1, "x"]');
UPDATE parent SET name = 'uno', amount = 10.001 WHERE id = 1;
INSERT INTO child VALUES (3, 3, 'c3'), (4, 1, 'c4');
DELETE FROM child WHERE id = 2;
UPDATE child SET id = 20 WHERE id = 1;
TRUNCATE TABLE child;
INSERT INTO child VALUES (5, 3, 'after')""")
    stream, ctx = _stream(tables, plans, start)
    try:
        events = _read_all(stream)
        assert isinstance(events[0], Begin) and isinstance(events[-1], Commit)
        assert any(isinstance(e, Truncate) and e.tables == ["child"] for e in events)

        # Then applying them gives the source's rows, and the kept checksums are the file's
        db = sqlite3.connect(path)
        position.start(db, counts, resume=0)
        applier = Applier(db, plans)
        followed = position.read(db)
        batch, txn, n = Batch(), 0, 0
        for event in events:
            if isinstance(event, Begin):
                txn, n = event.txn, 0
            elif isinstance(event, Row | Truncate):
                n += 1
                batch.add(event, (txn, n))
            elif isinstance(event, Commit):
                batch.position, batch.resume = (event.txn, WHOLE), event.resume
        applier.apply(batch, stream.convert, followed)
        expected = _copy(tables, plans, tmp_path / "again.db")
        assert position.counts(db) == expected
        for plan in plans:
            cols = ", ".join(quote(c.name) for c in plan.columns)
            mine = db.execute(f"SELECT {cols} FROM {quote(plan.name)} ORDER BY 1").fetchall()
            theirs = sqlite3.connect(tmp_path / "again.db").execute(
                f"SELECT {cols} FROM {quote(plan.name)} ORDER BY 1").fetchall()
            assert mine == theirs, plan.name
        db.close()
    finally:
        ctx.__exit__(None, None, None)


def test_ddl_on_a_followed_table_stops_the_stream(tables):
    plans = _plans(tables)
    start = _master(tables)
    tables.execute("ALTER TABLE child ADD COLUMN extra int")
    stream, ctx = _stream(tables, plans, start)
    try:
        with pytest.raises(Exception, match="followed table 'child'"):
            _read_all(stream)
    finally:
        ctx.__exit__(None, None, None)


def _bytes_to_end(db: Any, since: tuple[str, int]) -> int:
    """Binlog bytes from `since` to the log's end, from the server's own file sizes."""
    sizes = {str(name): int(size) for name, size, *_ in db.execute("SHOW BINARY LOGS")}
    end = _master(db)
    between = sum(size for name, size in sizes.items() if since[0] <= name < end[0])
    return between - since[1] + end[1] if end[0] != since[0] else end[1] - since[1]


def test_lag_in_bytes_and_reading_go_on_across_binlog_rotations(tables):
    # Given changes on either side of two rotations of the binlog
    plans = _plans(tables)
    start = _master(tables)
    tables.execute("INSERT INTO child VALUES (10, 1, 'before')")
    tables.execute("FLUSH BINARY LOGS")
    tables.execute("FLUSH BINARY LOGS")
    tables.execute("INSERT INTO child VALUES (11, 1, 'after')")
    stream, ctx = _stream(tables, plans, start)
    try:
        # When the lag is asked from the starting position (other databases' writes move
        # the end meanwhile: the server is shared)
        low = _bytes_to_end(tables, start)
        lag = stream.lag_bytes(changes.position(*start))
        high = _bytes_to_end(tables, start)

        # Then it is the bytes in between, not the positions' difference (file << 32)
        assert _master(tables)[0] > start[0]
        assert 0 < low <= lag <= high, (low, lag, high)

        # and the reader goes on into the new files: both rows come, and once applied the
        # lag is what others wrote since
        events = _read_all(stream)
        notes = [e.new[2] for e in events if isinstance(e, Row) and e.table == "child"]
        assert notes == ["before", "after"], notes
        last = [e.resume for e in events if isinstance(e, Commit)][-1]
        assert stream.lag_bytes(last) < lag + (1 << 20)
    finally:
        ctx.__exit__(None, None, None)
