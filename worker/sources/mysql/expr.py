"""MySQL expressions and view bodies → SQLite SQL, through sqlglot's mysql dialect.

The catalog writes expressions with backticks (the session has no ANSI_QUOTES) and, in
MySQL 8, with charset introducers (`_utf8mb4'a'`), which are dropped before parsing.
Database qualifiers (`db`.`t`.`c` in view bodies) are dropped: SQLite names tables without
them. Every identifier is quoted on output.
"""

from __future__ import annotations

import re
from typing import Any

from sqlglot import exp

from worker.core import transpile as sql_transpile
from worker.core.scratch import Scratch
from worker.core.scratch import view_objects as scratch_views
from worker.core.transpile import ExpressionError, generate
from worker.sources.mysql import group_concat

_INTRODUCER = re.compile(r"(?<![\w`'])_[a-z][a-z0-9]*\s*(?=')", re.IGNORECASE)

# Nodes a generated column may use for SQLite to compute what MySQL does, on values of the
# same kind (integers, text, booleans, floats). Division (decimal in MySQL, integer in
# SQLite), string functions (Unicode in MySQL, ASCII in SQLite) and the rest are not here.
SAME_NODES = (exp.Column, exp.Identifier, exp.Literal, exp.Null, exp.Boolean, exp.Paren,
              exp.Add, exp.Sub, exp.Mul, exp.Neg, exp.DPipe, exp.Concat, exp.Coalesce,
              exp.Nullif, exp.Case, exp.If, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
              exp.And, exp.Or, exp.Not, exp.Is)


def parse(sql: str) -> exp.Expression:
    return sql_transpile.parse(_INTRODUCER.sub("", sql), dialect="mysql")


def to_sqlite(sql: str) -> str:
    return generate(group_concat.rewrite(_octet_length(_unqualify(parse(sql)))))


def _octet_length(tree: exp.Expression) -> exp.Expression:
    """MariaDB writes LENGTH as octet_length in view bodies, which SQLite has only from 3.43
    on: the length of the value's UTF-8 bytes is the same count."""
    for node in list(tree.find_all(exp.Anonymous)):
        if str(node.this).lower() == "octet_length" and len(node.expressions) == 1:
            node.replace(exp.Length(this=exp.cast(node.expressions[0].copy(), "BLOB")))
    return tree


def literal_value(sql: str) -> str | int | float:
    """A literal default as a Python value (str, int, float), or raise ExpressionError."""
    tree = parse(sql)
    while isinstance(tree, exp.Paren):
        tree = tree.this
    if isinstance(tree, exp.Neg) and isinstance(tree.this, exp.Literal):
        value = literal_value(tree.this.sql(dialect="mysql"))
        if isinstance(value, str):
            raise ExpressionError("not a literal: a negated string")
        return -value
    if isinstance(tree, exp.BitString):
        return int(str(tree.this), 2)
    if isinstance(tree, exp.Literal):
        if tree.is_string:
            return tree.this
        text = tree.this
        return int(text) if re.fullmatch(r"\d+", text) else float(text)
    raise ExpressionError("not a literal")


def same_value_sql(sql: str) -> tuple[str | None, str]:
    """A generated column's expression when SQLite computes the same values, else why not."""
    tree = parse(sql)
    other = sorted({type(node).__name__ for node in tree.walk()
                    if not isinstance(node, SAME_NODES)})
    if other:
        return None, (f"uses {', '.join(other)}, which SQLite may compute differently: "
                      "values copied, the column is a plain one in SQLite")
    return generate(_unqualify(tree)), ""


def columns_used(sql: str) -> set[str]:
    return {col.name for col in parse(sql).find_all(exp.Column)}


def _unqualify(tree: exp.Expression) -> exp.Expression:
    for table in tree.find_all(exp.Table):
        table.set("db", None)
        table.set("catalog", None)
    for column in tree.find_all(exp.Column):
        column.set("db", None)
        column.set("catalog", None)
    return tree


def check_sql(table: str, expr: str, scratch: Scratch) -> tuple[str | None, str]:
    return scratch.expression(table, expr, to_sqlite)


def view_objects(views: list[dict[str, str]], scratch: Scratch) -> list[dict[str, Any]]:
    return scratch_views(views, scratch, lambda sql: to_sqlite(sql.strip().rstrip(";")))
