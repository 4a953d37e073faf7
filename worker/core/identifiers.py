"""SQL identifiers, quoted for SQLite (and PostgreSQL: the rule is the same)."""

from __future__ import annotations


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
