"""Row checksums: the same function over what we write and over what SQLite gives back.

A row's hash is xxh3-64 of its tuple of SQLite values (int, float, str, bytes, None) encoded
with marshal format 2: a canonical encoding (format 2 has no back-references, so equal
values encode equally whatever objects hold them) that Python gives us in C, much faster
than repr(). A table's checksum is the sum of its rows' hashes modulo 2^64, so
chunks fold in any order and a resumed copy adds up the same; loss and duplication change
it, and the key being unique rules out cancelling pairs. Reading SQLite back and recomputing
catches affinity rewrites, truncation, loss and duplication.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable
from itertools import repeat
from typing import Any

from xxhash import xxh3_64_intdigest

MASK = 2**64 - 1
ENCODING_VERSION = 2  # marshal's: floats as 8 bytes, str as UTF-8, no references
MAX_FETCH = 5_000  # rows per fetch when rows are small


def encode_rows(rows: Iterable[tuple]) -> list[bytes]:
    return list(map(marshal.dumps, rows, repeat(ENCODING_VERSION)))


def encoded_checksum(encoded: Iterable[bytes]) -> int:
    return sum(map(xxh3_64_intdigest, encoded)) & MASK


def rows_checksum(rows: Iterable[tuple]) -> int:
    return encoded_checksum(map(marshal.dumps, rows, repeat(ENCODING_VERSION)))


def cursor_checksum(cursor: Any, budget_bytes: int = 8 << 20) -> tuple[int, int]:
    """Count and checksum an SQLite cursor's rows, fetching as many at a time as fit in
    about `budget_bytes` (a table of 5 MB blobs is read a row at a time)."""
    rows = total = 0
    batch = 1
    while fetched := cursor.fetchmany(batch):
        encoded = encode_rows(fetched)
        rows += len(fetched)
        total = fold(total, encoded_checksum(encoded))
        row_bytes = max(1, sum(map(len, encoded)) // len(fetched))
        batch = max(1, min(MAX_FETCH, budget_bytes // row_bytes))
    return rows, total


def fold(total: int, part: int) -> int:
    return (total + part) & MASK


def as_hex(value: int) -> str:
    return f"{value:016x}"
