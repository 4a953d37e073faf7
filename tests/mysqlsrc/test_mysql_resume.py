"""Resuming MySQL tables: the source connection KILLed mid-copy, and keyset resume from every
kind of key the checkpoint can hold (composite, binary, text under a _ci collation, enum,
datetime, decimal, unsigned past 2^63-1)."""

from __future__ import annotations

import json
import sqlite3

from worker import sources
from worker.core.checksum import as_hex, rows_checksum
from worker.jobs import control
from worker.sources.url import parse_source_url
from worker.sqlite.chunks import make_chunks

from .conftest import my_connect

ROWS = 300_000
CHUNK_ROWS = 3_000  # 100 chunks: the copy runs long enough to be cut in the middle


def make_narrow_table(my_db) -> None:
    my_db.script(f"""
        CREATE TABLE digits (d int);
        INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);
        CREATE TABLE narrow (id bigint PRIMARY KEY, n int, s varchar(40));
        INSERT INTO narrow
          SELECT g, (g * 13) % 1000, MD5(g) FROM (
            SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * h.d + 1 AS g
            FROM digits a, digits b, digits c, digits e, digits f, digits h) x
          WHERE g <= {ROWS};
        DROP TABLE digits""")


def kill_reader(my_db) -> int:
    """KILL the connection streaming `narrow`; returns how many were killed."""
    conn = my_connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST "
                    "WHERE DB = %s AND INFO LIKE 'SELECT%FROM `narrow`%'", (my_db.name,))
        ids = [r[0] for r in cur.fetchall()]
        for thread in ids:
            cur.execute(f"KILL CONNECTION {int(thread)}")
        return len(ids)
    finally:
        conn.close()


def test_mysql_connection_killed_mid_copy_resumes_from_the_checkpoint(
        my_db, settings_env, store, send, worker_proc, wait_for, wait_until):
    # Given a job copying a 300,000-row table
    make_narrow_table(my_db)
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=my_db.url, target="narrow",
                                options={"chunk_rows": CHUNK_ROWS})

    def rows_done() -> int:
        return (store.table(job_id, "narrow") or {}).get("rows_done") or 0

    wait_until(lambda: 0 < rows_done() < ROWS // 2, timeout=60,
               what="the copy to be under way", interval=0.005)

    # When its source connection is KILLed on the server
    killed = wait_until(lambda: kill_reader(my_db), timeout=10, what="the reading connection")
    assert killed == 1
    view = wait_for(store, job_id, ["done", "failed"], timeout=120, workers=[worker])

    # Then the task is retried, resumes after the last committed key, and the result holds
    # every source row exactly once
    assert view["state"] == "done", view
    assert view["tables"][0]["attempts"] == 2
    first, resumed = worker.events("table_copying")
    assert first["rows_done"] == 0
    assert resumed["rows_done"] > 0 and resumed["resume_after"] == [resumed["rows_done"]]
    db = sqlite3.connect(settings_env.data_dir / "narrow.db")
    try:
        count, distinct = db.execute("SELECT count(*), count(DISTINCT id) FROM narrow").fetchone()
    finally:
        db.close()
    assert count == distinct == ROWS
    source = my_db.execute("SELECT id, n, s FROM narrow ORDER BY id")
    assert view["tables"][0]["checksum"] == as_hex(rows_checksum(source))


KEYED_TABLES = """
CREATE TABLE composite (
  k varchar(20) COLLATE utf8mb4_general_ci, b binary(16), n int unsigned,
  PRIMARY KEY (k, b, n));
INSERT INTO composite VALUES ('a', UNHEX(REPEAT('00', 16)), 1), ('a', UNHEX(REPEAT('FF', 16)), 0),
  ('B', UNHEX(REPEAT('01', 16)), 5), ('b c', UNHEX(REPEAT('01', 16)), 5),
  ('é', UNHEX(REPEAT('7F', 16)), 2), ('z''q', UNHEX(REPEAT('80', 16)), 4294967295);
CREATE TABLE by_enum (e enum('zeta','alpha','mid') PRIMARY KEY, v int);
INSERT INTO by_enum VALUES ('zeta', 1), ('alpha', 2), ('mid', 3);
CREATE TABLE by_time (t datetime(6) PRIMARY KEY, d decimal(30,10) NOT NULL UNIQUE);
INSERT INTO by_time VALUES ('2024-01-01 00:00:00.000001', 1.5),
  ('2024-01-01 00:00:00.000002', 12345678901234567890.0000000001),
  ('0000-00-00 00:00:00', -3), ('2024-01-01 00:00:00', 0);
CREATE TABLE by_unsigned (id bigint unsigned PRIMARY KEY, latin varchar(5) CHARACTER SET latin1);
INSERT INTO by_unsigned VALUES (1, 'a'), (9223372036854775807, 'é'),
  (9223372036854775808, 'b'), (18446744073709551615, 'c');
CREATE TABLE by_latin (k varchar(10) CHARACTER SET latin1 PRIMARY KEY);
INSERT INTO by_latin VALUES ('a'), ('É'), ('z'), ('ü');
CREATE TABLE no_key (v int);
INSERT INTO no_key VALUES (1), (1)
"""


def test_mysql_keyset_resume_from_every_kind_of_key(my_db):
    # Given tables keyed by composite, binary, collated text, enum, datetime, decimal and
    # unsigned columns
    my_db.script(KEYED_TABLES)
    source = parse_source_url(my_db.url)
    reader = sources.for_kind(source.kind)
    with reader.connect(source) as conn:
        names = reader.list_tables(conn, "public")
        plan = reader.translate(reader.reflect(source, conn, "public", names), {})
        for table in plan.tables:
            everything = list(reader.stream_table(conn, schema="public", plan=table,
                                                  after=None))
            if not table.key:
                assert table.name == "no_key" and len(everything) == 2
                continue
            # When each row's key goes through the checkpoint (JSON) and the copy resumes
            # after it
            for i, row in enumerate(everything):
                key = json.loads(json.dumps([row[p] for p in table.key_positions]))
                rest = list(reader.stream_table(conn, schema="public", plan=table, after=key))
                # Then exactly the rows after it come back, in the same order
                assert rest == everything[i + 1:], (table.name, key)
    by_name = {t.name: t for t in plan.tables}
    assert by_name["by_time"].key == ["t"]
    assert by_name["composite"].key == ["k", "b", "n"]


def test_mysql_chunk_keys_come_from_the_stream(my_db):
    my_db.script("CREATE TABLE t (id bigint unsigned PRIMARY KEY);"
                 "\nINSERT INTO t VALUES (1), (18446744073709551615)")
    source = parse_source_url(my_db.url)
    reader = sources.for_kind(source.kind)
    with reader.connect(source) as conn:
        plan = reader.translate(reader.reflect(source, conn, "public", ["t"]), {}).tables[0]
        rows = reader.stream_table(conn, schema="public", plan=plan, after=None)
        chunks = list(make_chunks(rows, plan, chunk_rows=1, chunk_bytes=1 << 20))
    # the key as read (an int; JSON holds it exactly), the value as SQLite keeps it (text)
    assert [c.last_key for c in chunks] == [[1], [18446744073709551615]]
    assert chunks[1].rows == [("18446744073709551615",)]
    assert chunks[1].lossy == {"id": 1}
