"""A big table's reader in a child process: `python -m worker.sources.reader_process`.

Reading (the driver's row parsing), conversion and checksums take about as much CPU as
SQLite's inserts, and in one process they share one GIL. Moving them to a child lets a
worker use two cores on one table: the child streams, converts and checksums chunks exactly
as `chunks.make_chunks` does in-process, and the worker only inserts and commits them.

The request comes as JSON on stdin (never argv: argv shows in `ps`, and it holds the source
URL). The answer is a stream of frames on stdout, each a kind byte and a length:
  P  a chunk's payload, as it is (fastsqlite.payload_of)
  C  the chunk of the payload just sent: marshal of (row_count, checksum, size_bytes,
     last_key, lossy)
  E  an error: JSON {"kind": class name in worker.core.errors, "message": ...}
  D  done
The payload travels apart so that neither side copies it: the worker reads it into one
buffer it keeps, and inserts from there (a copy per side, and its fresh pages, would cost
a good part of a table's CPU); a PostgreSQL table's chunks are built in one buffer the child
keeps, and written from there (LibpqCopy.chunks). A row of big values is written into its
P frame from where the driver holds it (worker/native/_pgcopy.c: libpq's own message for
PostgreSQL, the values MySQL's driver made), never joined into a payload here.
The child holds no state: killed at any moment, the worker resumes from its own checkpoint.
When the worker dies first, the child's next write fails (EPIPE) and it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import marshal
import mmap
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from worker.core import errors, memory
from worker.core.checksum import ENCODING_VERSION
from worker.core.errors import LiteshiftError, SnapshotLost, SourceUnavailable
from worker.core.logs import configure_logging
from worker.core.model import TablePlan
from worker.core.redact import redact
from worker.sources import import_readers
from worker.sources.ambient import drop_driver_env, without_driver_env
from worker.sources.standby import Standby, python_main
from worker.sqlite.chunks import Chunk

HEADER = struct.Struct(">cQ")
PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


def chunks_from_child(*, source_url: str, schema: str, plan: TablePlan,
                      after: Sequence[Any] | None, chunk_rows: int, chunk_bytes: int,
                      connect_timeout_s: int, snapshot: dict[str, Any] | None = None,
                      source_allow: str = "") -> Iterator[Chunk]:
    """The worker's side: start the child, yield its chunks, re-raise its errors as ours.
    Closing the iterator early (cancel, lease lost) kills the child. A chunk's payload is
    a view of a buffer the next chunk reuses: it is released once the caller asks for the
    next chunk, so a chunk kept longer fails loudly instead of changing under its keeper."""
    request = {"source": source_url, "allow": source_allow, "schema": schema,
               "plan": plan.to_dict(), "after": list(after) if after is not None else None,
               "chunk_rows": chunk_rows, "chunk_bytes": chunk_bytes,
               "timeout_s": connect_timeout_s, "snapshot": snapshot}
    child = _standby.take() or _spawn()
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(json.dumps(request).encode())
        child.stdin.close()
        yield from _frames(child.stdout, plan, lambda: (
            f"the reader process for table {plan.name!r} ended without finishing "
            f"(exit status {child.wait()}); will retry from the last committed chunk"))
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
        if _keep_ready:
            keep_one_ready()  # for the next table, while this one is verified


def chunks_from_holder(*, address: str, token: str, schema: str, plan: TablePlan,
                       after: Sequence[Any] | None, chunk_rows: int, chunk_bytes: int,
                       connect_timeout_s: int) -> Iterator[Chunk]:
    """The same chunks, read by the job's snapshot holder (worker/sources/mysql/snapshot.py)
    through a connection that stays in the job's moment: a MySQL snapshot cannot be
    entered from another connection. A holder that cannot be reached is a lost moment."""
    host, _, port = address.rpartition(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=connect_timeout_s)
    except OSError as exc:
        raise SnapshotLost(
            f"cannot reach the job's snapshot holder at {address} ({exc.strerror or exc}): it "
            "stopped (its worker's host went down, or it was killed), or this worker cannot "
            "reach that address (LITESHIFT_SNAPSHOT_ADDRESS on the planning worker). Rows read "
            "elsewhere would come from another moment; `liteshift retry JOB` copies every "
            "table again under a new snapshot", table=plan.name) from None
    request = {"token": token, "schema": schema, "plan": plan.to_dict(),
               "after": list(after) if after is not None else None, "chunk_rows": chunk_rows,
               "chunk_bytes": chunk_bytes}
    with sock:
        sock.settimeout(None)  # a big table's first rows may take long to come
        sock.sendall(json.dumps(request).encode() + b"\n")
        yield from _frames(sock, plan, lambda: (
            f"the snapshot holder's reader for table {plan.name!r} ended without finishing; "
            "will retry from the last committed chunk"))


def _frames(stream: Any, plan: TablePlan, ended: Any) -> Iterator[Chunk]:
    """The chunks of a frame stream (a pipe or a socket: raw reads of its descriptor), its
    errors re-raised as ours; `ended()` says what a stream cut short means."""
    buffer: bytearray | mmap.mmap = bytearray()
    size = -1  # the payload read for the next C frame
    while True:
        kind, length = _read_header(stream)
        if kind == b"P":
            if len(buffer) < length:  # a new one: the old one may still be viewed
                # Anonymous memory: its pages cost nothing until the payload fills them (a
                # bytearray is zeroed, which touches the whole slack of a big row's buffer)
                buffer = mmap.mmap(-1, length + length // 8)
            size = length if _read_into(stream, memoryview(buffer)[:length]) else -1
        elif kind == b"C" and size >= 0:
            meta = _read_exact(stream, length)
            with memoryview(buffer)[:size] as payload:
                yield Chunk(payload, *marshal.loads(meta))  # type: ignore[arg-type]
            size = -1
        elif kind == b"D":
            return
        elif kind == b"E":
            raise _error(json.loads(_read_exact(stream, length) or b"{}"), plan.name)
        else:
            raise SourceUnavailable(ended(), table=plan.name)


_standby = Standby(lambda: _spawn())
_keep_ready = False


def keep_one_ready() -> None:
    """From now on, keep a reader started ahead of need in this process (a worker's pool
    process, worker/sources/standby.py): the next big table's first chunk does not wait for
    the child's imports."""
    global _keep_ready
    _keep_ready = True
    _standby.keep()


def _spawn() -> subprocess.Popen[bytes]:
    child = subprocess.Popen(python_main("worker.sources.reader_process"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             # worker/core/memory.py: big values; worker/sources/ambient.py
                             env=without_driver_env({**memory.ENV, **os.environ}))
    assert child.stdout is not None
    _widen_pipe(child.stdout.fileno())
    return child


def _widen_pipe(fd: int) -> None:
    """A 1 MiB pipe instead of 64 KiB: a chunk crosses in 16 times fewer wake-ups."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (OSError, AttributeError):
        pass  # a lower /proc/sys/fs/pipe-max-size, or not Linux: the default pipe works


def _read_header(stream: IO[bytes]) -> tuple[bytes | None, int]:
    header = _read_exact(stream, HEADER.size)
    return HEADER.unpack(header) if header is not None else (None, 0)


def _read_exact(stream: IO[bytes], size: int) -> bytearray | None:
    data = bytearray(size)
    return data if _read_into(stream, memoryview(data)) else None


def _read_into(stream: IO[bytes], view: memoryview) -> bool:
    """Fill `view` from the pipe's file descriptor; False at its end. Raw reads: see
    _write_all for why the buffered layer is not trusted here."""
    got = 0
    while got < len(view):
        n = os.readv(stream.fileno(), [view[got:]])
        if n == 0:
            return False
        got += n
    return True


def _error(answer: dict[str, Any], table: str) -> LiteshiftError:
    cls = getattr(errors, answer.get("kind", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, LiteshiftError)):
        cls = LiteshiftError
    return cls(answer["message"], table=table)


def main() -> int:
    # A reader makes a few objects per row and keeps none: the cycle collector would find
    # nothing to free and still scan them, at a cost per row. (Started by _spawn, the GC
    # is off from the first import: standby.python_main.)
    gc.disable()
    drop_driver_env()  # started without them; this keeps it so if run by hand
    configure_logging("json")  # to stderr (the worker's log): stdout carries the frames
    out = sys.stdout.buffer
    import_readers()  # before the request: a reader kept ready has them when it comes
    gc.freeze()  # the exit's collection does not scan what the imports made
    request = sys.stdin.buffer.read()
    if not request:
        return 0  # a reader kept ready whose worker stopped without using it
    try:
        _serve(json.loads(request), out)
    except BrokenPipeError:
        return 1  # the worker is gone: nothing to tell anyone
    except LiteshiftError as exc:
        _write(out, b"E", json.dumps({"kind": type(exc).__name__,
                                      "message": redact(str(exc))}).encode())
    except Exception as exc:  # never a traceback with a URL in it
        _write(out, b"E", json.dumps({"kind": "LiteshiftError", "message": redact(
            f"the reader process failed: {type(exc).__name__}: {exc}")}).encode())
    return 0


def _serve(request: dict[str, Any], out: IO[bytes]) -> None:
    from worker import sources
    from worker.sources import snapshot
    from worker.sources.hosts import HostAllow
    from worker.sources.url import parse_source_url, remember_url_password

    remember_url_password(request["source"])
    source = parse_source_url(request["source"], allow=HostAllow.parse(request.get("allow")))
    plan = TablePlan.from_dict(request["plan"])
    reader = sources.for_kind(source.kind)
    with reader.connect(source, timeout_s=request["timeout_s"]) as conn:
        snapshot.enter(source.kind, conn, request.get("snapshot"))
        rows = reader.stream_table(conn, schema=request["schema"], plan=plan,
                                   after=request["after"])
        write_chunks(rows, plan, out, chunk_rows=request["chunk_rows"],
                     chunk_bytes=request["chunk_bytes"])


def write_chunks(rows: Any, plan: TablePlan, out: Any, *, chunk_rows: int,
                 chunk_bytes: int) -> None:
    """A table's rows as chunk frames on `out` (a pipe or a socket), then D."""
    from worker.sqlite.chunks import make_chunks

    for chunk in make_chunks(rows, plan, chunk_rows=chunk_rows, chunk_bytes=chunk_bytes,
                             frames_fd=out.fileno()):
        if chunk.parts is not None:
            _write_parts(out, b"P", chunk.parts)
        elif not chunk.sent:  # else its P frame is written already, its big values unjoined
            _write(out, b"P", chunk.payload)
        _write(out, b"C", marshal.dumps((chunk.row_count, chunk.checksum, chunk.size_bytes,
                                         chunk.last_key, chunk.lossy), ENCODING_VERSION))
        del chunk  # not held while the next one is made
    _write(out, b"D", b"")


def write_error(out: Any, exc: LiteshiftError) -> None:
    with contextlib.suppress(OSError):  # the worker may be gone: nobody to tell
        _write(out, b"E", json.dumps({"kind": type(exc).__name__,
                                      "message": redact(str(exc))}).encode())


def _write(out: IO[bytes], kind: bytes, payload: bytes | memoryview) -> None:
    _write_all(out.fileno(), HEADER.pack(kind, len(payload)))
    _write_all(out.fileno(), payload)


def _write_parts(out: IO[bytes], kind: bytes, parts: list[bytes | memoryview]) -> None:
    """One frame whose payload is `parts` one after the other."""
    _write_all(out.fileno(), HEADER.pack(kind, sum(map(len, parts))))
    for part in parts:
        _write_all(out.fileno(), part)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte with os.write, handling partial writes ourselves. A reader stopped
    and continued (SIGSTOP, SIGCONT: a frozen VM, a debugger) gets partial pipe writes, and
    Python's buffered stdout can then corrupt the stream (bad marshal data in the worker)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


if __name__ == "__main__":
    sys.exit(main())
