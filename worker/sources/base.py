"""The interface every source kind implements: `Source`, beside its implementations: the
modules postgres/source.py and mysql/source.py, and stub.py's class for tests without a
database.

A source connects, lists and reflects a schema, translates it into the plan both sources
share (worker/core/model.py), and streams one table in key order, laid out as the plan
says. `worker.sources.for_kind` hands out the implementation for a URL's kind, importing
its driver only then. Driver errors never leave a source: each translates them into
worker/core/errors.py's tree where it calls the driver.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from worker.core.model import Plan, TablePlan
from worker.sources.url import SourceURL

if TYPE_CHECKING:
    from worker.native.pgcopy import CopyMessages, LibpqCopy

# A table's rows in key order: tuples, pgcopy.CopyMessages that chunks.make_chunks encodes
# without Python values, or a pgcopy.LibpqCopy that reads whole chunks in C.
Rows: TypeAlias = "Iterator[tuple[Any, ...]] | CopyMessages | LibpqCopy"


class ReflectedTable(Protocol):
    """What the job steps read of a reflected table; each source's has much more."""

    @property
    def name(self) -> str: ...

    @property
    def size_bytes(self) -> int: ...


class ReflectedSchema(Protocol):
    @property
    def tables(self) -> Sequence[ReflectedTable]: ...


Conn = TypeVar("Conn")  # the source's connection
Schema = TypeVar("Schema", bound=ReflectedSchema)  # the source's reflected schema


class Source(Protocol[Conn, Schema]):
    KIND: str  # the SourceURL kind it reads: "postgres", "mysql"

    def connect(self, source: SourceURL, *,
                timeout_s: int = 10) -> AbstractContextManager[Conn]:
        """An open connection, its session set up, closed on leaving the block."""
        ...

    def schema_exists(self, conn: Conn, schema: str) -> bool: ...

    def list_tables(self, conn: Conn, schema: str) -> list[str]:
        """The tables a job may copy, by name, sorted."""
        ...

    def reflect(self, source: SourceURL, conn: Conn, schema: str,
                names: Sequence[str]) -> Schema:
        """The named tables' structure, and the schema's other objects for the report."""
        ...

    def translate(self, schema: Schema, options: Mapping[str, Any] | None = None) -> Plan:
        """The plan for copying `schema` with the job's options (worker/core/profiles.py)."""
        ...

    def stream_table(self, conn: Conn, *, schema: str, plan: TablePlan,
                     after: Sequence[Any] | None) -> Rows:
        """The table's rows in key order, after the key `after` (None: from the start),
        each laid out as the plan says: columns, raw key values, lossy flags."""
        ...
