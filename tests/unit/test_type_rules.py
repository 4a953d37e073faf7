"""Both sources' type rules: which rule a column takes, per profile and option, and what it
declares in SQLite. First match wins, so these also pin the rules' order."""

from __future__ import annotations

import pytest

from worker.core.profiles import ColumnContext
from worker.sources.mysql import typemap as mysql_typemap
from worker.sources.mysql.catalog import MyColumn
from worker.sources.postgres import typemap as pg_typemap
from worker.sources.postgres.source import PgColumn

ECTO, RAILS, DJANGO = ColumnContext(), ColumnContext(profile="rails"), \
    ColumnContext(profile="django")
EXACT = ColumnContext(exact_decimals=True)


def pg(type_sql: str, typname: str, category: str = "N", **extra) -> PgColumn:
    return PgColumn(name="c", type_sql=type_sql, typname=typname, typtype="b",
                    category=category, nullable=True, default=None, generated="", identity="",
                    **extra)


def my(data_type: str, type_sql: str, **extra) -> MyColumn:
    return MyColumn(name="c", data_type=data_type, type_sql=type_sql, nullable=True,
                    default=None, extra="", **extra)


@pytest.mark.parametrize(("column", "ctx", "rule", "declared", "lossy"), [
    (pg("boolean", "bool", "B"), ECTO, "boolean", "INTEGER", False),
    (pg("boolean", "bool", "B"), RAILS, "boolean", "boolean", False),
    (pg("integer", "int4"), ECTO, "integer", "INTEGER", False),
    (pg("numeric(12,2)", "numeric"), ECTO, "decimal", "DECIMAL(12,2)", True),
    (pg("numeric(12,2)", "numeric"), RAILS, "decimal", "decimal(12,2)", True),
    (pg("numeric(12,2)", "numeric"), EXACT, "decimal_text", "TEXT", False),
    (pg("timestamp with time zone", "timestamptz", "D"), ECTO, "timestamptz", "TEXT", True),
    (pg("timestamp with time zone", "timestamptz", "D"), RAILS, "timestamptz",
     "datetime(6)", True),
    (pg("jsonb", "jsonb", "U"), ECTO, "json", "TEXT", False),
    (pg("text[]", "_text", "A", element="text"), ECTO, "array", "TEXT", False),
    (pg("uuid", "uuid", "U"), ECTO, "uuid", "TEXT", False),
    (pg("uuid", "uuid", "U"), RAILS, "uuid", "varchar", False),
    (pg("citext", "citext", "S"), ECTO, "citext", "TEXT COLLATE NOCASE", False),
    (pg("inet", "inet", "I"), ECTO, "inet", "TEXT", False),
])
def test_postgres_columns_take_the_first_matching_rule(column, ctx, rule, declared, lossy):
    taken = pg_typemap.rule_for(column, ctx)

    assert (taken.name, taken.sqlite_type(column, ctx), taken.lossy) == (rule, declared, lossy)


@pytest.mark.parametrize(("column", "ctx", "rule", "declared", "converter"), [
    (my("tinyint", "tinyint(1)"), ECTO, "boolean", "INTEGER", None),
    (my("tinyint", "tinyint(1)"), DJANGO, "boolean", "bool", None),
    (my("bigint", "bigint(20) unsigned"), ECTO, "unsigned", "", "unsigned_text"),
    (my("datetime", "datetime(6)", fsp=6), ECTO, "datetime", "TEXT", "off_calendar_null"),
    (my("datetime", "datetime(6)", fsp=6), DJANGO, "datetime", "datetime", "off_calendar_null"),
    (my("enum", "enum('x','y')", labels=["x", "y"]), ECTO, "enum", "TEXT", None),
    (my("set", "set('a','b')", labels=["a", "b"]), ECTO, "set", "TEXT", "set_json"),
    (my("varchar", "varchar(10)", collation="utf8mb4_general_ci", length=10), ECTO, "text",
     "TEXT COLLATE NOCASE", None),
    (my("varchar", "varchar(10)", collation="utf8mb4_general_ci", length=10), DJANGO, "text",
     "varchar(10) COLLATE NOCASE", None),
    (my("binary", "binary(16)", length=16), ECTO, "binary", "BLOB", None),
    (my("decimal", "decimal(10,2)", precision=10, scale=2), ECTO, "decimal",
     "DECIMAL(10,2)", "numeric_affinity"),
])
def test_mysql_columns_take_the_first_matching_rule(column, ctx, rule, declared, converter):
    taken = mysql_typemap.rule_for(column, ctx)

    assert (taken.name, taken.sqlite_type(column, ctx), taken.converter_for(column, ctx)) == \
        (rule, declared, converter)


def test_an_override_wins_over_the_column_type():
    column = pg("numeric(12,2)", "numeric")

    assert pg_typemap.rule_for(column, ColumnContext(override="text")).name == "override_text"
