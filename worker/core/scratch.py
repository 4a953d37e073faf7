"""A scratch in-memory SQLite database that every translated statement is tried on.

It holds every table's bare columns (declared types only), so what a source's translator
writes is known to compile in SQLite; what does not is skipped with the SQL that failed and
SQLite's or sqlglot's reason. Views are created in it too, in an order that works.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from worker.core.identifiers import quote
from worker.core.transpile import ExpressionError

ToSqlite = Callable[[str], str]  # a source dialect's SQL -> SQLite's; raises ExpressionError


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

    def expression(self, table: str, expr: str,
                   to_sqlite: ToSqlite) -> tuple[str | None, str]:
        """A source expression over `table`'s columns (a CHECK) in SQLite's SQL, or None
        and the reason."""
        try:
            sql = to_sqlite(expr)
        except ExpressionError as exc:
            return None, str(exc)
        problem = self.expression_error(table, sql)
        return (None, f"SQLite rejects {sql}: {problem}") if problem else (sql, "")


def view_objects(views: list[dict[str, str]], scratch: Scratch,
                 to_sqlite: ToSqlite) -> list[dict[str, Any]]:
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
