"""PostgreSQL's binary COPY rows to marshal bytes without Python values (worker/_pgcopy.c).

The server renders most columns into a handful of wire types (worker/pg_render.py); the C
code converts the rest as their Python converters do: decimals (numeric_float,
numeric_affinity) and timestamps from their binary microseconds (datetime_text). A table
whose plan needs any other converter is read as Python rows (`codec_for` returns None), and
so is every table when the extension is missing or switched off with LITESHIFT_NATIVE=0.
tests/test_native.py holds both paths to the same bytes.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import Any

from worker import native
from worker.converters import _numeric
from worker.datetime_text import DatetimeFormat
from worker.translate import TablePlan

WIRE_KINDS = {"int8": b"q", "float8": b"d", "text": b"s", "bytea": b"b", "bool": b"B"}
CONVERTER_KINDS = {("text", "numeric_float"): b"n", ("text", "numeric_affinity"): b"N"}
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER_BYTES = len(SIGNATURE) + 8  # flags and header extension length, both zero


def _extension() -> ModuleType | None:
    return native.extension("_pgcopy")


@dataclass(frozen=True)
class Codec:
    kinds: bytes  # one per COPY field
    keep: int  # the leading fields that make the row

    def encode(self, messages: list[Any]) -> tuple[list[bytes], list[int]]:
        """Each message's row as marshal.dumps(row, 2), and per field a count: of true
        bools past `keep` (the server's lossy flags), of inexact values in N fields."""
        return _extension().encode(messages, self.kinds, self.keep,  # type: ignore[union-attr,no-any-return]
                                   _numeric)

    @cached_property
    def _raw(self) -> Codec:
        kinds = bytes(b"s"[0] if k in b"nN" else b"q"[0] if k >= 0x80 else k for k in self.kinds)
        return Codec(kinds, len(self.kinds))

    def raw_fields(self, message: Any) -> tuple:
        """Every field of one message as the driver would give it: numerics as their text
        (the resume key of a chunk's last row: never through a float), timestamps as their
        microseconds."""
        return marshal.loads(self._raw.encode([message])[0][0])  # type: ignore[no-any-return]


def codec_for(plan: TablePlan) -> Codec | None:
    if _extension() is None:
        return None
    kinds = []
    for column in plan.columns:
        kind = (_converter_kind(column.wire, column.converter) if column.converter
                else WIRE_KINDS.get(column.wire))
        if kind is None:
            return None
        kinds.append(kind)
    for wire in plan.wire_types[len(plan.columns):]:
        if wire not in WIRE_KINDS:
            return None
        kinds.append(WIRE_KINDS[wire])
    return Codec(b"".join(kinds), len(plan.columns))


def _converter_kind(wire: str, converter: str) -> bytes | None:
    fmt = DatetimeFormat.parse(converter)
    if fmt is not None:
        return bytes([fmt.code]) if wire == "int8" else None
    return CONVERTER_KINDS.get((wire, converter))


class CopyMessages:
    """COPY data messages, one row each, with the codec that turns them into rows.
    chunks.make_chunks encodes them in C; iterating gives the raw messages."""

    def __init__(self, messages: Iterator[Any], codec: Codec):
        self.codec = codec
        self._messages = self._rows_only(messages)

    @staticmethod
    def _rows_only(messages: Iterator[Any]) -> Iterator[Any]:
        first = True
        for message in messages:
            if first:
                first = False
                if bytes(message[:len(SIGNATURE)]) != SIGNATURE:
                    raise ValueError("binary COPY did not start with PostgreSQL's signature")
                message = message[HEADER_BYTES:]
            if len(message) == 2 and bytes(message) == b"\xff\xff":  # the trailer
                continue
            if len(message):
                yield message

    def __iter__(self) -> Iterator[Any]:
        return self._messages

    def __next__(self) -> Any:
        return next(self._messages)
