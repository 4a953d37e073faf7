"""Issue 20, finding 8, from MariaDB: a row of big values costs a small multiple of itself
in the worker and in its reader process (tests/test_big_row_memory.py for PostgreSQL)."""

from __future__ import annotations

import sqlite3

import pytest
from big_rows import MB, PATHS, assert_bounded, copy_big_rows

# The server's max_allowed_packet (16 MiB by default) bounds a row it sends
BLOB_MB, TEXT_MB = 8, 6
ROWS = 2


@pytest.mark.parametrize("reader_process_bytes", PATHS.values(), ids=PATHS.keys())
def test_a_row_of_big_values_costs_a_small_multiple_of_itself(my_db, settings_env, store, send,
                                                               tmp_path, reader_process_bytes):
    # Given rows of an 8 MB LONGBLOB and a 6 MB LONGTEXT
    my_db.execute("CREATE TABLE big (id int PRIMARY KEY, b longblob, t longtext) ENGINE=InnoDB")
    for i in range(1, ROWS + 1):
        my_db.execute("INSERT INTO big VALUES (%s, REPEAT(UNHEX(MD5(%s)), %s), "
                      "REPEAT(MD5(%s), %s))", (i, i, BLOB_MB * MB // 16, i * 3, TEXT_MB * MB // 32))
    row_mb = BLOB_MB + TEXT_MB

    # When a worker copies them (read by the worker's own reader: no snapshot holder)
    view, growth = copy_big_rows(tmp_path, settings_env, store, send, my_db.url,
                                 reader_process_bytes, options={"snapshot": False})

    # Then the copy is whole, and neither the worker nor its reader grew by more than a
    # small multiple of one row
    assert view["state"] == "done", view
    db = sqlite3.connect(settings_env.data_dir / "big.db")
    try:
        assert db.execute("SELECT count(*), sum(length(b)), sum(length(t)) FROM big").fetchone() \
            == (ROWS, ROWS * BLOB_MB * MB, ROWS * TEXT_MB * MB)
    finally:
        db.close()
    assert_bounded(growth, row_mb)
