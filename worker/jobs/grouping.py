"""Which tables share a copy task and a work file.

A table has a fixed cost beside its rows: a task, a source connection, a work file created,
synced and closed, a merge. For an app's many small tables that cost is most of the job, so
small tables (by the source's own size, from the plan) are copied in groups: one task copies
a group's tables one after another over one source connection, into one work file, which
finalize merges in one step. Each table keeps its own lease, checkpoint row and progress, so
a table of a group resumes, retries and fails alone.
"""

from __future__ import annotations

import math

from worker.core.model import TablePlan

#: Groups a job's small tables are spread over at least (when it has enough of them), so
#: that the workers' processes share them instead of one task copying them all.
MIN_GROUPS = 4
#: Fewer small tables than this are not worth a group each.
MIN_GROUP_TABLES = 8


def group_small_tables(tables: list[TablePlan], *, table_bytes: int,
                       max_tables: int) -> list[list[str]]:
    """The job's copy units in the order to queue them: each big table alone, then the
    groups of small ones. Sets each grouped table's `file` to its group's work file."""
    small = [t for t in tables if t.size_bytes <= table_bytes] if table_bytes > 0 else []
    if len(small) < 2:
        return [[t.name] for t in tables]
    count = max(math.ceil(len(small) / max_tables),
                min(MIN_GROUPS, len(small) // MIN_GROUP_TABLES), 1)
    size = math.ceil(len(small) / count)
    groups = [small[start:start + size] for start in range(0, len(small), size)]
    for number, group in enumerate(groups, start=1):
        for table in group:
            table.file = f"group{number:05d}.db"
    grouped = {t.name for t in small}
    return [[t.name] for t in tables if t.name not in grouped] + [
        [t.name for t in group] for group in groups]


def units(tables: list[TablePlan]) -> list[list[str]]:
    """The copy units of planned tables, from their work files: tables sharing a file are
    one unit (a resumed or rebuilt job queues its groups again as groups)."""
    files: dict[str, list[str]] = {}
    for table in tables:
        files.setdefault(table.file, []).append(table.name)
    return list(files.values())
