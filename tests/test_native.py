"""The C paths (worker/native/_fastsqlite.c, worker/native/_pgcopy.c) against their Python
twins: the same bytes, the same checksums, the same rows in SQLite, the same errors.

These also fail when the extensions were not built, so CI always runs the C paths.
"""

from __future__ import annotations

import marshal
import os
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import xxhash
from frames import assert_same_chunks, take_frames

from worker import native, sources
from worker.core.checksum import encode_rows, encoded_checksum, rows_checksum
from worker.core.errors import BigRowHere, SourceUnavailable
from worker.core.profiles import ColumnContext
from worker.native import fastsqlite, pgcopy
from worker.sources.postgres import source as pg_source
from worker.sources.postgres import values as pg_render
from worker.sources.postgres.keys import select_list
from worker.sources.postgres.translate import translate
from worker.sources.url import parse_source_url
from worker.sqlite.chunks import make_chunks

FIXTURE = Path(__file__).with_name("pg_fidelity.sql")
EDGES = [None, 0, 1, -1, 2**31 - 1, 2**31, -2**31, -2**31 - 1, 32767, 32768, -32768, 2**45 + 7,
         2**62, 2**63 - 1, -2**63, 0.0, -0.0, 1.5, 0.1, 1e308, 5e-324, float("inf"),
         float("-inf"), "", "a", "é", "x\x00y", "\U0001f600", "long" * 1000, b"", b"\x00",
         b"abc" * 1000]
EDGE_ROWS = [tuple(EDGES[(i * 7 + j * 3) % len(EDGES)] for j in range(6)) for i in range(3000)]


def test_the_extensions_are_built_and_trust_this_machines_sqlite():
    # The README's install (ops/lib.sh: pip install -e '.[dev]') must give every compiled part
    assert native.status() == {"_fastsqlite": True, "_pgcopy": True}, native.problems()
    assert native.problems() == {}
    assert fastsqlite._extension() is not None, "run pip install -e . with gcc and libsqlite3-dev"
    assert pgcopy._extension() is not None


def test_a_worker_without_them_says_so_at_start():
    code = "from worker.jobs.presence import warn_if_slow; warn_if_slow()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env={**os.environ, "LITESHIFT_NATIVE": "0"})
    out = result.stdout + result.stderr
    assert "native_parts_missing" in out and "_pgcopy" in out and "unset it" in out


def test_the_build_needs_no_xxhash_header():
    # Few machines have libxxhash-dev: the C parts hash with worker/native/xxh3.h instead
    (major, minor), (last_major, last_minor) = native.FASTSQLITE_PYTHONS
    includes = [f"-I{sysconfig.get_paths()['include']}", "-Iworker/native",
                f"-DLITESHIFT_PY_MIN=0x{major:02X}{minor:02X}0000",  # as setup.py passes them
                f"-DLITESHIFT_PY_END=0x{last_major:02X}{last_minor + 1:02X}0000"]
    root = Path(__file__).parent.parent
    for source in ("worker/native/_fastsqlite.c", "worker/native/_pgcopy.c"):
        deps = subprocess.run(["gcc", "-M", *includes, source], cwd=root, check=True,
                              capture_output=True, text=True).stdout
        assert "xxh3.h" in deps and "xxhash.h" not in deps, deps


def test_the_c_row_hash_is_xxhashs_xxh3_64_at_every_length(db):
    # Every branch of XXH3 (up to 16, 128 and 240 bytes, then 1 KiB blocks and their tail)
    db.execute("CREATE TABLE blobs (b BLOB)")
    values = [bytes((i * 31 + j) % 256 for j in range(n)) for i, n in enumerate(range(2300))]
    db.executemany("INSERT INTO blobs VALUES (?)", [(v,) for v in values])
    for rowid, value in enumerate(values, start=1):
        rows, total = fastsqlite.readback(db, "SELECT b FROM blobs WHERE rowid = ?", rowid,
                                          fast=True)
        assert (rows, total) == (1, xxhash.xxh3_64_intdigest(marshal.dumps((value,), 2)))


def test_rows_of_big_values_hash_in_pieces_as_xxh3_64_of_the_whole_row(db):
    # Values over STREAM_VALUE_BYTES are hashed where SQLite holds them, the rest of their
    # row from its own bytes: every length around the streaming's stripe and block edges,
    # and big values before, between and after small ones
    db.execute("CREATE TABLE big (a, b, c)")
    big = 1 << 16
    sizes = [big + d for d in (0, 1, 63, 64, 65, 1023, 1024, 1025, 4096 * 3 + 7)]
    rows = []
    for i, n in enumerate(sizes):
        value = bytes((i * 13 + j * 7) % 251 for j in range(n))
        rows += [(value, None, "x" * (i % 70)), (i, value.decode("latin-1"), value[:100]),
                 (b"\x00" * (i % 5), 2.5, value), (value, value.hex()[:n], value)]
    db.executemany("INSERT INTO big VALUES (?, ?, ?)", rows)
    for rowid, row in enumerate(rows, start=1):
        for sql in ("SELECT a, b, c FROM big WHERE rowid = ?",  # the checksum aggregate
                    "SELECT * FROM (SELECT a, b, c FROM big WHERE rowid = ?)"):
            found = fastsqlite.readback(db, sql, rowid, fast=True)
            assert found == (1, xxhash.xxh3_64_intdigest(marshal.dumps(row, 2))), rowid
    # and many columns, read back row by row (wider than an SQL function takes)
    width = 200
    db.execute(f"CREATE TABLE wide_big ({', '.join(f'c{i}' for i in range(width))})")
    row = tuple(bytes([i]) * (big + i) if i % 50 == 7 else i for i in range(width))
    db.execute(f"INSERT INTO wide_big VALUES ({', '.join('?' * width)})", row)
    assert fastsqlite.readback(db, "SELECT * FROM wide_big", None, fast=True) == (
        1, xxhash.xxh3_64_intdigest(marshal.dumps(row, 2)))


def test_a_row_message_keeps_only_its_key_fields(pg_db):
    # A chunk's last row is kept for its key alone: its big values are not copied
    codec = pgcopy.Codec(b"qsb", 3)
    message = (b"\x00\x03" + (8).to_bytes(4, "big") + (42).to_bytes(8, "big")
               + (3).to_bytes(4, "big") + b"abc" + b"\xff\xff\xff\xff")
    assert codec.raw_fields(message) == (42, "abc", None)
    assert codec.key_of(message, codec.key_fields([0])) == (42, None, None)
    assert codec.key_of(message, codec.key_fields([1])) == (None, "abc", None)
    assert codec.key_of(message, codec.key_fields([0, 1, 2])) == (42, "abc", None)
    with pytest.raises(ValueError, match="truncated"):
        codec.key_of(message[:-2], codec.key_fields([0]))


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert fastsqlite.usable(conn, path)
    yield conn
    conn.close()


# liteshift_rows is also the name of the C path's virtual table: a table of that name is
# written by binding VALUES in C instead.
@pytest.mark.parametrize("c_table", ["c_path", "LiteShift_Rows"])
def test_inserting_from_marshal_bytes_stores_what_executemany_stores(db, c_table):
    # Given every kind of value a row can hold, in columns of every affinity
    for table in (c_table, "python_path"):
        db.execute(f"CREATE TABLE {table} (a, b INTEGER, c TEXT, d REAL, e BLOB, f NUMERIC)")
    payload = fastsqlite.payload_of(encode_rows(EDGE_ROWS))
    assert payload == marshal.dumps(EDGE_ROWS, 2)

    # When one table is written in C and the other by sqlite3's executemany
    insert = "INSERT INTO {} VALUES (?, ?, ?, ?, ?, ?)"
    assert fastsqlite.insert_rows(db, insert.format(c_table), payload, fast=True) == 3000
    assert fastsqlite.insert_rows(db, insert.format("python_path"), payload, fast=False) == 3000
    assert fastsqlite.insert_rows(db, insert.format(c_table), marshal.dumps([], 2),
                                  fast=True) == 0

    # Then both hold the same, and the C read-back checksums each row as marshal's own bytes
    plain = db.execute("SELECT * FROM python_path").fetchall()
    assert db.execute(f"SELECT * FROM {c_table}").fetchall() == plain
    for table in (c_table, "python_path"):
        for after in (None, 1500):
            sql = f"SELECT * FROM {table}" + ("" if after is None else " WHERE rowid > ?")
            expected = plain[after or 0:]
            fast = fastsqlite.readback(db, sql, after, fast=True)
            assert fast == fastsqlite.readback(db, sql, after, fast=False)
            assert fast == (len(expected), encoded_checksum(marshal.dumps(r, 2) for r in expected))


def test_wide_rows_and_no_rows_read_back_as_in_python(db):
    # 200 columns: more than an SQL function takes, so the C read-back steps through them
    width = 200
    db.execute(f"CREATE TABLE wide ({', '.join(f'c{i}' for i in range(width))})")
    rows = [tuple(EDGES[(r + i) % len(EDGES)] for i in range(width)) for r in range(300)]
    insert = f"INSERT INTO wide VALUES ({', '.join('?' * width)})"
    assert fastsqlite.insert_rows(db, insert, marshal.dumps(rows, 2), fast=True) == 300
    for sql, after in (("SELECT * FROM wide", None), ("SELECT * FROM wide WHERE rowid > ?", 100),
                       ("SELECT c0, c1 FROM wide WHERE rowid > ?", 250),
                       ("SELECT c0, c1 FROM wide WHERE rowid > ?", 300)):  # none
        fast = fastsqlite.readback(db, sql, after, fast=True)
        assert fast == fastsqlite.readback(db, sql, after, fast=False)
    assert fastsqlite.readback(db, "SELECT c0 FROM wide WHERE rowid > ?", 300, fast=True) == (0, 0)


@pytest.mark.parametrize("rows, error", [
    ([(1, "a"), (1, "b")], sqlite3.IntegrityError),  # the key twice
    ([(2**63, "a")], OverflowError),
    ([(-2**63 - 1, "a")], OverflowError),
    ([(1, ["a list"])], sqlite3.ProgrammingError),
    ([(1,)], sqlite3.ProgrammingError),  # too few values
    # the same inside a statement of many rows (fastsqlite.BATCH_ROWS)
    ([(i, "a") for i in range(50)] + [(3, "b")] + [(i, "a") for i in range(50, 200)],
     sqlite3.IntegrityError),
    ([(i, "a") for i in range(10)] + [(2**63, "a")] + [(i, "a") for i in range(11, 200)],
     OverflowError),
    ([(i, "a") for i in range(10)] + [(10,)] + [(i, "a") for i in range(11, 200)],
     sqlite3.ProgrammingError),
])
@pytest.mark.parametrize("table", ["k", "liteshift_rows"])  # C: INSERT ... SELECT, VALUES
def test_bad_rows_raise_what_executemany_raises_and_keep_nothing(db, rows, error, table):
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v)")
    for fast in (True, False):
        db.execute("BEGIN")
        with pytest.raises(error):
            fastsqlite.insert_rows(db, f"INSERT INTO {table} VALUES (?, ?)",
                                   marshal.dumps(rows, 2), fast=fast)
        db.execute("ROLLBACK")
    assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


@pytest.mark.parametrize("table", ["k", "liteshift_rows"])
def test_a_truncated_or_overlong_payload_is_refused(db, table):
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v)")
    payload = marshal.dumps([(1, "abc")], 2)
    with pytest.raises(ValueError, match="truncated"):
        fastsqlite.insert_rows(db, f"INSERT INTO {table} VALUES (?, ?)", payload[:-1],
                               fast=True)
    db.execute("BEGIN")
    with pytest.raises(ValueError, match="malformed rows payload"):
        fastsqlite.insert_rows(db, f"INSERT INTO {table} VALUES (?, ?)", payload + b"N",
                               fast=True)
    db.execute("ROLLBACK")
    assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


EDGE_TABLE = """
CREATE TABLE edges (id bigint PRIMARY KEY, n numeric, p numeric(12,2), f float8, r real,
                    t text, b bytea, ok boolean, i int4, s smallint);
INSERT INTO edges VALUES
 (1, 'NaN', 1.10, 'NaN', 'NaN', '', '', true, 2147483647, 32767),
 (2, 'Infinity', -0.01, 'Infinity', '-0', 'é', '\\x00', false, -2147483648, -32768),
 (3, '-Infinity', 0, '-Infinity', 1.5, 'x', '\\xff00', NULL, 0, 0),
 (4, 9007199254740993, 9999999999.99, -0.0, 3.4e38, E'tab\\there', NULL, true, 1, 1),
 (5, 9223372036854775807, NULL, 1e308, NULL, NULL, '\\x', true, NULL, NULL),
 (6, 9223372036854775808, 0.10, 5e-324, 1e-45, repeat('z', 100000), '\\xdeadbeef', false, 2, 2),
 (7, 1e400, 1, 0.1, 0.1, 'a', '\\x01', true, 3, 3),
 (8, -9223372036854775808, 2, 2, 2, 'b', '\\x02', true, 4, 4),
 (9, 0.30000000000000004, 3, 3, 3, 'c', '\\x03', true, 5, 5),
 (10, 123456789012345678901234567890.123, 4, 4, 4, 'd', '\\x04', true, 6, 6),
 (-9223372036854775808, 1e-400, 5, 5, 5, 'e', '\\x05', true, 7, 7),
 (11, 0.99999999999999999999, 6, 6, 6, 'f', '\\x06', true, 8, 8),
 (12, -9007199254740993, 7, 7, 7, 'g', '\\x07', true, 9, 9),
 (13, 9007199254740992, 8, 8, 8, 'h', '\\x08', true, 10, 10),
 (14, 100000000000000000000, 9, 9, 9, 'i', '\\x09', true, 11, 11),
 (15, 0.1000000000000000055511151231257827, 10, 10, 10, 'j', '\\x0a', true, 12, 12),
 (16, -0.000, 11, 11, 11, 'k', '\\x0b', true, 13, 13),
 (17, 123.4500, 12, 12, 12, 'l', '\\x0c', true, 14, 14);
CREATE TABLE times (id int PRIMARY KEY, tz timestamptz, ts timestamp, ts0 timestamp(0),
                    tz3 timestamptz(3));
INSERT INTO times VALUES
 (1, 'infinity', '-infinity', 'infinity', '-infinity'),
 (2, '0044-03-15 12:00:00.5 BC', '0001-12-31 23:59:59.999999 BC', '4713-01-01 BC', NULL),
 (3, '10000-01-01 00:00:00.123', '294276-12-31 23:59:59.999999', '12345-06-07 08:09:10', NULL),
 (4, '2000-01-01 00:00:00', '1999-12-31 23:59:59.999999', '2000-01-01', '2000-01-01 00:00:00.5'),
 (5, '0001-01-01 00:00:00', '9999-12-31 23:59:59.999999', '0001-01-01', '9999-12-31 23:59:59.999'),
 (6, NULL, NULL, NULL, NULL),
 (7, '2024-02-29 13:14:15.000001+05:30', '1900-03-01 00:00:00.010000', '1970-01-01 00:00:01',
  '2038-01-19 03:14:08.25');
CREATE TABLE text_key (k text PRIMARY KEY, v numeric);
INSERT INTO text_key SELECT 'key ' || g, g / 7.0 FROM generate_series(1, 50) g;
CREATE TABLE numeric_key (k numeric PRIMARY KEY, v text);
INSERT INTO numeric_key SELECT g / 10.0, 'v' || g FROM generate_series(1, 50) g;
"""


def _chunks(conn, plan, after, path: str, *, got: list | None = None,
            stop_at_big: bool = False) -> list:
    """A table's chunks read in C from libpq, from psycopg's messages encoded in C, or in
    Python; each also put into `got` as it comes."""
    where = dict(schema="public", table=plan.name, select_sql=select_list(plan), key=plan.key,
                 key_types=plan.key_types, after=after)
    if path == "libpq":
        rows = sources.for_kind("postgres").stream_table(conn, schema="public", plan=plan,
                                                         after=after)
        assert isinstance(rows, pgcopy.LibpqCopy), plan.name
    elif path == "messages":
        rows = pgcopy.CopyMessages(pg_source.stream_rows(conn, wire_types=None, **where),
                                   pgcopy.codec_for(plan))
    else:
        rows = pg_source.stream_rows(conn, wire_types=plan.wire_types, **where)
    chunks = got if got is not None else []
    for chunk in make_chunks(rows, plan, chunk_rows=4, chunk_bytes=1 << 20,
                             stop_at_big=stop_at_big):
        chunks.append(chunk)
    return chunks


PROFILES = [{}, {"profile": "rails"}, {"profile": "django"},
            {"profile": "plain", "utc_timestamps": True}]


@pytest.mark.parametrize("options", PROFILES, ids=lambda o: o.get("profile", "ecto"))
def test_copy_rows_encoded_in_c_are_byte_for_byte_what_python_makes(pg_db, options):
    # Given every type the fidelity fixture has, and numeric, float and timestamp edge values
    with pg_db.connect() as conn:
        conn.execute(FIXTURE.read_text(encoding="utf-8"))
        conn.execute(EDGE_TABLE)
    source = parse_source_url(pg_db.url)
    with pg_source.connect(source) as conn:
        names = pg_source.list_tables(conn, "public")
        plans = translate(pg_source.reflect(source, conn, "public", names), options).tables
        native = [p for p in plans if pgcopy.codec_for(p)]
        assert {"edges", "times", "text_key", "numeric_key"} <= {p.name for p in native}

        # When each table is read in C and in Python, from the start and resumed mid-way
        for plan in native:
            python_chunks = _chunks(conn, plan, None, "python")
            # Then the chunks are the same: rows, checksums, resume keys and lossy counts
            for path in ("libpq", "messages"):
                assert _chunks(conn, plan, None, path) == python_chunks, (plan.name, path)
                if len(python_chunks) > 1:
                    middle = python_chunks[0].last_key
                    assert (_chunks(conn, plan, middle, path)
                            == _chunks(conn, plan, middle, "python")), (plan.name, path)


def _big_table(pg_db, extra_column, text_and_extra, *, rows):
    """Table `big`: every third row's bytea is 2 MB (the rest one byte), its text and an
    optional extra column as given; returns the source's URL."""
    extra = f", {extra_column}" if extra_column else ""
    with pg_db.connect() as conn:
        conn.execute(f"CREATE TABLE big (id int PRIMARY KEY, b bytea, t text{extra})")
        conn.execute("INSERT INTO big SELECT i, CASE WHEN i % 3 = 0 THEN decode(repeat("
                     "md5(i::text), 70000), 'hex') ELSE '\\x01' END, "
                     f"{text_and_extra} FROM generate_series(1, {rows}) i")
    return parse_source_url(pg_db.url)


def _plan_of_big(source, conn):
    return translate(pg_source.reflect(source, conn, "public", ["big"]), {}).tables[0]


def test_rows_of_big_values_are_written_as_frames_from_libpqs_own_message(pg_db, tmp_path):
    # Given small rows and rows of big values (a bytea, a text) in any order
    source = _big_table(pg_db, "n int", "CASE WHEN i % 4 = 0 THEN repeat('é' || i, 400000) "
                        "ELSE 'x' END, i", rows=13)
    with pg_source.connect(source) as conn:
        plan = _plan_of_big(source, conn)
        expected = _chunks(conn, plan, None, "libpq")

        # When they are read for a reader process: frames to its stdout (a file here)
        with open(tmp_path / "frames", "wb") as out:
            rows = sources.for_kind("postgres").stream_table(conn, schema="public", plan=plan,
                                                             after=None)
            got = list(make_chunks(rows, plan, chunk_rows=4, chunk_bytes=1 << 20,
                                   frames_fd=out.fileno()))
    frames = (tmp_path / "frames").read_bytes()

    # Then every chunk was written there, as the payload it would have been (those that end
    # in a big row from libpq's message), with the same checksum, size and key, though each
    # was built in the buffer of the one before
    sent = [c for c in got if c.sent]
    assert len(sent) == len(got) and all(c.payload == b"" for c in sent)
    take_frames(got, frames)
    assert_same_chunks(got, expected)


@pytest.mark.parametrize("path", ["libpq", "messages", "python"])
def test_a_worker_reading_alone_stops_before_a_row_longer_than_a_chunk(pg_db, path):
    # Given small rows and rows of big values, the first at id 3
    source = _big_table(pg_db, None, "'x'", rows=7)
    with pg_source.connect(source) as conn:
        plan = _plan_of_big(source, conn)
        whole = [row for chunk in _chunks(conn, plan, None, "python") for row in chunk.rows]

        # When the worker reads the table itself (copy_rows with a reader process to go to)
        got: list = []
        with pytest.raises(BigRowHere):
            _chunks(conn, plan, None, path, got=got, stop_at_big=True)

        # Then the rows before the big one came, ending with its key, then BigRowHere; the
        # connection is left fit for use
        assert [row for chunk in got for row in chunk.rows] == whole[:2]
        assert got[-1].last_key == [2]
        assert sum(c.checksum for c in got) % 2**64 == rows_checksum(whole[:2])
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (7,)


def test_timestamps_read_in_c_are_written_as_the_server_would_write_them(pg_db):
    # Given the timestamp edge values, and the server's own rendering of each format
    with pg_db.connect() as conn:
        conn.execute(EDGE_TABLE)
    source = parse_source_url(pg_db.url)
    with pg_source.connect(source) as conn:
        for options in PROFILES:
            plan = next(p for p in translate(pg_source.reflect(source, conn, "public", ["times"]),
                                             options).tables)
            # When the table is read in C
            got = [row for chunk in _chunks(conn, plan, None, "libpq") for row in chunk.rows]
            # Then every value is what pg_render.datetime_sql makes PostgreSQL write
            columns = {c.name: c for c in pg_source.reflect(source, conn, "public",
                                                            ["times"]).tables[0].columns}
            ctx = {**{"profile": "ecto"}, **options}
            expected = _server_rendering(conn, columns, ctx)
            assert got == expected, options


def _server_rendering(conn, columns, options) -> list[tuple]:
    ctx = ColumnContext(profile=options["profile"],
                        utc_timestamps=bool(options.get("utc_timestamps")))
    exprs = ['"id"::int8']
    for name in ("tz", "ts", "ts0", "tz3"):
        col = columns[name]
        utc = col.typname == "timestamptz" or ctx.utc_timestamps
        exprs.append(pg_render.datetime_sql(f'"{name}"', col, ctx, utc=utc))
    return [tuple(r) for r in conn.execute(f"SELECT {', '.join(exprs)} FROM times ORDER BY id")]


def test_a_copy_read_from_libpq_and_cut_midway_says_the_connection_was_cut(pg_db):
    # Given a table being read in C straight from libpq
    with pg_db.connect() as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, n int)")
        conn.execute("INSERT INTO big SELECT g, g FROM generate_series(1, 300000) g")
    source = parse_source_url(pg_db.url)
    reader = sources.for_kind("postgres")
    with reader.connect(source) as conn:
        plan = translate(reader.reflect(source, conn, "public", ["big"])).tables[0]
        rows = reader.stream_table(conn, schema="public", plan=plan, after=None)
        assert isinstance(rows, pgcopy.LibpqCopy)
        chunks = make_chunks(rows, plan, chunk_rows=1000, chunk_bytes=1 << 20)
        first = next(chunks)

        # When its backend is terminated in the middle of the COPY
        with pg_db.connect() as other:
            other.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])

        # Then reading on fails as a cut connection (retried from the checkpoint), after
        # the chunks that had arrived whole
        with pytest.raises(SourceUnavailable, match="connection failed or was cut"):
            for chunk in chunks:
                assert chunk.rows[0][0] == first.rows[-1][0] + 1
                first = chunk


def test_a_question_mark_in_a_column_name_does_not_change_the_batched_insert(db):
    # Given a table whose column names hold `?` (they are quoted in the INSERT's text)
    db.execute('CREATE TABLE q ("id?" INTEGER PRIMARY KEY, "why? not?" TEXT)')
    rows = [(i, f"r{i}") for i in range(200)]  # three 64-row statements and single rows

    # When its rows are inserted in C
    inserted = fastsqlite.insert_rows(db, 'INSERT INTO "q" ("id?", "why? not?") VALUES (?, ?)',
                                      marshal.dumps(rows, 2), fast=True)

    # Then every row is there as it was given
    assert inserted == 200
    assert db.execute("SELECT * FROM q ORDER BY 1").fetchall() == rows


def test_decimal_text_converts_in_c_to_the_value_python_makes():
    # Given decimals around the C fast path's edges (15 significant digits, 22 after the
    # point, leading zeros, signs, -0) and random ones past them
    import random

    from worker.core.converters import numeric_affinity

    rng = random.Random(6)
    texts = ["0", "-0", "-0.00", "+1.5", "007.250", "0.000000000000000000001", "1.",
             "999999999999999.9", "123456789012345", "1234567890123456", "0.1", "-0.3",
             "9007199254740993", "1e5", "NaN", "Infinity", "-Infinity", ".5"]
    for _ in range(20_000):
        whole = "".join(rng.choices("0123456789", k=rng.randint(0, 17))) or "0"
        point = "." + "".join(rng.choices("0123456789", k=rng.randint(0, 25)))
        texts.append(rng.choice(["", "-"]) + whole + (point if rng.random() < 0.8 else ""))
    codec = pgcopy.ValuesCodec(b"N", 1)

    # When C encodes them, Then it writes the bytes and counts of Python's conversion
    data, rows, _, counts = codec.encode_values([(t,) for t in texts])
    values, inexact = numeric_affinity(texts)
    assert rows == len(texts)
    assert data == marshal.dumps([(v,) for v in values], 2)
    assert counts[0] == inexact


def test_dates_off_the_calendar_become_null_in_c_as_in_python():
    # Given every month and day 00-31 of leap, non-leap and century years (0000 is no leap
    # year in MySQL), in each rendering the MySQL rules make, and values no date starts
    from worker.sources.mysql.converters import off_calendar_null

    texts: list = [None, "", "2024-02", "abcd-ef-gh", "２０２４-01-01"]
    for year in ("0000", "0004", "1900", "2000", "2023", "2024", "9999"):
        for month in range(13):
            for day in range(32):
                date = f"{year}-{month:02}-{day:02}"
                texts += [date, f"{date}T12:00:00.000001Z", f"{date} 00:00:00"]
    codec = pgcopy.ValuesCodec(b"D", 1)

    # When C encodes them, Then it writes the bytes and counts of Python's conversion
    data, rows, _, counts = codec.encode_values([(t,) for t in texts])
    values, nulled = off_calendar_null(texts)
    assert rows == len(texts)
    assert data == marshal.dumps([(v,) for v in values], 2)
    assert counts[0] == nulled == 3 * (7 * 13 * 32 - 4 * 365 - 3 * 366)  # 0004, 2000, 2024 leap
    assert off_calendar_null(["2024-02-29", "0000-02-29", "2023-04-31"]) == \
        (["2024-02-29", None, None], 2)

ARRAY_TABLE = r"""
CREATE TABLE arrays (id uuid PRIMARY KEY, t text[], v varchar(20)[], u uuid);
INSERT INTO arrays VALUES
 ('00000000-0000-0000-0000-000000000000', '{}', '{}', NULL),
 ('ffffffff-ffff-ffff-ffff-ffffffffffff', '{NULL}', '{a,NULL,b}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
 ('0123e567-e89b-12d3-a456-426614174000', ARRAY[E'q"uote', E'back\\slash', E'tab\tnl\ncr\rbs\bff\f',
   E'ctl\x01\x1f', 'é ✓ 😀', '/slash', '', ' '], ARRAY['x y'], gen_random_uuid()),
 ('11111111-2222-3333-4444-555555555555', '{{a,b},{c,NULL}}', '{{{x}},{{y}}}', NULL),
 ('22222222-2222-3333-4444-555555555555', '[2:3]={"lower bound",two}', NULL, NULL),
 ('33333333-2222-3333-4444-555555555555', NULL, '{"{}","[]","null"}', NULL);
"""


def test_uuids_and_text_arrays_read_in_c_are_written_as_the_server_would_write_them(pg_db):
    # Given uuids and text arrays with every escape, NULLs, nesting and bounds
    with pg_db.connect() as conn:
        conn.execute(ARRAY_TABLE)
    source = parse_source_url(pg_db.url)
    with pg_source.connect(source) as conn:
        plan = translate(pg_source.reflect(source, conn, "public", ["arrays"])).tables[0]
        assert [c.wire for c in plan.columns] == ["uuid", "text[]", "varchar[]", "uuid"]

        # When the table is read in C, through psycopg's messages, and in Python
        paths = {path: [row for chunk in _chunks(conn, plan, None, path) for row in chunk.rows]
                 for path in ("libpq", "messages", "python")}

        # Then each is what the server's uuid::text and to_json(array)::text write
        expected = [tuple(r) for r in conn.execute(
            "SELECT id::text, to_json(t)::text, to_json(v)::text, u::text FROM arrays "
            "ORDER BY id")]
        assert paths == {path: expected for path in paths}


def test_a_table_keyed_by_a_timestamp_reads_and_resumes_in_key_order(pg_db):
    # Given a timestamp key, which the reader selects converted and again as text
    with pg_db.connect() as conn:
        conn.execute("CREATE TABLE events (at timestamptz PRIMARY KEY, v int); "
                     "INSERT INTO events SELECT '2024-01-01'::timestamptz + g * interval '1 s', "
                     "g FROM generate_series(1, 10) g")
    source = parse_source_url(pg_db.url)
    with pg_source.connect(source) as conn:
        plan = translate(pg_source.reflect(source, conn, "public", ["events"])).tables[0]

        # When it is read from the start and resumed after its first chunk
        for path in ("libpq", "python"):
            chunks = _chunks(conn, plan, None, path)
            rest = _chunks(conn, plan, chunks[0].last_key, path)

            # Then every row comes once, in key order (ORDER BY was ambiguous before)
            values = [row[1] for chunk in chunks for row in chunk.rows]
            assert values == list(range(1, 11)), path
            first = len(chunks[0].rows)
            assert [row[1] for chunk in rest for row in chunk.rows] == values[first:], path
