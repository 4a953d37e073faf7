"""SQL for the schema objects around the data: defaults, CHECKs, generated columns, indexes,
views. Each translation is tried on the scratch SQLite database (worker/core/scratch.py), so
what we write is known to compile in SQLite; what does not is skipped with the SQL that
failed and SQLite's or sqlglot's reason.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from worker.core.ddl import now_sql
from worker.core.identifiers import quote
from worker.core.profiles import ColumnContext
from worker.core.scratch import Scratch
from worker.core.scratch import view_objects as scratch_views
from worker.core.transpile import ExpressionError
from worker.sources.postgres import expr as pg_expr
from worker.sources.postgres.source import PgColumn
from worker.sources.postgres.values import precision

# -- defaults ---------------------------------------------------------------------------

_NOW = re.compile(r"^(now\(\)|CURRENT_TIMESTAMP|transaction_timestamp\(\)|LOCALTIMESTAMP|"
                  r"statement_timestamp\(\)|clock_timestamp\(\))$", re.IGNORECASE)
_UUID_FUNCTIONS = ("gen_random_uuid()", "uuid_generate_v4()", "uuid_generate_v1()")
# Rules whose stored value is the PostgreSQL literal's own text (or number): a literal
# default carries over unchanged.
_LITERAL_RULES = {"text", "enum", "citext", "bpchar", "json", "decimal", "decimal_text",
                  "integer", "float", "date", "network", "inet", "bit", "xml", "range", "timetz",
                  "override_text", "text_form", "geometric", "tsvector", "interval", "uuid"}


def default_sql(col: PgColumn, rule: str, ctx: ColumnContext, *, rowid: bool,
                scratch: Scratch) -> tuple[str | None, str]:
    """(SQLite DEFAULT expression or None, the reason when None)."""
    expr = (col.default or "").strip()
    if expr.startswith("nextval("):
        if rowid:
            return None, "sequence default: the INTEGER PRIMARY KEY (rowid) gives new ids"
        return None, ("sequence default on a column that is not the table's single integer "
                      "primary key: SQLite has no sequences, the app must supply values")
    if expr in _UUID_FUNCTIONS:
        return None, "SQLite has no UUID generator: the app must supply the value"
    if _NOW.match(expr):
        return _now_default(col, rule, ctx), ""
    if expr.upper() in ("CURRENT_DATE", "CURRENT_TIME"):
        return expr.upper(), ""
    try:
        tree = pg_expr.to_sqlite(expr)
    except ExpressionError as exc:
        return None, str(exc)
    literal = _literal(tree, rule, ctx)
    if literal is not None:
        return literal, ""
    if tree.startswith("'") and rule not in _LITERAL_RULES:
        return None, f"a literal in the {rule} rule's format is not rewritten: set it in the app"
    problem = scratch.error(f"SELECT ({tree})")
    if problem:
        return None, f"SQLite cannot evaluate {tree}: {problem}"
    return f"({tree})", ""


def _literal(tree: str, rule: str, ctx: ColumnContext) -> str | None:
    if rule == "boolean" and tree.upper() in ("TRUE", "FALSE"):
        return "1" if tree.upper() == "TRUE" else "0"
    if rule == "array" and tree == "'{}'":
        return "'[]'"  # the empty array, in JSON
    if rule == "uuid" and ctx.profile == "django" and tree.startswith("'"):
        return tree.replace("-", "")
    if rule == "interval" and ctx.profile == "django":
        return None
    if rule == "inet" and re.fullmatch(r"'[0-9A-Fa-f:.]+/\d+'", tree):
        return f"'{_address(tree[1:-1])}'"  # as the rule writes values: abbrev()
    if rule in _LITERAL_RULES and re.fullmatch(r"'(?:[^']|'')*'|-?\d+(\.\d+)?", tree):
        return tree
    return None


def _address(text: str) -> str:
    """An inet literal as abbrev() writes it: the address alone when its mask is full."""
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        return text
    full = interface.network.prefixlen == interface.max_prefixlen
    return str(interface.ip) if full else text


def _now_default(col: PgColumn, rule: str, ctx: ColumnContext) -> str:
    """The current time as the column's rule writes times, so new rows compare with old."""
    if rule == "date":
        return "CURRENT_DATE"
    if rule not in ("timestamp", "timestamptz", "utc_datetime", "naive_datetime"):
        return "CURRENT_TIMESTAMP"
    utc = rule in ("timestamptz", "utc_datetime") or (rule == "timestamp" and ctx.utc_timestamps)
    return now_sql(ctx.profile, utc=utc, fraction=precision(col) != 0)


# -- CHECKs and generated columns -------------------------------------------------------

def check_sql(table: str, expr: str, scratch: Scratch, *,
              value_as: str | None = None) -> tuple[str | None, str]:
    return scratch.expression(table, expr, lambda e: pg_expr.to_sqlite(e, value_as=value_as))


# Rules whose SQLite values compute like PostgreSQL's under the operators SQLite shares.
_SAME_VALUE_RULES = {"integer", "text", "citext", "enum", "boolean", "float"}


def generated_sql(table: str, col: PgColumn, rules: dict[str, str],
                  scratch: Scratch) -> tuple[str | None, str]:
    """A stored generated column's expression for SQLite, or why its values are copied."""
    try:
        sql = pg_expr.to_sqlite(col.default or "")
        used = pg_expr.columns_used(col.default or "")
        functions = pg_expr.functions_used(col.default or "")
    except ExpressionError as exc:
        return None, str(exc)
    differ = sorted(c for c in used | {col.name} if rules.get(c) not in _SAME_VALUE_RULES)
    if differ:
        return None, (f"over columns whose SQLite values differ in kind ({', '.join(differ)}): "
                      "values copied, the column is a plain one in SQLite")
    if functions:
        return None, (f"uses {', '.join(functions)}, which SQLite may compute differently: "
                      "values copied, the column is a plain one in SQLite")
    problem = scratch.expression_error(table, sql)
    if problem:
        return None, f"SQLite rejects {sql}: {problem}"
    return sql, ""


# -- indexes ----------------------------------------------------------------------------

def index_sql(table: str, ix: dict[str, Any], scratch: Scratch) -> tuple[str | None, str]:
    if ix["constraint"] == "x":
        return None, "exclusion constraint: SQLite has none"
    if ix["method"] not in ("btree", "hash"):
        return None, f"{ix['method']} index: SQLite has only b-tree indexes"
    keys = []
    try:
        for text, column, desc in zip(ix["keys"], ix["column_names"], ix["desc"]):
            key = quote(column) if column else f"({pg_expr.to_sqlite(text)})"
            keys.append(key + (" DESC" if desc else ""))
        where = f" WHERE {pg_expr.to_sqlite(ix['where'])}" if ix["where"] else ""
    except ExpressionError as exc:
        return None, str(exc)
    sql = (f"CREATE {'UNIQUE ' if ix['unique'] else ''}INDEX {quote(ix['name'])} "
           f"ON {quote(table)} ({', '.join(keys)}){where}")
    problem = scratch.error(sql)
    return (None, f"SQLite rejects {sql}: {problem}") if problem else (sql, "")


# -- views ------------------------------------------------------------------------------

def view_objects(views: list[dict[str, str]], scratch: Scratch) -> list[dict[str, Any]]:
    return scratch_views(views, scratch, pg_expr.view_to_sqlite)
