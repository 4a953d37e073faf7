"""The sqlglot core shared by the PostgreSQL and MySQL expression translators."""

from __future__ import annotations

from typing import cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError


class ExpressionError(ValueError):
    """Raised when an expression cannot be transpiled to SQLite."""


def parse(sql: str, *, dialect: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except SqlglotError as exc:
        raise ExpressionError(f"sqlglot cannot parse it: {first_line(exc)}") from None
    if tree is None:
        raise ExpressionError("empty expression")
    return cast(exp.Expression, tree)


def generate(tree: exp.Expression) -> str:
    """SQLite SQL with every identifier quoted; anything SQLite cannot express raises."""
    try:
        return tree.sql(dialect="sqlite", identify=True, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise ExpressionError(f"no SQLite form: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
