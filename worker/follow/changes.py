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


class ChangeStream(Protocol):
    """A source's change stream for one job, opened at its recorded position."""

    drained: bool  # the last read returned everything there was

    def flush_position(self) -> int:
        """The source's log position before reading: once a read returns less than asked,
        everything committed up to here has been read."""

    def current_position(self) -> int:
        """Where the source's log ends now (cutover waits until this much is applied)."""

    def read(self, limit: int) -> Iterator[Event]:
        """Events from the oldest unreleased transaction on; stops after about `limit`
        changes, at a transaction's end."""

    def convert(self, table: str, rows: Sequence[list[str | None]]) -> list[tuple[Any, ...]]:
        """Rows of source text as the copy would have written them (the plan's rules)."""

    def release(self, resume: int) -> None:
        """The source may forget everything before `resume`: it is applied and durable."""

    def end(self) -> None:
        """Drop what the follow holds on the source (slot, publication, reader)."""

    def close(self) -> None: ...
