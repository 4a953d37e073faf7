"""What a source's change stream gives the follower: the same events for both source kinds.

A source reader (worker/sources/postgres/changes.py, worker/sources/mysql/changes.py) turns
its stream into these, in commit order: a transaction's `Begin`, its row changes and
truncations in the order the source applied them, its `Commit`. Values are the source's own
text forms, not yet converted: the reader converts them through the plan's column rules
(`ChangeStream.convert`), the same way the copy converts a table's rows.

A change's place in the stream is `(txn, ordinal)`: the transaction's position in the
source's log (PostgreSQL: its commit record's LSN; MySQL: the binlog coordinates of its
first event) and the change's rank inside it. Transactions come in commit order and a
transaction's changes always in the same order, so this pair orders every change, and a
follower resumed from the pair it recorded skips exactly what it already applied, even when
its last batch ended inside a big transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.core.model import TablePlan
from worker.sqlite.chunks import make_chunks

#: The ordinal recorded once a whole transaction is applied: above any change's.
WHOLE = 2**62

Position = tuple[int, int]  # (txn, ordinal)
START: Position = (0, 0)  # nothing applied yet: everything the stream gives is new


@dataclass
class Begin:
    txn: int
    committed_at: float | None  # the source's commit time (epoch seconds), for the lag


@dataclass
class Row:
    """One row changed. `new` and `old` hold every planned column's source text (None for
    NULL); `old` is only the key's values (other entries None), and only when the key
    changed or the row went away; `unchanged` names columns whose value the source did not
    send because it did not change (PostgreSQL's TOASTed values)."""

    table: str
    kind: str  # "insert" | "update" | "delete"
    new: list[str | None] | None = None
    old: list[str | None] | None = None
    unchanged: frozenset[int] = field(default_factory=frozenset)


@dataclass
class Truncate:
    tables: list[str]


@dataclass
class Commit:
    txn: int
    resume: int  # where the source's stream may be released up to once this is applied


Event = Begin | Row | Truncate | Commit


@dataclass
class Converted:
    """Changed rows as the copy would have written them, and per column how many of their
    values could not be stored exactly (the copy's lossy count, for the report)."""

    rows: list[tuple[Any, ...]]
    lossy: dict[str, int] = field(default_factory=dict)


def add_lossy(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Add per-column lossy counts into `total`; returns it."""
    for name, count in more.items():
        if count:
            total[name] = total.get(name, 0) + count
    return total


def encode(fetched: Sequence[Any], plan: TablePlan) -> Converted:
    """Rows read back through the plan's select list, through the copy's own chunk encoder
    (its conversions and its lossy counts)."""
    out = Converted([])
    for chunk in make_chunks(iter(fetched), plan, chunk_rows=len(fetched) or 1,
                             chunk_bytes=1 << 30):
        out.rows += chunk.rows
        add_lossy(out.lossy, chunk.lossy)
    return out


class ChangeStream(Protocol):
    """A source's change stream for one job, opened at its recorded position."""

    drained: bool  # the last read returned everything there was

    def flush_position(self) -> int:
        """The source's log position before reading: once a read returns less than asked,
        everything committed up to here has been read."""

    def current_position(self) -> int:
        """Where the source's log ends now (cutover waits until this much is applied)."""

    def lag_bytes(self, applied: int) -> int:
        """How many bytes of the source's log lie between `applied` (a release point) and
        its end now."""

    def check_tables(self) -> None:
        """Raise SchemaError naming a followed table that is gone from the source (a drop
        the stream itself may not report)."""

    def read(self, limit: int) -> Iterator[Event]:
        """Events from the oldest unreleased transaction on; stops after about `limit`
        changes, at a transaction's end."""

    def convert(self, table: str, rows: Sequence[list[str | None]]) -> Converted:
        """Rows of source text as the copy would have written them (the plan's rules)."""

    def release(self, resume: int) -> None:
        """The source may forget everything before `resume`: it is applied and durable."""

    def end(self) -> None:
        """Drop what the follow holds on the source (slot, publication, reader)."""

    def close(self) -> None: ...
