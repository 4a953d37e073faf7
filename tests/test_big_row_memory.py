"""Issue 20, finding 8: a row of big values costs a small multiple of itself in the worker
and in its reader process, not seven (tests/big_rows.py measures; ops/bench/RESULTS.md has
the figures and what each copy of the value was)."""

from __future__ import annotations

import sqlite3

import pytest
from big_rows import MB, PATHS, assert_bounded, copy_big_rows

VALUE_MB = 20  # a bytea and a text of this size in each row
ROWS = 2  # the second must not come on top of the first



@pytest.mark.parametrize("reader_process_bytes", PATHS.values(), ids=PATHS.keys())
def test_a_row_of_big_values_costs_a_small_multiple_of_itself(pg_db, settings_env, store, send,
                                                               tmp_path, reader_process_bytes):
    # Given rows of a 20 MB bytea and a 20 MB text
    repeats = VALUE_MB * MB // 32
    pg_db.execute("CREATE TABLE big (id integer PRIMARY KEY, b bytea, t text)")
    pg_db.execute(f"INSERT INTO big SELECT i, decode(repeat(md5(i::text) || md5((i * 7)::text), "
                  f"{repeats}), 'hex'), repeat(md5((i * 3)::text), {repeats}) "
                  f"FROM generate_series(1, {ROWS}) i")
    row_mb = 2 * VALUE_MB

    # When a worker copies them
    view, growth = copy_big_rows(tmp_path, settings_env, store, send, pg_db.url,
                                 reader_process_bytes)

    # Then the copy is whole, and neither the worker nor its reader grew by more than a
    # small multiple of one row
    assert view["state"] == "done", view
    db = sqlite3.connect(settings_env.data_dir / "big.db")
    try:
        assert db.execute("SELECT count(*), sum(length(b)), sum(length(t)) FROM big").fetchone() \
            == (ROWS, ROWS * VALUE_MB * MB, ROWS * VALUE_MB * MB)
    finally:
        db.close()
    assert_bounded(growth, row_mb)
