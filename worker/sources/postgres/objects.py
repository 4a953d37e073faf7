"""SQL for the schema objects around the data: defaults, CHECKs, generated columns, indexes,
views. Each translation is tried on a scratch in-memory SQLite database holding the tables'
bare columns, so what we write is known to compile in SQLite; what does not is skipped with
the SQL that failed and SQLite's or sqlglot's reason.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any

from worker.core.identifiers import quote
from worker.core.profiles import ColumnContext
from worker.core.transpile import ExpressionError
from worker.sources.postgres import expr as pg_expr
from worker.sources.postgres.source import PgColumn
from worker.sources.postgres.values import ISO_PROFILES, precision


class Scratch:
    """An in-memory SQLite database with every table's columns (declared types only)."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:", isolation_level=None)

    def add_table(self, name: str, columns: list[tuple[str, str]]) -> None:
        body = ", ".join(f"{quote(c)} {t}" for c, t in columns)
        self.db.execute(f"CREATE TABLE {quote(name)} ({body})")

    def error(self, statement: str) -> str | None:
        """SQLite's complaint about a statement, or None when it runs (effects are kept:
        later views may depend on earlier ones)."""
        try:
            self.db.execute(statement)
            return None
        except sqlite3.Error as exc:
            return str(exc)

    def expression_error(self, table: str, expression: str) -> str | None:
        return self.error(f"SELECT {expression} FROM {quote(table)} LIMIT 0")


# -- defaults ---------------------------------------------------------------------------

_NOW = re.compile(r"^(now\(\)|CURRENT_TIMESTAMP|transaction_timestamp\(\)|LOCALTIMESTAMP|"
                  r"statement_timestamp\(\)|clock_timestamp\(\))$", re.IGNORECASE)
_UUID_FUNCTIONS = ("gen_random_uuid()", "uuid_generate_v4()", "uuid_generate_v1()")
# Rules whose stored value is the PostgreSQL literal's own text (or number): a literal
# default carries over unchanged.
_LITERAL_RULES = {"text", "enum", "citext", "bpchar", "json", "decimal", "decimal_text",
                  "integer", "float", "date", "network", "bit", "xml", "range", "timetz",
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
    if rule in _LITERAL_RULES and re.fullmatch(r"'(?:[^']|'')*'|-?\d+(\.\d+)?", tree):
        return tree
    return None


def _now_default(col: PgColumn, rule: str, ctx: ColumnContext) -> str:
    """The current time as the column's rule writes times, so new rows compare with old."""
    if rule == "date":
        return "CURRENT_DATE"
    timestamp = rule in ("timestamp", "timestamptz", "utc_datetime", "naive_datetime")
    if not timestamp or ctx.profile not in ISO_PROFILES:
        return "CURRENT_TIMESTAMP"  # YYYY-MM-DD HH:MM:SS, as rails and django write
    utc = rule in ("timestamptz", "utc_datetime") or (rule == "timestamp" and ctx.utc_timestamps)
    zone = " || 'Z'" if utc else ""
    if ctx.profile == "ecto" and precision(col) != 0:
        # SQLite's clock has milliseconds: %f is SS.SSS, padded to Ecto's six digits.
        return f"(strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000'{zone})"
    return f"(strftime('%Y-%m-%dT%H:%M:%S', 'now'){zone})"


# -- CHECKs and generated columns -------------------------------------------------------

def check_sql(table: str, expr: str, scratch: Scratch, *,
              value_as: str | None = None) -> tuple[str | None, str]:
    try:
        sql = pg_expr.to_sqlite(expr, value_as=value_as)
    except ExpressionError as exc:
        return None, str(exc)
    problem = scratch.expression_error(table, sql)
    return (None, f"SQLite rejects {sql}: {problem}") if problem else (sql, "")


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

def view_objects(views: list[dict[str, str]], scratch: Scratch, *,
                 to_sqlite: Callable[[str], str] = pg_expr.view_to_sqlite
                 ) -> list[dict[str, Any]]:
    """Transpile every view and create it in the scratch database; a view that depends on
    another is retried until no more succeed, so definition order does not matter."""
    pending: dict[str, dict[str, Any]] = {}
    objects: dict[str, dict[str, Any]] = {}
    for view in views:
        base = {"kind": "view", "name": view["name"], "source_sql": view["sql"].strip()}
        try:
            body = to_sqlite(view["sql"])
        except ExpressionError as exc:
            objects[view["name"]] = {**base, "fate": "skipped", "reason": str(exc)}
            continue
        pending[view["name"]] = {**base, "sql": f"CREATE VIEW {quote(view['name'])} AS {body}"}
    order: list[str] = []
    while pending:
        problems = {}
        for name, obj in list(pending.items()):
            problem = scratch.error(obj["sql"]) or scratch.error(
                f"SELECT * FROM {quote(name)} LIMIT 0")
            if problem:
                scratch.error(f"DROP VIEW IF EXISTS {quote(name)}")
                problems[name] = problem
            else:
                objects[name] = {**pending.pop(name), "fate": "translated"}
                order.append(name)
        if len(problems) == len(pending):
            for name, problem in problems.items():
                objects[name] = {**pending.pop(name), "fate": "skipped",
                                 "reason": f"SQLite rejects the transpiled view: {problem}"}
    return [objects[n] for n in order] + [o for n, o in objects.items() if n not in order]
