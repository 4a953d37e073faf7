"""PostgreSQL's binary COPY rows to marshal bytes without Python values (worker/native/_pgcopy.c).

The server renders most columns into a handful of wire types
(worker/sources/postgres/values.py); the C code converts the rest as their Python converters
do: decimals (numeric_float, numeric_affinity) and timestamps from their binary microseconds
(datetime_text). A table whose plan needs any other converter is read as Python rows
(`codec_for` returns None), and so is every table when the extension is missing or switched
off with LITESHIFT_NATIVE=0.
LibpqCopy reads the COPY in C straight from libpq. ValuesCodec encodes rows a driver made
into Python tuples (MySQL) the same way. tests/test_native.py and
tests/mysqlsrc/test_mysql_native.py hold each path to the Python one, byte for byte.
"""

from __future__ import annotations

import ctypes
import functools
import marshal
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import Any

from worker import native
from worker.core.converters import numeric_value
from worker.core.datetime_text import DatetimeFormat
from worker.core.errors import BigRowHere
from worker.core.model import TablePlan

WIRE_KINDS = {"int8": b"q", "float8": b"d", "text": b"s", "bytea": b"b", "bool": b"B"}
CONVERTER_KINDS = {("text", "numeric_float"): b"n", ("text", "numeric_affinity"): b"N",
                   ("uuid", "uuid_text"): b"U", ("text[]", "json_text_array"): b"A",
                   ("varchar[]", "json_text_array"): b"A"}
VALUE_KINDS = {**{converter: kind for (_, converter), kind in CONVERTER_KINDS.items()
                  if kind in b"nN"},  # encode_values converts only numeric text
               "negative_zero": b"Z", "off_calendar_null": b"D"}
#: The most fields a row sent as a frame of parts may have (_pgcopy.c's send_frame, one part
#: per big value); wider rows of big values are joined into a payload.
FRAME_FIELDS = 64
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
                                   numeric_value)

    @cached_property
    def _raw(self) -> Codec:
        kinds = bytes(b"s"[0] if k in b"nN" else b"q"[0] if k >= 0x80 else k for k in self.kinds)
        return Codec(kinds, len(self.kinds))

    def raw_fields(self, message: Any) -> tuple:
        """Every field of one message as the driver would give it: numerics as their text
        (the resume key of a chunk's last row: never through a float), timestamps as their
        microseconds."""
        return marshal.loads(self._raw.encode([message])[0][0])  # type: ignore[no-any-return]

    def key_fields(self, positions: Sequence[int]) -> bytes:
        """The mask of the fields at `positions` (the chunk key's), as read_chunk and
        key_of take it."""
        return bytes(int(i in positions) for i in range(len(self.kinds)))

    def key_of(self, message: Any, key_fields: bytes) -> tuple:
        """raw_fields of one message's key fields (key_fields), the others None: a row of
        big values is not copied whole for its key."""
        return self.raw_fields(_extension().key_only(message, key_fields))  # type: ignore[union-attr]


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


@dataclass(frozen=True)
class ValuesCodec:
    kinds: bytes  # one per field of a row tuple: n/N numeric text, Z a float whose -0.0 is
    # counted, D a date's text that becomes NULL off the calendar, counted, B a flag, v
    # anything else
    keep: int

    def encode_values(self, rows: list[tuple]) -> tuple[bytes, int, int, list[int]]:
        """The rows' payload (fastsqlite.payload_of: marshal.dumps(rows, 2)), their count,
        checksum, and per field a count as in Codec.encode."""
        return _extension().encode_values(rows, self.kinds, self.keep, numeric_value)  # type: ignore[union-attr,no-any-return]

    def first_big(self, rows: list[tuple], min_bytes: int) -> int:
        """The index of the first row whose str and bytes values hold `min_bytes` or more
        (a str counted in characters), or -1."""
        return first_big(rows, min_bytes)

    def send_values(self, row: tuple, frames_fd: int) -> tuple[int, int, int, list[int]]:
        """encode_values([row]) written to `frames_fd` as a reader process's P frame, its big
        values straight from their objects (no payload of them): its row count, checksum,
        size and counts."""
        return _extension().send_values(row, self.kinds, self.keep, numeric_value, frames_fd)  # type: ignore[union-attr,no-any-return]


def first_big(rows: list[tuple], min_bytes: int) -> int:
    """ValuesCodec.first_big for any rows of Python values; the extension must be there."""
    return _extension().first_big(rows, min_bytes)  # type: ignore[union-attr,no-any-return]


def values_codec(plan: TablePlan) -> ValuesCodec | None:
    """For rows of Python values: None when a column's converter is not one the C code
    has, or the extension is missing (the Python path then)."""
    if _extension() is None:
        return None
    kinds = []
    for column in plan.columns:
        kind = VALUE_KINDS.get(column.converter) if column.converter else b"v"
        if kind is None:
            return None
        kinds.append(kind)
    flags = {position for _, position in plan.flag_positions}
    kinds += [b"B" if i in flags else b"v"
              for i in range(len(plan.columns), len(plan.wire_types))]
    return ValuesCodec(b"".join(kinds), len(plan.columns))


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


# What read_chunk gives: (payload or None when sent, rows, checksum, size, last message's
# key fields, counts per field)
RawChunk = tuple[bytes | None, int, int, int, bytes | None, list[int]]
MORE, TRAILER, ENDED, BIG = 0, 1, 2, 3  # _pgcopy.read_chunk's states
LIBPQ_FUNCTIONS = ("PQgetCopyData", "PQfreemem", "PQconsumeInput", "PQsocket")


class LibpqCopy:
    """A binary COPY read in C straight from libpq, a chunk at a time: no Python object per
    row. psycopg hands every row over as one (0.6 us per row: the whole reading cost of a
    narrow table). psycopg still starts the COPY, finishes it and raises its errors."""

    def __init__(self, open_copy: Callable[[], AbstractContextManager[Any]], codec: Codec,
                 functions: tuple[int, ...]):
        self.codec = codec
        self._open_copy = open_copy
        self._functions = functions

    def chunks(self, chunk_rows: Iterator[int], chunk_bytes: int, key_fields: bytes = b"",
               frames_fd: int = -1, stop_at_big: bool = False) -> Iterator[RawChunk]:
        """Chunks of up to next(chunk_rows) rows each and about chunk_bytes; each chunk's
        last message holds only the fields key_fields marks (Codec.key_fields). Given
        frames_fd, every chunk was written there as a frame (reader_process) and comes with
        no payload (None): each is built in the one buffer this COPY keeps. With stop_at_big
        instead, a row longer than chunk_bytes ends the chunks before it: BigRowHere is
        raised, and the COPY cancelled."""
        read = _extension().read_chunk  # type: ignore[union-attr]
        scratch = _extension().scratch() if frames_fd >= 0 else None  # type: ignore[union-attr]
        with self._open_copy() as copy:
            pgconn, first, size_hint = copy.connection.pgconn, True, 1 << 16
            encoding = copy.connection.info.encoding
            rows = next(chunk_rows)
            while True:
                *chunk, state = read(pgconn.pgconn_ptr, self._functions, self.codec.kinds,
                                     self.codec.keep, numeric_value, rows, chunk_bytes, first,
                                     size_hint, key_fields, frames_fd, scratch, stop_at_big)
                first, read_rows, rows = False, chunk[1], next(chunk_rows)
                # the next payload's likely size, so that it is built without growing
                size_hint = min(chunk_bytes, chunk[3] * rows // max(1, read_rows)) * 9 // 8
                if read_rows:
                    yield tuple(chunk)  # type: ignore[misc]
                del chunk  # its payload is not held while the next one is read
                if state == TRAILER:
                    copy.read()  # psycopg reads the end and raises the server's error if any
                    return
                if state == ENDED:
                    raise _why_it_ended(pgconn, encoding)
                if state == BIG:
                    raise BigRowHere("a row longer than a chunk")


def _why_it_ended(pgconn: Any, encoding: str) -> Exception:
    """The COPY ended before its trailer: the server sent an error, or the connection broke
    (no SQLSTATE then: psycopg's own reader calls that an OperationalError too)."""
    import psycopg
    from psycopg.pq import DiagnosticField

    result = pgconn.get_result()
    while result is not None and pgconn.get_result() is not None:
        pass  # libpq's queue must be empty for psycopg to finish the COPY quietly
    if result is not None and result.error_field(DiagnosticField.SQLSTATE):
        return psycopg.errors.error_from_result(result, encoding=encoding)
    message = (result.error_message if result is not None else b"") or pgconn.error_message
    return psycopg.OperationalError(message.decode(encoding, "replace").strip()
                                    or "the connection to the server was lost")


def libpq_functions(pgconn: Any) -> tuple[int, ...] | None:
    """The addresses of the functions read_chunk calls, in the libpq that owns `pgconn`
    (psycopg-binary bundles its own; a PGconn must never meet another libpq's code), or
    None when that cannot be told for sure."""
    library = _loaded_libpq()
    if library is None:
        return None
    try:
        if library.PQsocket(ctypes.c_void_p(pgconn.pgconn_ptr)) != pgconn.socket:
            return None
    except Exception:  # no pgconn_ptr, a closed connection: psycopg's own path then
        return None
    return tuple(ctypes.cast(getattr(library, name), ctypes.c_void_p).value or 0
                 for name in LIBPQ_FUNCTIONS)


@functools.cache
def _loaded_libpq() -> ctypes.CDLL | None:
    """The one libpq mapped into this process (psycopg's), without loading another."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if re.search(r"/libpq[-.][^/]*$", line.strip())}
    if len(paths) != 1:
        return None
    try:
        library = ctypes.CDLL(paths.pop(), mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    except OSError:
        return None
    library.PQsocket.argtypes = [ctypes.c_void_p]
    return library
