"""Apply a batch of source changes to the followed SQLite file: one transaction per batch,
with the position it reaches (worker/follow/position.py).

Every change is applied by its key: the row the key names is read (its hash leaves the
table's checksum), deleted, and the new row inserted and read back (its hash joins the
checksum), which is how the copy's checksums are computed too (worker/core/checksum.py: a
sum of row hashes, so rows leave and join it in any order). An update that did not send a
value (PostgreSQL's unchanged TOASTed columns) keeps the stored one. Foreign keys are not
enforced while applying: a batch may end inside a source transaction; cutover checks them
once the file has caught up.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.core.checksum import MASK, rows_checksum
from worker.core.errors import TargetError
from worker.core.identifiers import quote
from worker.core.model import TablePlan
from worker.follow import position
from worker.follow.changes import Converted, Position, Row, Truncate, add_lossy

Convert = Callable[[str, Sequence[list[str | None]]], Converted]


@dataclass
class Batch:
    """Changes read since the last commit, and the place they reach."""

    items: list[Row | Truncate] = field(default_factory=list)
    position: Position | None = None  # of the last change in items, or a whole transaction
    resume: int | None = None  # the last whole transaction's release point
    rows: int = 0

    def add(self, item: Row | Truncate, at: Position) -> None:
        self.items.append(item)
        self.position = at
        self.rows += 1


@dataclass
class Lossy:
    """What a batch does to the tables' lossy counts: the values its rows wrote that could
    not be stored exactly are added, and a table it truncated starts again from zero (its
    counted values are gone; rows written before the truncation in the batch are not
    counted). Values an update or delete replaces stay counted: the count is of values
    written inexactly, which the file cannot tell apart once stored."""

    added: dict[str, dict[str, int]] = field(default_factory=dict)
    emptied: set[str] = field(default_factory=set)


class Applier:
    def __init__(self, db: sqlite3.Connection, plans: Sequence[TablePlan]):
        self.db = db
        self.plans = {p.name: p for p in plans}
        self._sql = {p.name: _Statements(p) for p in plans}

    def apply(self, batch: Batch, convert: Convert, followed: position.Followed) -> int:
        """Commit the batch's changes and its position; returns how many were applied."""
        new, old, lossy = self._convert(batch.items, convert)
        counts = position.counts(self.db)
        touched: dict[str, tuple[int, int]] = {}
        try:
            with self.db:
                position.fence(self.db, followed.token)
                for n, item in enumerate(batch.items):
                    if isinstance(item, Truncate):
                        for table in item.tables:
                            self.db.execute(f"DELETE FROM {quote(table)}")
                            touched[table] = counts[table] = (0, 0)
                        continue
                    table = item.table
                    rows, checksum = self._row(item, new.get(n), old.get(n), *counts[table])
                    touched[table] = counts[table] = (rows, checksum)
                followed.changes += len(batch.items)
                if batch.position is not None:
                    followed.position = batch.position
                if batch.resume is not None:
                    followed.resume = batch.resume
                position.save(self.db, followed, touched, lossy.added, emptied=lossy.emptied)
        except sqlite3.IntegrityError as exc:
            raise TargetError(f"a change from the source breaks a constraint in SQLite "
                              f"({exc}); the follow stops") from None
        return len(batch.items)

    def _convert(self, items: list[Row | Truncate], convert: Convert,
                 ) -> tuple[dict[int, tuple], dict[int, tuple], Lossy]:
        """Every row's values converted, one conversion per table, side and truncation;
        and the lossy counts the batch leaves in each table (see Lossy)."""
        wanted: dict[tuple[str, str, int], list[tuple[int, list[str | None]]]] = {}
        emptied: dict[str, int] = {}  # table -> truncations so far in the batch
        for n, item in enumerate(items):
            if isinstance(item, Truncate):
                for table in item.tables:
                    emptied[table] = emptied.get(table, 0) + 1
                continue
            cut = emptied.get(item.table, 0)
            if item.new is not None:
                wanted.setdefault((item.table, "new", cut), []).append((n, item.new))
            if item.old is not None:
                wanted.setdefault((item.table, "old", cut), []).append((n, item.old))
        new: dict[int, tuple] = {}
        old: dict[int, tuple] = {}
        lossy = Lossy(emptied=set(emptied))
        for (table, side, cut), rows in wanted.items():
            converted = convert(table, [values for _, values in rows])
            (new if side == "new" else old).update(
                zip((n for n, _ in rows), converted.rows, strict=True))
            if side == "new" and cut == emptied.get(table, 0):
                add_lossy(lossy.added.setdefault(table, {}), converted.lossy)
        return new, old, lossy

    def _row(self, item: Row, new: tuple | None, old: tuple | None, rows: int,
             checksum: int) -> tuple[int, int]:
        statements = self._sql[item.table]
        key = statements.key_of(old if old is not None else new)
        stored = self.db.execute(statements.select, key).fetchone()
        if stored is not None:
            self.db.execute(statements.delete, key)
            rows, checksum = rows - 1, (checksum - rows_checksum([stored])) & MASK
        if item.kind == "delete" or new is None:
            return rows, checksum
        if item.unchanged and stored is not None:
            new = tuple(stored[i] if i in item.unchanged else v for i, v in enumerate(new))
        self.db.execute(statements.insert, new)
        written = self.db.execute(statements.select, statements.key_of(new)).fetchone()
        return rows + 1, (checksum + rows_checksum([written])) & MASK


class _Statements:
    """A table's statements by key, in the columns' planned order."""

    def __init__(self, plan: TablePlan):
        names = [c.name for c in plan.columns]
        columns = ", ".join(map(quote, names))
        where = " AND ".join(f"{quote(k)} = ?" for k in plan.key)
        table = quote(plan.name)
        self.select = f"SELECT {columns} FROM {table} WHERE {where}"
        self.delete = f"DELETE FROM {table} WHERE {where}"
        self.insert = (f"INSERT INTO {table} ({columns}) "
                       f"VALUES ({', '.join('?' for _ in names)})")
        self._key = [names.index(k) for k in plan.key]

    def key_of(self, row: tuple | None) -> list[Any]:
        assert row is not None
        return [row[i] for i in self._key]
