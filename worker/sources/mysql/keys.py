"""The SELECT that streams a MySQL table in key order, and its keyset resume clause.

Driver-free (the SQL is text), so it is testable without a server. The row layout is the
plan's (worker/core/model.py): the columns' expressions, then one raw value per key column
whose converted value cannot be cast back exactly (`key_positions` past the columns), then
the lossy flags. Raw key values are what the checkpoint stores (as JSON), so they are ints
or text: binary keys travel as hex, temporal and decimal keys as their canonical text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from worker.core import keys as core_keys
from worker.core.model import TablePlan
from worker.sources.mysql.catalog import BINARY_TYPES, GEOMETRY_TYPES, INTEGER_TYPES

# Key columns whose converted value casts back to the source value as it is (plain ints
# and text): no raw copy needed. The rule names are worker/sources/mysql/typemap.py's.
KEY_SAFE_RULES = {"integer", "unsigned", "text", "year"}
# Types that cannot order a keyset exactly (FLOAT's text form is not its stored value).
UNKEYABLE = ("float", "double", "real", "json", "geometry") + GEOMETRY_TYPES


def backtick(name: str) -> str:
    """`name` as a MySQL identifier: in backticks, any backtick in it doubled (the session
    has no ANSI_QUOTES, so double quotes would make a string)."""
    return "`" + name.replace("`", "``") + "`"


def base_type(type_sql: str) -> str:
    """'bigint(20) unsigned' → 'bigint'; "enum('a')" → 'enum'."""
    return re.split(r"[\s(]", type_sql.strip().lower(), maxsplit=1)[0]


def is_wide(type_sql: str) -> bool:
    """Columns whose values may be large: fetched in byte-bounded batches."""
    kind = base_type(type_sql)
    return kind in ("tinytext", "text", "mediumtext", "longtext", "json", "tinyblob", "blob",
                    "mediumblob", "longblob") + GEOMETRY_TYPES or (
        kind in ("varchar", "varbinary") and _size(type_sql) > 1024)


def _size(type_sql: str) -> int:
    found = re.search(r"\((\d+)", type_sql)
    return int(found.group(1)) if found else 0


def keyable(type_sql: str) -> bool:
    return base_type(type_sql) not in UNKEYABLE


def raw_key_sql(column: str, type_sql: str) -> str:
    """The raw value of a key column, as the checkpoint keeps it."""
    kind, c = base_type(type_sql), backtick(column)
    if kind in BINARY_TYPES:
        return f"HEX({c})"
    if kind in ("enum", "set"):
        return f"({c} + 0)"  # ORDER BY sorts enums by index, not by label
    if kind == "bit":
        return f"CAST({c} AS UNSIGNED)"
    return f"CAST({c} AS CHAR)"  # decimal, date, datetime, timestamp, time: canonical text


def _key_operand(column: str, type_sql: str, raw: bool) -> str:
    """The key column as the resume comparison sees it (same order as ORDER BY column)."""
    if raw and base_type(type_sql) in ("enum", "set"):
        return f"({backtick(column)} + 0)"
    return backtick(column)


def literal(value: Any, type_sql: str, raw: bool) -> str:
    """A key value as SQL. Text goes as a hex literal with a utf8mb4 introducer: it needs no
    escaping, and, being coercible, it takes the column's collation in the comparison."""
    kind = base_type(type_sql)
    if raw and kind in BINARY_TYPES:
        return f"X'{_hex_text(value)}'"
    if isinstance(value, bool) or value is None:
        raise ValueError(f"a key value cannot be {value!r}")
    if kind in INTEGER_TYPES + ("year", "bit") or (raw and kind in ("enum", "set")):
        return str(int(value))  # unsigned values past 2^63-1 arrive as text: int() is exact
    text = _utf8(value)
    if kind == "decimal":
        precision = re.search(r"\((\d+),(\d+)\)", type_sql)
        size = f"({precision.group(1)},{precision.group(2)})" if precision else "(65,30)"
        return f"CAST({text} AS DECIMAL{size})"
    return text


def _utf8(value: Any) -> str:
    data = str(value).encode("utf-8")
    return f"_utf8mb4 X'{data.hex()}'" if data else "''"


def _hex_text(value: Any) -> str:
    text = str(value)
    if not re.fullmatch(r"[0-9A-Fa-f]*", text):
        raise ValueError(f"a binary key's raw value must be hex, not {text!r}")
    return text


def select_sql(plan: TablePlan, after: Sequence[Any] | None) -> str:
    flags = [f"COALESCE({c.flag_sql}, 0)" for c in plan.columns if c.flag_sql]
    expressions = ([c.select_sql for c in plan.columns]
                   + [raw_key_sql(k, t) for k, t in plan.raw_keys] + flags)
    sql = f"SELECT {', '.join(expressions)} FROM {backtick(plan.name)}"
    if plan.key and after is not None:
        sql += " WHERE " + after_clause(plan, after)
    if plan.key:
        sql += " ORDER BY " + ", ".join(backtick(k) for k in plan.key)
    return sql


def after_clause(plan: TablePlan, after: Sequence[Any]) -> str:
    width = len(plan.columns)
    lhs, rhs = [], []
    for name, type_sql, pos, value in zip(plan.key, plan.key_types, plan.key_positions, after):
        raw = pos >= width
        lhs.append(_key_operand(name, type_sql, raw))
        rhs.append(literal(value, type_sql, raw))
    return core_keys.after_clause(lhs, rhs)
