"""SQL identifiers, quoted for SQLite."""

from __future__ import annotations


def quote(name: str) -> str:
    """`name` as a double-quoted SQL identifier, any `"` in it doubled.

    The one quoting rule for every name written into SQLite (tables, columns, indexes,
    constraints): names with spaces, mixed case, reserved words and unicode survive. It is
    also PostgreSQL's rule, so the PostgreSQL source uses it in the SQL it sends; MySQL's
    backtick form is `worker.sources.mysql.keys.backtick`.
    """
    return '"' + name.replace('"', '""') + '"'
