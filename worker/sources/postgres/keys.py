"""The SELECT list that streams a PostgreSQL table in the plan's row layout, and its keyset
resume clause.

Driver-free (the SQL is text). The layout is the plan's (worker/core/model.py): the columns'
expressions, then each key column whose converted value cannot be cast back exactly, as
PostgreSQL's text (the checkpoint stores it, and the resume clause casts it back), then the
lossy flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.core import keys as core_keys
from worker.core.identifiers import quote, string_literal
from worker.core.model import TablePlan


def select_list(plan: TablePlan) -> list[str]:
    """Column values, then raw key values for exact resume, then lossy flags."""
    flags = [f"({c.flag_sql})" for c in plan.columns if c.flag_sql]
    return ([c.select_sql for c in plan.columns]
            + [f"{quote(k)}::text" for k, _ in plan.raw_keys] + flags)


def after_clause(key: Sequence[str], key_types: Sequence[str], after: Sequence[Any]) -> str:
    """The rows after the key values `after` (as the checkpoint keeps them: ints or text),
    each cast to its column's type, so the comparison is the column's own order."""
    values = [f"{_text_literal(str(v))}::{t}" for v, t in zip(after, key_types)]
    return core_keys.after_clause([quote(k) for k in key], values)


def _text_literal(text: str) -> str:
    """A string literal read alike whatever standard_conforming_strings says: one holding a
    backslash in the E'' form, its backslashes doubled."""
    if "\\" in text:
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    return string_literal(text)
