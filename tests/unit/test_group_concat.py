"""MySQL's ordered and DISTINCT GROUP_CONCAT, rewritten for SQLite 3.40, on an in-memory
SQLite: the values, their order and their separator as MySQL gives them."""

from __future__ import annotations

import sqlite3

import pytest

from worker.sources.mysql.expr import to_sqlite

ROWS = [(1, "b", 2), (1, "a", 1), (1, "b", 5), (1, None, 0), (2, "z", 1), (2, "y", 3),
        (3, None, 1)]


@pytest.mark.parametrize(("mysql", "expected"), [
    ("SELECT g AS g, GROUP_CONCAT(x ORDER BY o DESC SEPARATOR '|') AS xs FROM t GROUP BY g",
     [(1, "b|b|a"), (2, "y|z"), (3, None)]),
    ("SELECT g AS g, GROUP_CONCAT(DISTINCT x ORDER BY o SEPARATOR '; ') AS xs FROM t "
     "WHERE o > 0 GROUP BY g", [(1, "a; b"), (2, "z; y"), (3, None)]),
    ("SELECT g AS g, GROUP_CONCAT(DISTINCT x SEPARATOR ',') AS xs FROM t GROUP BY g",
     [(1, "a,b"), (2, "y,z"), (3, None)]),
    ("SELECT (SELECT GROUP_CONCAT(x ORDER BY x SEPARATOR '') FROM t u WHERE u.g = t.g) AS s "
     "FROM t WHERE o = 1", [("abb",), ("yz",), (None,)]),
])
def test_ordered_group_concat_runs_on_sqlite_340_as_on_mysql(mysql, expected):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (g, x, o)")
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", ROWS)
    sql = to_sqlite(mysql)
    assert "ORDER BY" not in sql.split("GROUP_CONCAT(")[-1].split(")")[0]
    assert sorted(db.execute(sql).fetchall(), key=repr) == sorted(expected, key=repr)


def test_mariadb_octet_length_is_the_utf8_byte_count():
    db = sqlite3.connect(":memory:")
    assert db.execute(to_sqlite("SELECT octet_length('héllo')")).fetchone() == (6,)
