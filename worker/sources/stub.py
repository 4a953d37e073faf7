"""An in-memory source for tests: tables held as lists of rows, no database, no driver.

It speaks the `Source` contract (worker/sources/base.py) the way the real sources do, so the
chunk loop, work files and resume can be tested in milliseconds: rows come in key order after
the resume key, and the connection can be made to break once, part-way through a table, as a
cut network would.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from worker.core.errors import SourceRejected, SourceUnavailable
from worker.core.identifiers import quote
from worker.core.model import ColumnPlan, Plan, TablePlan
from worker.sources.base import Source
from worker.sources.url import SourceURL


@dataclass
class StubTable:
    name: str
    columns: list[tuple[str, str]]  # (name, SQLite declared type), in order
    rows: list[tuple[Any, ...]]  # in any order: read in key order
    key: list[str] = field(default_factory=list)  # the primary key; none: one pass
    size_bytes: int = 0


@dataclass
class StubSchema:
    schema: str
    tables: list[StubTable]


@dataclass
class StubConnection:
    tables: dict[str, StubTable]


class StubSource(Source[StubConnection, StubSchema]):
    KIND = "stub"

    def __init__(self, tables: Sequence[StubTable], *, schema: str = "public",
                 cut_after: int | None = None):
        self.tables = {t.name: t for t in tables}
        self.schema = schema
        self.cut_after = cut_after  # the first table read breaks after this many rows

    @contextmanager
    def connect(self, source: SourceURL, *, timeout_s: int = 10) -> Iterator[StubConnection]:
        yield StubConnection(self.tables)

    def schema_exists(self, conn: StubConnection, schema: str) -> bool:
        return schema == self.schema

    def list_tables(self, conn: StubConnection, schema: str) -> list[str]:
        return sorted(conn.tables)

    def reflect(self, source: SourceURL, conn: StubConnection, schema: str,
                names: Sequence[str]) -> StubSchema:
        missing = [n for n in names if n not in conn.tables]
        if missing:
            raise SourceRejected(f"reading the schema: no table {missing[0]!r} in the stub")
        return StubSchema(schema, [conn.tables[n] for n in names])

    def translate(self, schema: StubSchema, options: Mapping[str, Any] | None = None) -> Plan:
        return Plan(tables=[_table_plan(t, i) for i, t in enumerate(schema.tables)],
                    objects=[])

    def stream_table(self, conn: StubConnection, *, schema: str, plan: TablePlan,
                     after: Sequence[Any] | None) -> Iterator[tuple[Any, ...]]:
        rows = conn.tables[plan.name].rows
        if plan.key:
            def key_of(row: tuple[Any, ...]) -> list[Any]:
                return [row[p] for p in plan.key_positions]
            rows = sorted(rows, key=key_of)
            if after is not None:
                rows = [r for r in rows if key_of(r) > list(after)]
        for sent, row in enumerate(rows):
            if sent == self.cut_after:
                self.cut_after = None
                raise SourceUnavailable(f"reading table {plan.name!r}: connection failed "
                                        "or was cut (stub); will retry from the last "
                                        "committed chunk", table=plan.name)
            yield row


def _table_plan(table: StubTable, index: int) -> TablePlan:
    columns = [ColumnPlan(name=name, source_type=sqlite_type, sqlite_type=sqlite_type,
                          select_sql=quote(name), wire="stub", converter=None, rule="stub",
                          lossy=False, note="", nullable=name not in table.key)
               for name, sqlite_type in table.columns]
    names = [c.name for c in columns]
    lines = [f"{quote(c.name)} {c.sqlite_type}" + ("" if c.nullable else " NOT NULL")
             for c in columns]
    if table.key:
        lines.append(f"PRIMARY KEY ({', '.join(map(quote, table.key))})")
    return TablePlan(
        name=table.name, file=f"{index:05d}.db", columns=columns, key=list(table.key),
        key_kind="primary_key" if table.key else "none",
        key_types=[columns[names.index(k)].source_type for k in table.key],
        key_positions=[names.index(k) for k in table.key],
        create_sql=f"CREATE TABLE {quote(table.name)} ({', '.join(lines)})",
        insert_sql=(f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, names))}) "
                    f"VALUES ({', '.join('?' for _ in names)})"),
        rows_estimated=len(table.rows), size_bytes=table.size_bytes)
