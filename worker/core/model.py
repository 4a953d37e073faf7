"""The plan both sources produce: what each table and column becomes, and how it is read.

Source-neutral: a source's translator fills these; the copy, the build and verification read
them. The SQL that reads a table is the source's own (its dialect); a fetched row is laid
out as here: the columns, then the key values read raw, then the lossy flags. Nothing here
imports a driver.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ColumnPlan:
    name: str
    source_type: str
    sqlite_type: str
    select_sql: str
    wire: str
    converter: str | None
    rule: str
    lossy: bool
    note: str
    nullable: bool
    flag_sql: str | None = None  # SQL boolean: this value took the rule's lossy fallback


@dataclass
class TablePlan:
    name: str
    file: str
    columns: list[ColumnPlan]  # the columns copied, in INSERT order
    key: list[str]
    key_kind: str  # "primary_key", "unique", or "none" (copied in one pass, not resumable)
    key_types: list[str]
    key_positions: list[int]  # where each key value sits in a fetched row
    create_sql: str
    insert_sql: str
    indexes: list[dict[str, Any]] = field(default_factory=list)  # {"name", "sql"}, after data
    rows_estimated: int = 0
    size_bytes: int = 0
    generated_columns: list[str] = field(default_factory=list)  # computed by SQLite, not copied
    checks: list[dict[str, Any]] = field(default_factory=list)  # {"name", "sql"}, counted later
    sequence: dict[str, Any] | None = None  # {"name", "value"}: sqlite_sequence at finalize

    @property
    def rowid(self) -> str | None:
        """A name for SQLite's rowid in this table: a column named `rowid` takes that name
        over (and `_rowid_`, `oid` in turn). None when the columns take all three."""
        taken = {c.name.lower() for c in self.columns} | {g.lower()
                                                          for g in self.generated_columns}
        return next((n for n in ("rowid", "_rowid_", "oid") if n not in taken), None)

    @property
    def raw_keys(self) -> list[tuple[str, str]]:
        """(name, source type) of each key column read raw after the columns: the fields
        between the columns and the lossy flags of a fetched row, in key order."""
        width = len(self.columns)
        return [(k, t) for k, t, pos in zip(self.key, self.key_types, self.key_positions)
                if pos >= width]

    @property
    def wire_types(self) -> list[str]:
        """The wire type of each field of a fetched row: the columns', then text for each
        raw key value, then bool for each lossy flag."""
        flags = ["bool" for c in self.columns if c.flag_sql]
        return [c.wire for c in self.columns] + ["text"] * len(self.raw_keys) + flags

    @property
    def flag_positions(self) -> list[tuple[str, int]]:
        """(column, position in a fetched row) of each lossy flag."""
        start = len(self.columns) + len(self.raw_keys)
        flagged = [c.name for c in self.columns if c.flag_sql]
        return [(name, start + i) for i, name in enumerate(flagged)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TablePlan:
        data = dict(data)
        data["columns"] = [ColumnPlan(**c) for c in data["columns"]]
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    tables: list[TablePlan]
    objects: list[dict[str, Any]]  # the report's account of every source object
