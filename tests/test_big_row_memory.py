"""Issue 20, finding 8: a row of big values costs a small multiple of itself in the worker
and in its reader process, not seven (tests/big_rows.py measures; ops/bench/RESULTS.md has
the figures and what each copy of the value was)."""

from __future__ import annotations

import sqlite3

import pytest
from big_rows import GROWTH_LIMIT, MB, probed_worker

from worker.jobs import control

VALUE_MB = 20  # a bytea and a text of this size in each row
ROWS = 2  # the second must not come on top of the first

# Tables under LITESHIFT_READER_PROCESS_BYTES are read in the worker (a thread); the others
# in a reader process: each path holds the row in its own places.
PATHS = {"in the worker": "-1", "in a reader process": "0"}


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
    with probed_worker(tmp_path, settings_env.queue,
                       {"LITESHIFT_READER_PROCESS_BYTES": reader_process_bytes}) as worker:
        idle = worker.rss_mb()
        job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="big")
        view = _wait_done(store, job_id, worker)
        growth = worker.growth(idle)

    # Then the copy is whole, and neither the worker nor its reader grew by more than a
    # small multiple of one row
    assert view["state"] == "done", view
    db = sqlite3.connect(settings_env.data_dir / "big.db")
    try:
        assert db.execute("SELECT count(*), sum(length(b)), sum(length(t)) FROM big").fetchone() \
            == (ROWS, ROWS * VALUE_MB * MB, ROWS * VALUE_MB * MB)
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
