"""SQL identifiers and string literals, quoted for SQLite."""

from __future__ import annotations

# The table in each work file that holds its checkpoint (worker/sqlite/workfile.py): no
# source table may have its name (worker/core/names.py).
CHECKPOINT_TABLE = "_liteshift_checkpoint"


def quote(name: str) -> str:
    """`name` as a double-quoted SQL identifier, any `"` in it doubled.

    The one quoting rule for every name written into SQLite (tables, columns, indexes,
    constraints): names with spaces, mixed case, reserved words and unicode survive. It is
    also PostgreSQL's rule, so the PostgreSQL source uses it in the SQL it sends; MySQL's
    backtick form is `worker.sources.mysql.keys.backtick`.
    """
    return '"' + name.replace('"', '""') + '"'


def string_literal(text: str) -> str:
    """`text` as a single-quoted SQL string literal, any `'` in it doubled (SQLite's rule,
    and standard SQL's)."""
    return "'" + text.replace("'", "''") + "'"
