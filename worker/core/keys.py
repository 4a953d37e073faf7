"""The chunk key: which columns order a table for keyset reads, where their values sit in
a fetched row, and the clause that resumes after a key.

A table is read in key order and each chunk commits with its last key; a resumed copy reads
the rows after that key. Both sources choose the key and lay it out here; each writes the
SQL for its values in its own dialect (worker/sources/*/keys.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from worker.core.model import ColumnPlan


def chunk_key(primary_key: Sequence[str], candidates: Sequence[Sequence[str | None]], *,
              not_null: Collection[str],
              orders_exactly: Callable[[str], bool]) -> tuple[list[str], str]:
    """The primary key, else the shortest candidate (a unique constraint or index) over
    NOT NULL columns, every column one whose type orders a keyset exactly; else no key (the
    table is copied in one pass, and restarted from zero if interrupted).
    Returns (key columns, key kind: "primary_key", "unique" or "none")."""
    if primary_key and all(orders_exactly(c) for c in primary_key):
        return list(primary_key), "primary_key"
    for columns in sorted(candidates, key=len):
        if columns and all(c is not None and c in not_null and orders_exactly(c)
                           for c in columns):
            return [c for c in columns if c is not None], "unique"
    return [], "none"


def key_positions(key: Sequence[str], columns: Sequence[ColumnPlan],
                  read_as_is: Callable[[ColumnPlan], bool]) -> list[int]:
    """Where each key value sits in a fetched row: its column when the value as read
    (before any converter) casts back to the source value exactly (`read_as_is`), else a
    raw copy of the key column after the columns, in key order."""
    by_name = {c.name: (i, c) for i, c in enumerate(columns)}
    positions, extra = [], 0
    for name in key:
        i, plan = by_name[name]
        if read_as_is(plan):
            positions.append(i)
        else:
            positions.append(len(columns) + extra)
            extra += 1
    return positions


def after_clause(operands: Sequence[str], values: Sequence[str]) -> str:
    """The rows after a key: `a > x`, or for a key of several columns `(a, b) > (x, y)`,
    the row-value comparison, which follows the same order as ORDER BY a, b."""
    if len(operands) == 1:
        return f"{operands[0]} > {values[0]}"
    return f"({', '.join(operands)}) > ({', '.join(values)})"
