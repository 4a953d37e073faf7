"""Insert and read back a chunk's rows as marshal bytes, in C when we can.

worker/native/_fastsqlite.c binds straight from the marshal bytes the rows travel and are
checksummed in, and checksums SQLite's values over the bytes `marshal.dumps(row, 2)` would give: no
Python object per value (measured in ops/bench/RESULTS.md). Everything here has a plain
Python twin with the same results, used when the extension was not built, is switched off
(LITESHIFT_NATIVE=0), or cannot vouch for a connection.
"""

from __future__ import annotations

import functools
import marshal
import sqlite3
import struct
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from worker import native
from worker.core.checksum import rows_checksum

LIST_HEADER = struct.Struct("<ci")  # marshal's list: b"[" and the count of items
ROWS_TABLE, ROWS_MAX_WIDTH = "liteshift_rows", 1999  # _fastsqlite.c's virtual table
BATCH_ROWS = 64  # rows per INSERT statement in C (measured: 32 and 128 do no better)


def payload_of(encoded_rows: Sequence[bytes | memoryview], rows: int | None = None) -> bytes:
    """The marshal bytes of a list of rows from each row's own marshal bytes, or from runs
    of `rows` rows' bytes (format 2 has no back-references, so this is exactly
    marshal.dumps(rows, 2))."""
    count = len(encoded_rows) if rows is None else rows
    return b"".join([LIST_HEADER.pack(b"[", count), *encoded_rows])


def rows_of(payload: bytes | memoryview) -> list[tuple]:
    return marshal.loads(payload)  # type: ignore[no-any-return]


def _extension() -> ModuleType | None:
    return native.extension("_fastsqlite")


def usable(db: sqlite3.Connection, path: Path) -> bool:
    """True when the C path can work on `db`, the connection to the file at `path`."""
    extension = _extension()
    return extension is not None and bool(extension.check(db, str(Path(path).resolve())))


def insert_rows(db: sqlite3.Connection, insert_sql: str, payload: bytes | memoryview, *,
                fast: bool) -> int:
    """Insert the payload's rows with `insert_sql` (an INSERT ending in one VALUES row of
    `?`). In C, as one INSERT ... SELECT from the payload itself (_fastsqlite.c's
    liteshift_rows), else by binding 64-row VALUES statements; both store what executemany
    stores."""
    select_sql, width = _insert_select(insert_sql)
    if fast and select_sql:
        return int(_extension().insert_chunk(db, select_sql, width, payload))  # type: ignore[union-attr]
    if fast:
        batch_sql, batch = _batched(insert_sql, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        return int(_extension().insert_rows(db, insert_sql, payload, batch_sql, batch))  # type: ignore[union-attr]
    rows = rows_of(payload)
    db.executemany(insert_sql, rows)
    return len(rows)


@functools.lru_cache(maxsize=64)
def _insert_select(insert_sql: str) -> tuple[str | None, int]:
    """`insert_sql` as an INSERT ... SELECT from liteshift_rows, and the row's width; None
    where that cannot be used."""
    head, _, row = insert_sql.rpartition(" VALUES ")
    width = row.count("?")
    if ROWS_TABLE in head.lower() or not 1 <= width <= ROWS_MAX_WIDTH:
        return None, width  # a table of that very name would hide it: bind VALUES instead
    columns = ", ".join(f"c{i}" for i in range(width))
    return f"{head} SELECT {columns} FROM {ROWS_TABLE}(?)", width


@functools.lru_cache(maxsize=64)
def _batched(insert_sql: str, max_parameters: int) -> tuple[str, int]:
    """`insert_sql` (an INSERT ending in one VALUES row of `?`) with BATCH_ROWS rows of
    parameters, as many as SQLite allows. The row is the text after the last " VALUES ":
    quoted names before it may hold `?` or that word themselves."""
    row = insert_sql.rpartition(" VALUES ")[2]
    batch = max(1, min(BATCH_ROWS, max_parameters // max(1, row.count("?"))))
    return insert_sql + f", {row}" * (batch - 1), batch


def readback(db: sqlite3.Connection, select_sql: str, after_rowid: int | None, *,
             fast: bool) -> tuple[int, int]:
    """How many rows `select_sql` gives (with `?` bound to `after_rowid` unless None) and
    their checksum.rows_checksum. The caller bounds the rows: one chunk's worth."""
    if fast:
        return _extension().readback(db, select_sql, after_rowid)  # type: ignore[union-attr,no-any-return]
    params = () if after_rowid is None else (after_rowid,)
    rows = db.execute(select_sql, params).fetchall()
    return len(rows), rows_checksum(rows)
