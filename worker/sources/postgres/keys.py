"""The SELECT list that streams a PostgreSQL table in the plan's row layout.

Driver-free (the SQL is text). The layout is the plan's (worker/core/model.py): the columns'
expressions, then each key column whose converted value cannot be cast back exactly, as
PostgreSQL's text (the checkpoint stores it, and the resume clause casts it back), then the
lossy flags.
"""

from __future__ import annotations

from worker.core.identifiers import quote
from worker.core.model import TablePlan


def select_list(plan: TablePlan) -> list[str]:
    """Column values, then raw key values for exact resume, then lossy flags."""
    flags = [f"({c.flag_sql})" for c in plan.columns if c.flag_sql]
    return ([c.select_sql for c in plan.columns]
            + [f"{quote(k)}::text" for k, _ in plan.raw_keys] + flags)
