"""MySQL rows encoded in C (pgcopy.values_codec, _pgcopy.encode_values) against the Python
path: the same chunks, byte for byte, for every type the type tests move, in both profiles."""

from __future__ import annotations

import pytest
from frames import assert_same_chunks, take_frames

from worker import sources
from worker.core.errors import BigRowHere
from worker.native import pgcopy
from worker.sources.mysql import source as mysql_source
from worker.sources.url import parse_source_url
from worker.sqlite import batches
from worker.sqlite.chunks import make_chunks

from .test_mysql_resume import KEYED_TABLES
from .test_mysql_types import SCHEMA

OPTIONS = [{}, {"profile": "rails", "binary_uuids": True, "geometry_wkt": True,
                "exact_decimals": True}]
EDGES = """
CREATE TABLE money (id int PRIMARY KEY, d decimal(65,30), d2 decimal(12,2), f double,
                    t mediumtext, b blob);
INSERT INTO money VALUES
 (1, 9007199254740993, 0.10, -0e0, 'é', X'00'), (2, -0.000, 9999999999.99, 1e308, '', X''),
 (3, 123456789012345678901234567890.123, NULL, NULL, NULL, NULL),
 (4, 0.1000000000000000055511151231257827, -0.01, 5e-324, REPEAT('z', 70000), X'FF00'),
 (5, 99999999999999999999999999999999999.999999999999999999999999999999, 1, 0.1, 'x', X'01')
"""


def _chunks(conn, reader, plan, native: bool, monkeypatch) -> list:
    with monkeypatch.context() as patch:
        if not native:
            patch.setattr(batches, "values_codec", lambda plan: None)
        rows = reader.stream_table(conn, schema="public", plan=plan, after=None)
        return list(make_chunks(rows, plan, chunk_rows=2, chunk_bytes=1 << 20))


@pytest.mark.parametrize("options", OPTIONS, ids=["ecto", "rails"])
def test_mysql_rows_encoded_in_c_are_byte_for_byte_what_python_makes(my_db, options,
                                                                     monkeypatch):
    # Given every MySQL type the type tests move, keyed tables and numeric edge values
    my_db.script(SCHEMA)
    my_db.script(KEYED_TABLES)
    my_db.script(EDGES)
    source = parse_source_url(my_db.url)
    reader = sources.for_kind(source.kind)
    with reader.connect(source) as conn:
        names = reader.list_tables(conn, "public")
        plans = reader.translate(reader.reflect(source, conn, "public", names), options).tables
        native = [p for p in plans if pgcopy.values_codec(p)]
        assert {"money", "people", "composite"} <= {p.name for p in native}

        # When each table is encoded in C and in Python
        for plan in native:
            # Then the chunks are the same: rows, checksums, resume keys and lossy counts
            assert (_chunks(conn, reader, plan, True, monkeypatch)
                    == _chunks(conn, reader, plan, False, monkeypatch)), plan.name


class _WithoutFastFetch:
    """The driver's connection as _fetcher sees it when the C extension's fetch_row is not
    reachable: only get_rows."""

    def __init__(self, raw):
        self.converter, self._raw, self.get_rows = None, False, raw.get_rows
        self._connection = raw

    @property
    def unread_result(self) -> bool:
        return self._connection.unread_result


def test_mysql_rows_fetched_through_the_drivers_get_rows_are_the_same(my_db, monkeypatch):
    # Given a table read with the C-level fetch loop
    my_db.script(EDGES)
    source = parse_source_url(my_db.url)
    reader = sources.for_kind(source.kind)
    with reader.connect(source) as conn:
        plan = reader.translate(reader.reflect(source, conn, "public", ["money"]), {}).tables[0]
        fast = list(make_chunks(reader.stream_table(conn, schema="public", plan=plan,
                                                    after=None), plan, chunk_rows=2,
                                chunk_bytes=1 << 20))
        # When the driver's own get_rows has to be used instead
        fetcher = mysql_source._fetcher
        monkeypatch.setattr(mysql_source, "_fetcher",
                            lambda raw: fetcher(_WithoutFastFetch(raw)))
        slow = list(make_chunks(reader.stream_table(conn, schema="public", plan=plan,
                                                    after=None), plan, chunk_rows=2,
                                chunk_bytes=1 << 20))
        # Then the chunks are the same, and the connection is ready for the next query
        assert fast == slow and len(fast) == 3
        assert conn.query("SELECT 1") == [(1,)]


def test_mysql_rows_of_big_values_are_written_as_frames_from_their_values(my_db, tmp_path):
    # Given small rows and rows of big values (a blob, a non-ASCII text) in any order
    my_db.script("""
CREATE TABLE big (id int PRIMARY KEY, b longblob, t longtext, n int);
INSERT INTO big VALUES (1, X'01', 'x', 1), (2, REPEAT(X'00FF', 300000), 'y', 2),
 (3, X'02', REPEAT('é3', 300000), 3), (4, X'03', 'z', 4), (5, X'04', 'w', 5),
 (6, REPEAT(X'AB', 700000), REPEAT('ascii', 150000), NULL), (7, NULL, NULL, 7)
""")
    source = parse_source_url(my_db.url)
    reader = sources.for_kind(source.kind)
    with reader.connect(source) as conn:
        plan = reader.translate(reader.reflect(source, conn, "public", ["big"]), {}).tables[0]

        def read(**frames: int) -> list:
            rows = reader.stream_table(conn, schema="public", plan=plan, after=None)
            return list(make_chunks(rows, plan, chunk_rows=4, chunk_bytes=1 << 19, **frames))

        expected = read()
        # When they are read for a reader process: frames to its stdout (a file here)
        with open(tmp_path / "frames", "wb") as out:
            got = read(frames_fd=out.fileno())
    frames = (tmp_path / "frames").read_bytes()

    # Then each big row is a chunk by itself, written whole as the payload it would have
    # been, with the same checksum, size and key; the rows around it come as before
    assert [c.sent for c in got] == [False, True, True, False, True, False]
    take_frames(got, frames)
    assert_same_chunks(got, expected)


def test_a_worker_reading_alone_stops_before_a_mysql_row_longer_than_a_chunk(my_db):
    # Given small rows and rows of big values, the first at id 2
    my_db.script("""
CREATE TABLE big (id int PRIMARY KEY, b longblob, t longtext);
INSERT INTO big VALUES (1, X'01', 'x'), (2, REPEAT(X'00FF', 300000), 'y'), (3, X'02', 'z')
""")
    source = parse_source_url(my_db.url)
    reader = sources.for_kind(source.kind)
    with reader.connect(source) as conn:
        plan = reader.translate(reader.reflect(source, conn, "public", ["big"]), {}).tables[0]
        rows = reader.stream_table(conn, schema="public", plan=plan, after=None)
        first = list(make_chunks(rows, plan, chunk_rows=4, chunk_bytes=1 << 19))[0]

        # When the worker reads the table itself (copy_rows with a reader process to go to)
        got = []
        rows = reader.stream_table(conn, schema="public", plan=plan, after=None)
        with pytest.raises(BigRowHere):
            for chunk in make_chunks(rows, plan, chunk_rows=4, chunk_bytes=1 << 19,
                                     stop_at_big=True):
                got.append(chunk)
        del rows

        # Then the row before the big one came, then BigRowHere; the connection is left fit
        # for use
        assert [c.rows for c in got] == [first.rows[:1]]
        assert got[0].last_key == [1]
        assert conn.query("SELECT count(*) FROM big") == [(3,)]
