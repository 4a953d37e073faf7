"""Measure MySQL/MariaDB drivers streaming one table in key order, unbuffered.

    .venv/bin/python ops/bench/bench_mysql_drivers.py [--rows 1000000] [--rounds 2]

Creates (or re-creates, when its row count differs) table bench_mixed in database
liteshift_bench of the local MariaDB/MySQL (127.0.0.1:3306, root, no password), then times,
per driver installed, one `SELECT ... ORDER BY id` read to the end with an unbuffered
(server-side) cursor and fetchmany(2000):

- "server": values rendered by the server in the SELECT (CAST(d AS CHAR), DATE_FORMAT with
  ISO 8601 and microseconds): the driver only decodes strings;
- "python": `SELECT *`, the driver builds Decimal/datetime, and Python renders them per value
  (str(Decimal), datetime.strftime), as the worker would have to;
- "raw" (where the driver has it): no conversion at all (bytes), for the floor of the driver.

Drivers missing from the environment are skipped with a note. Prints one line per variant
(median seconds, rows/s) and the `mariadb --quick` read floor.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

HOST, PORT, USER = "127.0.0.1", 3306, "root"
TABLE = "bench_mixed"
BATCH = 2000

CREATE_SQL = f"""
CREATE TABLE {TABLE} (
  id bigint PRIMARY KEY, n int, s varchar(64), j json, d decimal(12,2), t datetime(6),
  b tinyint(1), u binary(16), bl blob
) CHARACTER SET utf8mb4
"""
# Digits cross-joined: portable to MySQL 8 (no sequence engine, no recursion limit).
FILL_SQL = f"""
INSERT INTO {TABLE}
SELECT g, (g * 7919) % 1000003, CONCAT('row ', g, ' ', MD5(g)),
       JSON_OBJECT('id', g, 'kind', CONCAT('k', g % 10), 'even', g % 2 = 0),
       (g % 100000) / 100, TIMESTAMPADD(MICROSECOND, g * 1000001, '2024-01-01 00:00:00'),
       g % 3 = 0, UNHEX(MD5(g)), UNHEX(CONCAT(MD5(g), MD5(g + 1)))
FROM (SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * h.d + 1 AS g
      FROM _digits a, _digits b, _digits c, _digits e, _digits f, _digits h) gen
WHERE g <= %(rows)s
"""

SERVER_SELECT = (f"SELECT id, n, s, j, CAST(d AS CHAR), "
                 f"DATE_FORMAT(t, '%Y-%m-%dT%H:%i:%s.%f'), b, u, bl FROM {TABLE} ORDER BY id")
PLAIN_SELECT = f"SELECT id, n, s, j, d, t, b, u, bl FROM {TABLE} ORDER BY id"

SESSION = ("SET time_zone = '+00:00'", "SET NAMES utf8mb4")


def python_render(rows: list[tuple]) -> list[tuple]:
    """What the worker would do without server rendering: one Python call per value."""
    return [(r[0], r[1], r[2], r[3], None if r[4] is None else str(r[4]),
             None if r[5] is None else r[5].strftime("%Y-%m-%dT%H:%M:%S.%f"), r[6],
             r[7], r[8]) for r in rows]


def drain(cursor: Any, render: Callable[[list], list] | None) -> int:
    count = 0
    while rows := cursor.fetchmany(BATCH):
        if render:
            rows = render(rows)
        count += len(rows)
    return count


# -- drivers ------------------------------------------------------------------------------

def pymysql_run(query: str, *, raw: bool = False) -> Iterator[Any]:
    import pymysql
    import pymysql.converters
    import pymysql.cursors
    # raw: keep the encoders (types), drop every decoder (field type numbers)
    extra = {"conv": {k: v for k, v in pymysql.converters.conversions.items()
                      if not isinstance(k, int)}} if raw else {}
    conn = pymysql.connect(host=HOST, port=PORT, user=USER, database=DATABASE,
                           charset="utf8mb4", cursorclass=pymysql.cursors.SSCursor, **extra)
    yield from _run(conn, conn.cursor(), query)


def mysqlclient_run(query: str, *, raw: bool = False) -> Iterator[Any]:
    import MySQLdb
    import MySQLdb.converters
    import MySQLdb.cursors
    extra = {"conv": {k: v for k, v in MySQLdb.converters.conversions.items()
                      if not isinstance(k, int)}} if raw else {}
    conn = MySQLdb.connect(host=HOST, port=PORT, user=USER, database=DATABASE,
                           charset="utf8mb4", **extra)
    yield from _run(conn, conn.cursor(MySQLdb.cursors.SSCursor), query)


def connector_run(query: str, *, raw: bool = False) -> Iterator[Any]:
    import mysql.connector
    conn = mysql.connector.connect(host=HOST, port=PORT, user=USER, database=DATABASE,
                                   charset="utf8mb4", collation="utf8mb4_general_ci",
                                   use_pure=False)
    assert type(conn).__name__ == "CMySQLConnection", "the C extension is not in use"
    yield from _run(conn, conn.cursor(buffered=False, raw=raw), query)


def mariadb_run(query: str, *, raw: bool = False) -> Iterator[Any]:
    import mariadb
    conn = mariadb.connect(host=HOST, port=PORT, user=USER, database=DATABASE)
    yield from _run(conn, conn.cursor(buffered=False), query)


def _run(conn: Any, cursor: Any, query: str) -> Iterator[Any]:
    for statement in SESSION:
        cursor.execute(statement)
    cursor.execute(query)
    try:
        yield cursor
    finally:
        cursor.close()
        conn.close()


VARIANTS: list[tuple[str, str, Callable[..., Iterator[Any]], str, bool, bool]] = [
    # (driver label, module to import, runner, query, python render, raw)
    ("PyMySQL SSCursor, server rendering", "pymysql", pymysql_run, SERVER_SELECT, False, False),
    ("PyMySQL SSCursor, Python rendering", "pymysql", pymysql_run, PLAIN_SELECT, True, False),
    ("PyMySQL SSCursor, raw (conv={})", "pymysql", pymysql_run, PLAIN_SELECT, False, True),
    ("mysqlclient SSCursor, server rendering", "MySQLdb", mysqlclient_run, SERVER_SELECT,
     False, False),
    ("mysqlclient SSCursor, Python rendering", "MySQLdb", mysqlclient_run, PLAIN_SELECT,
     True, False),
    ("mysqlclient SSCursor, raw (conv={})", "MySQLdb", mysqlclient_run, PLAIN_SELECT,
     False, True),
    ("mysql-connector C ext, unbuffered, server rendering", "mysql.connector", connector_run,
     SERVER_SELECT, False, False),
    ("mysql-connector C ext, unbuffered, Python rendering", "mysql.connector", connector_run,
     PLAIN_SELECT, True, False),
    ("mysql-connector C ext, unbuffered, raw=True", "mysql.connector", connector_run,
     PLAIN_SELECT, False, True),
    ("mariadb connector, unbuffered, server rendering", "mariadb", mariadb_run, SERVER_SELECT,
     False, False),
    ("mariadb connector, unbuffered, Python rendering", "mariadb", mariadb_run, PLAIN_SELECT,
     True, False),
]

DATABASE = "liteshift_bench"


def ensure_table(rows: int) -> None:
    import mysql.connector  # liteshift's own driver: always installed
    conn = mysql.connector.connect(host=HOST, port=PORT, user=USER, autocommit=True,
                                   collation="utf8mb4_general_ci")
    with conn.cursor(buffered=True) as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4")
        cur.execute(f"USE `{DATABASE}`")
        cur.execute("SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema = %s AND table_name = %s", (DATABASE, TABLE))
        if cur.fetchone()[0]:
            cur.execute(f"SELECT count(*) FROM {TABLE}")
            if cur.fetchone()[0] == rows:
                conn.close()
                return
        print(f"creating {TABLE} with {rows:,} rows in {DATABASE} ...", flush=True)
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}, _digits")
        cur.execute(CREATE_SQL)
        cur.execute("CREATE TABLE _digits (d int)")
        cur.execute("INSERT INTO _digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)")
        cur.execute(FILL_SQL.replace("%(rows)s", str(int(rows))))
        cur.execute("DROP TABLE _digits")
        cur.execute(f"ANALYZE TABLE {TABLE}")
    conn.close()


def time_cli() -> float:
    command = ["mariadb", f"-h{HOST}", f"-u{USER}", "--quick", "--batch", DATABASE,
               "-e", PLAIN_SELECT]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_variant(runner: Callable[..., Iterator[Any]], query: str, render: bool,
                 raw: bool, rows: int) -> float:
    started = time.perf_counter()
    for cursor in runner(query, raw=raw):
        got = drain(cursor, python_render if render else None)
    elapsed = time.perf_counter() - started
    if got != rows:
        raise SystemExit(f"read {got} rows, expected {rows}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    ensure_table(args.rows)
    floor = statistics.median(time_cli() for _ in range(args.rounds))
    print(f"{'mariadb --quick --batch to /dev/null (read floor)':58} {floor:6.2f} s "
          f"{args.rows / floor:>10,.0f} rows/s")
    for label, module, runner, query, render, raw in VARIANTS:
        try:
            __import__(module)
        except ImportError as exc:
            print(f"{label:58} skipped ({exc})")
            continue
        seconds = statistics.median(time_variant(runner, query, render, raw, args.rows)
                                    for _ in range(args.rounds))
        print(f"{label:58} {seconds:6.2f} s {args.rows / seconds:>10,.0f} rows/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
