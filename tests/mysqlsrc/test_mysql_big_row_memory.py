"""Issue 20, finding 8, from MariaDB: a row of big values costs a small multiple of itself
in the worker and in its reader process (tests/test_big_row_memory.py for PostgreSQL)."""

from __future__ import annotations

import sqlite3

import pytest
from big_rows import GROWTH_LIMIT, MB, probed_worker

from worker.jobs import control

# The server's max_allowed_packet (16 MiB by default) bounds a row it sends
BLOB_MB, TEXT_MB = 8, 6
ROWS = 2
PATHS = {"in the worker": "-1", "in a reader process": "0"}


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
    with probed_worker(tmp_path, settings_env.queue,
                       {"LITESHIFT_READER_PROCESS_BYTES": reader_process_bytes}) as worker:
        idle = worker.rss_mb()
        job_id = control.submit_job(settings_env, store, send, source=my_db.url, target="big",
                                    options={"snapshot": False})
        view = _wait_done(store, job_id, worker)
        growth = worker.growth(idle)

    # Then the copy is whole, and neither the worker nor its reader grew by more than a
    # small multiple of one row
    assert view["state"] == "done", view
    db = sqlite3.connect(settings_env.data_dir / "big.db")
    try:
        assert db.execute("SELECT count(*), sum(length(b)), sum(length(t)) FROM big").fetchone() \
            == (ROWS, ROWS * BLOB_MB * MB, ROWS * TEXT_MB * MB)
    finally:
        db.close()
    assert growth.worker_mb <= GROWTH_LIMIT * row_mb, growth.describe(row_mb)
    if reader_process_bytes == "0":
        assert growth.readers_mb, "no reader process recorded its peak"
    assert all(r <= GROWTH_LIMIT * row_mb for r in growth.readers_mb), growth.describe(row_mb)


def _wait_done(store, job_id, worker):
    import time

    deadline = time.monotonic() + 300
    while (view := control.job_view(store, job_id))["state"] not in ("done", "failed"):
        assert worker.proc.poll() is None, f"the worker exited:\n{worker.tail()}"
        assert time.monotonic() < deadline, f"job still {view['state']}:\n{worker.tail()}"
        time.sleep(0.1)
    return view
