"""A worker reading a table itself hands the rest of it to a reader process when a row
longer than a chunk shows up (copy_rows' big_row_source): from the last commit, or from the
start for a table without a key, nothing lost and nothing doubled, and the group's next
table read over a new connection in the same moment."""

from __future__ import annotations

import sqlite3

from worker.jobs import control

BIG_MB = 9  # past the 8 MiB chunk, and compressed by TOAST to a table of ~100 KB: grouped


def test_a_row_longer_than_a_chunk_has_a_reader_process_read_the_rest(
        pg_db, settings_env, store, send, worker_proc, wait_for, monkeypatch):
    # Given small tables copied as a group by the worker itself, two of them with a row of
    # 9 MB in the middle, one of those without a key
    monkeypatch.setenv("LITESHIFT_READER_PROCESS_BYTES", str(32 * 1024 * 1024))
    big = f"repeat(md5(i::text), {BIG_MB * 1024 * 1024 // 32})"
    with pg_db.connect() as conn:
        conn.execute("CREATE TABLE a (id int PRIMARY KEY, t text)")
        conn.execute("INSERT INTO a SELECT i, 'a' || i FROM generate_series(1, 3) i")
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, t text)")
        conn.execute(f"INSERT INTO big SELECT i, CASE WHEN i = 4 THEN {big} ELSE 'b' || i END "
                     "FROM generate_series(1, 6) i")
        conn.execute("CREATE TABLE loose (id int, t text)")
        conn.execute(f"INSERT INTO loose SELECT i, CASE WHEN i = 2 THEN {big} ELSE 'l' || i "
                     "END FROM generate_series(1, 3) i")
        conn.execute("CREATE TABLE z (id int PRIMARY KEY, t text)")
        conn.execute("INSERT INTO z SELECT i, 'z' || i FROM generate_series(1, 2) i")
    worker = worker_proc()

    # When they are copied
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="handover")
    view = wait_for(store, job_id, ["done", "failed"], timeout=120, workers=[worker])

    # Then each table holds its rows once, the two with a big row read on by a reader process
    assert view["state"] == "done", view
    db = sqlite3.connect(settings_env.data_dir / "handover.db")
    try:
        counts = {name: db.execute(f"SELECT count(*), count(DISTINCT id), sum(length(t)) "
                                   f"FROM {name}").fetchone()
                  for name in ("a", "big", "loose", "z")}
    finally:
        db.close()
    mb = BIG_MB * 1024 * 1024
    assert counts == {"a": (3, 3, 6), "big": (6, 6, 5 * 2 + mb), "loose": (3, 3, 2 * 2 + mb),
                      "z": (2, 2, 4)}
    handed = [e for e in worker.events("table_to_reader_process") if e.get("job_id") == job_id]
    assert sorted(e["table"] for e in handed) == ["big", "loose"]
    assert {e["table"]: e["resume_after"] for e in handed} == {"big": [3], "loose": None}
