"""Row checksums: the same function over what we write and over what SQLite gives back.

A row's hash is xxh3-64 of the repr of its tuple of SQLite values (int, float, str, bytes,
None): a canonical encoding that Python gives us in C. A table's checksum is the sum of its
rows' hashes modulo 2^64, so chunks fold in any order and a resumed copy adds up the same;
loss and duplication change it, and the key being unique rules out cancelling pairs. Reading
SQLite back and recomputing catches affinity rewrites, truncation, loss and duplication.
"""

from __future__ import annotations

from collections.abc import Iterable

from xxhash import xxh3_64_intdigest

MASK = 2**64 - 1


def rows_checksum(reprs: Iterable[str]) -> int:
    return sum(map(xxh3_64_intdigest, map(str.encode, reprs))) & MASK


def fold(total: int, part: int) -> int:
    return (total + part) & MASK


def as_hex(value: int) -> str:
    return f"{value:016x}"
