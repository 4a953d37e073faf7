"""A micro-batch of source rows as the marshal bytes a chunk's payload is made of.

Each source's rows come one way: PostgreSQL's COPY messages (encoded in C, pgcopy.Codec),
a driver's Python tuples (MySQL: in C when every conversion has a C twin,
pgcopy.values_codec, else in Python). Each encoder gives the batch's bytes, checksum, last
key and lossy counts; chunks.make_chunks groups batches into chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from worker.core.checksum import encode_rows, encoded_checksum
from worker.core.converters import converter
from worker.core.model import TablePlan
from worker.native.fastsqlite import LIST_HEADER
from worker.native.pgcopy import FRAME_FIELDS, Codec, ValuesCodec, values_codec


@dataclass
class Batch:
    data: bytes | memoryview  # the rows' marshal bytes, one after the other
    rows: int
    checksum: int
    key: list[Any] | None  # the last row's
    whole: bytes | None = None  # the rows' payload (payload_of), data a view of its rows


def _batch(encoded: list[bytes], key: list[Any] | None) -> Batch:
    return Batch(b"".join(encoded), len(encoded), encoded_checksum(encoded), key)


# (a micro-batch of source rows, lossy counts to add to) -> the batch
BatchEncoder = Callable[[list[Any], dict[str, int]], Batch]


def python_encoder(plan: TablePlan) -> BatchEncoder:
    width = len(plan.columns)
    flags = plan.flag_positions
    extra = max(plan.key_positions, default=-1) >= width or bool(flags)
    strip = itemgetter(slice(0, width)) if extra else None
    key_of = key_getter(plan.key_positions)
    converters = [(i, c.name, converter(c.converter))
                  for i, c in enumerate(plan.columns) if c.converter]

    def encode_batch(raw: list[tuple], lossy: dict[str, int]) -> Batch:
        if flags:
            _count_flags(raw, flags, lossy)
        batch = list(map(strip, raw)) if strip else raw
        if converters:
            batch = _convert(batch, converters, lossy)
        return _batch(encode_rows(batch), key_of(raw[-1]) if key_of else None)

    return encode_batch


def values_encoder(plan: TablePlan) -> BatchEncoder | None:
    """Rows a driver made into Python tuples (MySQL), encoded in C, when the C code can do
    every column's conversion (pgcopy.values_codec)."""
    codec = values_codec(plan)
    if codec is None:
        return None
    flags = counted_fields(plan)
    key_of = key_getter(plan.key_positions)

    def encode_batch(raw: list[tuple], lossy: dict[str, int]) -> Batch:
        payload, rows, checksum, counts = codec.encode_values(raw)
        add_counts(lossy, flags, counts)
        return Batch(memoryview(payload)[LIST_HEADER.size:], rows, checksum,
                     key_of(raw[-1]) if key_of else None, whole=payload)

    return encode_batch


def native_encoder(plan: TablePlan, codec: Codec) -> BatchEncoder:
    flags = counted_fields(plan)
    key_of = key_getter(plan.key_positions)
    key_fields = codec.key_fields(plan.key_positions)

    def encode_batch(raw: list[Any], lossy: dict[str, int]) -> Batch:
        encoded, counts = codec.encode(raw)
        add_counts(lossy, flags, counts)
        return _batch(encoded, key_of(codec.key_of(raw[-1], key_fields)) if key_of else None)

    return encode_batch


def counted_fields(plan: TablePlan) -> list[tuple[str, int]]:
    """The fields whose C counts are lossy values: the server's flags, and the values
    converted inexactly in C."""
    return [*plan.flag_positions,
            *((c.name, i) for i, c in enumerate(plan.columns) if c.converter)]


def add_counts(lossy: dict[str, int], flags: list[tuple[str, int]], counts: list[int]) -> None:
    for name, position in flags:
        if counts[position]:
            lossy[name] = lossy.get(name, 0) + counts[position]


def key_getter(positions: Sequence[int]) -> Callable[[tuple], list[Any]] | None:
    if not positions:
        return None
    getter = itemgetter(*positions)
    if len(positions) == 1:
        return lambda row: [getter(row)]
    return lambda row: list(getter(row))


def _count_flags(raw: list[tuple], flags: list[tuple[str, int]],
                 lossy: dict[str, int]) -> None:
    """Add up the server's lossy flags (booleans, never NULL): a C-level sum per column."""
    for name, position in flags:
        count = sum(map(itemgetter(position), raw))
        if count:
            lossy[name] = lossy.get(name, 0) + count


def _convert(batch: list[tuple], converters: list, lossy: dict[str, int]) -> list[tuple]:
    columns = list(zip(*batch))
    for index, name, convert in converters:
        values, inexact = convert(list(columns[index]))
        columns[index] = values
        if inexact:
            lossy[name] = lossy.get(name, 0) + inexact
    return list(zip(*columns))


class RowSender:
    """A reader process's way to send a driver's row of big values (MySQL's, made into
    Python values) as a chunk by itself: written to frames_fd from the values' own bytes
    (ValuesCodec.send_values), as LibpqCopy sends a PostgreSQL row from libpq's message."""

    def __init__(self, plan: TablePlan, codec: ValuesCodec, frames_fd: int, chunk_bytes: int):
        self.codec, self.frames_fd, self.chunk_bytes = codec, frames_fd, chunk_bytes
        self.flags = counted_fields(plan)
        self.key_of = key_getter(plan.key_positions)

    @classmethod
    def of(cls, plan: TablePlan, frames_fd: int, chunk_bytes: int) -> RowSender | None:
        """None where rows are encoded as a payload instead: without the C extension, for a
        conversion only Python makes, or for rows wider than a frame's parts."""
        codec = values_codec(plan)
        if codec is None or len(codec.kinds) > FRAME_FIELDS:
            return None
        return cls(plan, codec, frames_fd, chunk_bytes)

    def first_big(self, rows: list[tuple]) -> int:
        """The index of the first row of `rows` longer than a chunk, or -1."""
        return self.codec.first_big(rows, self.chunk_bytes)

    def send(self, row: tuple) -> tuple[int, int, int, list[Any] | None, dict[str, int]]:
        """Write `row` as a frame; its chunk's rows, checksum, size, last key and lossy
        counts (chunks.Chunk's)."""
        rows, checksum, size, counts = self.codec.send_values(row, self.frames_fd)
        lossy: dict[str, int] = {}
        add_counts(lossy, self.flags, counts)
        return rows, checksum, size, self.key_of(row) if self.key_of else None, lossy
