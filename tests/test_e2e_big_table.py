"""A 300,000-row table of mixed types, copied by a real worker in many chunks."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC
from decimal import Decimal

from worker.jobs import control

ROWS = 300_000
CHUNK_ROWS = 20_000

MIXED_TABLE = f"""
CREATE TABLE mixed (
  id bigint PRIMARY KEY, n integer, name text, doc jsonb, tags text[], price numeric(12,2),
  at timestamptz, flag boolean, uid uuid, blob bytea);
INSERT INTO mixed
SELECT i,
       CASE WHEN i % 97 = 0 THEN NULL ELSE (i * 7919) % 100000 - 50000 END,
       CASE WHEN i % 101 = 0 THEN NULL ELSE 'name ' || i || ' é ☃ "q" ''s' END,
       CASE WHEN i % 89 = 0 THEN NULL
            ELSE jsonb_build_object('i', i, 'tags', jsonb_build_array('a', 'b'),
                                    'nested', jsonb_build_object('x', i % 3, 'f', i / 8.0)) END,
       CASE WHEN i % 83 = 0 THEN NULL ELSE ARRAY['t' || (i % 5), 'x y', 'q"uote', NULL] END,
       CASE WHEN i % 79 = 0 THEN NULL ELSE ((i * 31) % 10000000) / 100.0 END,
       CASE WHEN i % 73 = 0 THEN NULL
            ELSE timestamptz '2020-01-01 00:00:00+00' + i * interval '61.000123 seconds' END,
       CASE WHEN i % 71 = 0 THEN NULL ELSE i % 3 = 0 END,
       CASE WHEN i % 67 = 0 THEN NULL ELSE md5(i::text)::uuid END,
       CASE WHEN i % 61 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') END
FROM generate_series(1::bigint, {ROWS}) AS i;
ANALYZE mixed;
"""
COLUMNS = "id, n, name, doc, tags, price, at, flag, uid, blob"
# the NULL-making moduli, chunk edges, the ends, and a seeded random sample
SAMPLE_KEYS = sorted({1, 3, 61, 67, 71, 73, 79, 83, 89, 97, 101, 100 * 101, CHUNK_ROWS,
                      CHUNK_ROWS + 1, ROWS // 2, ROWS - 1, ROWS,
                      *random.Random(7).sample(range(1, ROWS + 1), 300)})


def test_big_mixed_table_round_trips_in_many_chunks(pg_db, settings_env, store, send,
                                                    worker_proc, wait_for):
    # Given 300,000 rows of mixed types, with NULLs in every nullable column
    with pg_db.connect() as conn:
        conn.execute(MIXED_TABLE)
    worker = worker_proc()

    # When they are copied in chunks of 20,000 rows
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="mixed",
                                options={"chunk_rows": CHUNK_ROWS})
    view = wait_for(store, job_id, ["done", "failed"], timeout=120, workers=[worker])

    # Then every row is there once, committed over at least 15 chunks
    assert view["state"] == "done", view
    db = sqlite3.connect(settings_env.data_dir / "mixed.db")
    try:
        assert db.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM mixed"
                          ).fetchone() == (ROWS, ROWS, 1, ROWS)
        copied = {row[0]: row for row in db.execute(
            f"SELECT {COLUMNS} FROM mixed WHERE id IN ({','.join(map(str, SAMPLE_KEYS))})")}
        price_types = dict(db.execute("SELECT typeof(price), count(*) FROM mixed GROUP BY 1"))
    finally:
        db.close()
    commits = [e for e in worker.events("chunk_committed") if e.get("job_id") == job_id]
    assert len(commits) >= ROWS // CHUNK_ROWS
    assert all(0 < e["chunk_rows"] <= CHUNK_ROWS for e in commits)
    assert sum(e["chunk_rows"] for e in commits) == ROWS
    assert commits[-1]["rows_done"] == ROWS
    stream = [f for _, f in store.events(job_id, count=10_000) if f["event"] == "chunk_committed"]
    assert len(stream) == len(commits)

    # and the sampled rows equal the source's, value by value, in the ecto formats
    source = {row[0]: row for row in pg_db.execute(
        f"SELECT {COLUMNS} FROM mixed WHERE id = ANY(%s)", [SAMPLE_KEYS])}
    assert copied.keys() == source.keys() == set(SAMPLE_KEYS)
    for key in SAMPLE_KEYS:
        assert copied[key] == expected_row(source[key]), key
    assert price_types.keys() == {"integer", "real", "null"}  # 12.00 is stored as 12

    report = json.loads((settings_env.data_dir / "mixed.report.json").read_text())
    (table,) = report["tables"]
    assert table["rows"] == ROWS
    assert table["checksum"] == view["tables"][0]["checksum"]
    assert {c["name"]: c["lossy_values"] for c in table["columns"]}["price"] == 0


def expected_row(row: tuple) -> tuple:
    """What ecto_sqlite3 expects for each PostgreSQL value (TARGET_FORMATS.md)."""
    key, n, name, doc, tags, price, at, flag, uid, blob = row
    return (
        key, n, name,
        None if doc is None else Json(doc),
        None if tags is None else Json(tags),
        None if price is None else Exactly(price),
        None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        None if flag is None else int(flag),
        None if uid is None else str(uid).lower(),
        blob,
    )


class Json:
    """Equal to JSON text that parses to the same object."""

    def __init__(self, value: object):
        self.value = value

    def __eq__(self, text: object) -> bool:
        return isinstance(text, str) and json.loads(text) == self.value

    def __repr__(self) -> str:
        return f"Json({self.value!r})"


class Exactly:
    """Equal to a SQLite INTEGER or REAL that holds exactly this decimal."""

    def __init__(self, value: Decimal):
        self.value = value

    def __eq__(self, number: object) -> bool:
        if isinstance(number, bool) or not isinstance(number, int | float):
            return False
        if isinstance(number, float) and self.value == self.value.to_integral_value():
            return False  # NUMERIC affinity keeps whole values as INTEGER
        return Decimal(repr(number)) == self.value

    def __repr__(self) -> str:
        return f"Exactly({self.value})"
