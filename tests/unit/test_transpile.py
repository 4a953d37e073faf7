"""Defaults, CHECKs and views transpiled to SQLite (sqlglot), from both sources, and checked
on an in-memory SQLite where the result must run."""

from __future__ import annotations

import sqlite3

import pytest

from worker.core.transpile import ExpressionError
from worker.sources.mysql import expr as mysql_expr
from worker.sources.postgres import expr as pg_expr


@pytest.mark.parametrize(("postgres", "sqlite"), [
    ("lower(name) = 'x'", "LOWER(\"name\") = 'x'"),
    ("price > 0 AND qty IS NOT NULL", '"price" > 0 AND "qty" IS NOT NULL'),
    ("created_at > now()", '"created_at" > CURRENT_TIMESTAMP'),
    ("coalesce(a, 0) + 1", 'COALESCE("a", 0) + 1'),
    ("x::text || 'a'", "CAST(\"x\" AS TEXT) || 'a'"),
])
def test_postgres_expressions_become_sqlite_with_every_identifier_quoted(postgres, sqlite):
    assert pg_expr.to_sqlite(postgres) == sqlite


@pytest.mark.parametrize(("mysql", "sqlite"), [
    ("`price` > 0", '"price" > 0'),
    ("concat(`a`, 'b')", "\"a\" || 'b'"),
    ("if(`a` > 1, 'x', 'y')", "IIF(\"a\" > 1, 'x', 'y')"),
])
def test_mysql_expressions_become_sqlite(mysql, sqlite):
    assert mysql_expr.to_sqlite(mysql) == sqlite


def test_mysql_default_literals_are_read_as_values():
    assert mysql_expr.literal_value("'it''s'") == "it's"
    assert mysql_expr.literal_value("42") == 42 and mysql_expr.literal_value("1.5") == 1.5


def test_a_postgres_view_runs_on_sqlite():
    view = pg_expr.view_to_sqlite("SELECT id, lower(name) AS n FROM users WHERE active")
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE users (id INTEGER, name TEXT, active INTEGER)")
    db.execute("INSERT INTO users VALUES (1, 'Ann', 1), (2, 'Bob', 0)")

    assert db.execute(view).fetchall() == [(1, "ann")]


def test_what_sqlglot_cannot_parse_is_an_expression_error_with_the_reason():
    with pytest.raises(ExpressionError, match="cannot parse"):
        pg_expr.to_sqlite("price >")
