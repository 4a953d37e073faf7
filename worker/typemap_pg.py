"""PostgreSQL → SQLite type mapping, as data: an ordered rule table, first match wins.

Each rule names the SQLite declared type, the SELECT expression that makes the server render
the value (so no per-value Python runs for most types), the binary COPY wire type of that
expression, an optional column converter (see converters.py), and whether it can lose
information. The default output is what ecto_sqlite3 reads back natively
(../shared/TARGET_FORMATS.md): booleans 0/1, JSON text for json and arrays, lowercase UUID
text, ISO 8601 timestamps with `Z` for timestamptz and none for naive timestamps.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from worker.pg_source import PgColumn


@dataclass(frozen=True)
class Rule:
    name: str
    matches: Callable[[PgColumn], bool]
    sqlite_type: Callable[[PgColumn], str]
    select: Callable[[str, PgColumn], str]  # (quoted column, column) -> SQL expression
    wire: str  # psycopg binary COPY type of the expression
    converter: str | None = None  # name in converters.CONVERTERS
    lossy: bool = False
    note: str = ""


def _is(*typnames: str) -> Callable[[PgColumn], bool]:
    return lambda col: col.typname in typnames


def _const(value: str) -> Callable[[PgColumn], str]:
    return lambda col: value


def _precision(col: PgColumn) -> int | None:
    found = re.search(r"\((\d+)", col.type_sql)
    return int(found.group(1)) if found else None


def _decimal_type(col: PgColumn) -> str:
    found = re.search(r"numeric\((\d+),(\d+)\)", col.type_sql)
    return f"DECIMAL({found.group(1)},{found.group(2)})" if found else "DECIMAL"


def _timestamp_sql(zone: str) -> Callable[[str, PgColumn], str]:
    # Ecto's :naive_datetime / :utc_datetime are timestamp(0) on PostgreSQL and write no
    # fraction; the _usec variants are plain timestamp and write exactly six digits.
    # Infinite and BC values have no ISO form: the server's own text keeps them visible.
    def render(c: str, col: PgColumn) -> str:
        fraction = "" if _precision(col) == 0 else ".US"
        value = f"({c} AT TIME ZONE 'UTC')" if zone else c
        fmt = f'YYYY-MM-DD"T"HH24:MI:SS{fraction}{zone}'
        return (f"CASE WHEN isfinite({c}) AND {value} >= '0001-01-01' "
                f"THEN to_char({value}, '{fmt}') ELSE {c}::text END")
    return render


def _time_sql(c: str, col: PgColumn) -> str:
    fraction = "" if _precision(col) == 0 else ".US"
    return f"to_char({c}, 'HH24:MI:SS{fraction}')"


RULES: tuple[Rule, ...] = (
    # bool before the integers: 0/1 is what ecto_sqlite3 (and Rails, Django) read back.
    Rule("boolean", _is("bool"), _const("INTEGER"), lambda c, _: f"{c}::int4::int8", "int8"),
    Rule("integer", _is("int2", "int4", "int8", "oid"), _const("INTEGER"),
         lambda c, _: f"{c}::int8", "int8"),
    Rule("float", _is("float4", "float8"), _const("REAL"), lambda c, _: f"{c}::float8", "float8",
         converter="nan_to_null", lossy=True, note="NaN becomes NULL (SQLite has no NaN)"),
    Rule("decimal", _is("numeric"), _decimal_type, lambda c, _: f"{c}::text", "text",
         converter="numeric_affinity", lossy=True,
         note="stored as SQLite's NUMERIC affinity would (INTEGER or REAL); inexact values "
              "counted"),
    Rule("money", _is("money"), _const("DECIMAL(19,2)"), lambda c, _: f"{c}::numeric::text",
         "text", converter="numeric_affinity", lossy=True),
    Rule("timestamptz", _is("timestamptz"), _const("TEXT"), _timestamp_sql("Z"), "text",
         note="ISO 8601 in UTC with Z (ecto :utc_datetime[_usec])"),
    Rule("timestamp", _is("timestamp"), _const("TEXT"), _timestamp_sql(""), "text",
         note="ISO 8601 without zone (ecto :naive_datetime[_usec])"),
    Rule("date", _is("date"), _const("TEXT"), lambda c, _: f"{c}::text", "text"),
    Rule("time", _is("time"), _const("TEXT"), _time_sql, "text"),
    Rule("json", _is("json", "jsonb"), _const("TEXT"), lambda c, _: f"{c}::text", "text"),
    Rule("uuid", _is("uuid"), _const("TEXT"), lambda c, _: f"{c}::text", "text"),
    Rule("bytea", _is("bytea"), _const("BLOB"), lambda c, _: c, "bytea"),
    # Arrays as JSON arrays (never PostgreSQL's {a,b}); to_json nests multi-dimensional ones.
    Rule("array", lambda col: col.category == "A", _const("TEXT"),
         lambda c, _: f"to_json({c})::text", "text"),
    Rule("text", lambda col: col.category == "S", _const("TEXT"), lambda c, _: f"{c}::text",
         "text"),
    Rule("enum", lambda col: col.typtype == "e", _const("TEXT"), lambda c, _: f"{c}::text",
         "text", note="enum labels as text"),
    # Last: anything else keeps PostgreSQL's canonical text form, and the report says so.
    Rule("text_form", lambda col: True, _const("TEXT"), lambda c, _: f"{c}::text", "text",
         note="no specific rule: PostgreSQL's text form, reported"),
)


def rule_for(column: PgColumn) -> Rule:
    return next(rule for rule in RULES if rule.matches(column))
