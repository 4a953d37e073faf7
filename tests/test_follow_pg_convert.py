"""The PostgreSQL follower's conversion of changed rows (PgChanges.convert), against a real
server: each column's values go to the server as one text array, so text that array
literals treat specially (NULL as a word, braces, quotes, backslashes, commas, blanks) must
come back as the string it was, and a NULL as NULL."""

from __future__ import annotations

from typing import Any

import psycopg

from worker.sources.postgres import source as pg
from worker.sources.postgres.changes import PgChanges
from worker.sources.url import parse_source_url

AWKWARD = ["NULL", "null", "{a,b}", 'a"b', "back\\slash", "it's", "", " spaced ", "a\tb\nc",
           "ünï€😀"]


def test_awkward_text_and_nulls_convert_as_the_copy_writes_them(pg_db: Any) -> None:
    # Given a table, and its rows' text forms as pgoutput sends them
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, s text, a text[], j jsonb, "
                  "n numeric(10,2), b bytea)")
    with psycopg.connect(pg_db.url, autocommit=True) as conn:
        for i, text in enumerate(AWKWARD):
            conn.execute("INSERT INTO t VALUES (%s, %s, ARRAY['x,y', 'NULL', NULL, %s::text], "
                         "jsonb_build_object('k', %s::text), 12.5, '\\x00ff')",
                         (i, text, text, text))
        conn.execute("INSERT INTO t (id) VALUES (99)")
        sent = [[None if v is None else str(v) for v in row] for row in conn.execute(
            "SELECT id::text, s::text, a::text, j::text, n::text, b::text FROM t ORDER BY id")]
    url = parse_source_url(pg_db.url)

    # When the follower converts them
    with pg.connect(url) as conn:
        plan = pg.translate(pg.reflect(url, conn, "public", ["t"])).tables[0]
        stream = PgChanges(conn, job_id="convert", slot="unused", schema="public", plans=[plan])
        rows = stream.convert("t", sent).rows

    # Then every value is the source's, NULLs included
    assert [r[1] for r in rows] == [*AWKWARD, None]
    assert rows[0][2] == '["x,y","NULL",null,"NULL"]'
    assert [r[2] is None for r in rows] == [False] * len(AWKWARD) + [True]
    assert rows[4][3] == '{"k": "back\\\\slash"}'
    assert {(r[4], r[5]) for r in rows[:-1]} == {(12.5, b"\x00\xff")}
    assert rows[-1][1:] == (None,) * 5
