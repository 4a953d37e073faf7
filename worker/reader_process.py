"""A big table's reader in a child process: `python -m worker.reader_process`.

Reading (the driver's row parsing), conversion and checksums take about as much CPU as
SQLite's inserts, and in one process they share one GIL. Moving them to a child lets a
worker use two cores on one table: the child streams, converts and checksums chunks exactly
as `chunks.make_chunks` does in-process, and the worker only inserts and commits them.

The request comes as JSON on stdin (never argv: argv shows in `ps`, and it holds the source
URL). The answer is a stream of frames on stdout, each a kind byte and a length:
  C  a chunk: marshal of (payload, row_count, checksum, size_bytes, last_key, lossy)
  E  an error: JSON {"kind": class name in worker.errors, "message": ...}
  D  done
The child holds no state: killed at any moment, the worker resumes from its own checkpoint.
When the worker dies first, the child's next write fails (EPIPE) and it exits.
"""

from __future__ import annotations

import gc
import json
import marshal
import os
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from worker import errors, memory
from worker.checksum import ENCODING_VERSION
from worker.chunks import Chunk
from worker.errors import LiteshiftError, SourceUnavailable
from worker.redact import redact
from worker.translate import TablePlan

HEADER = struct.Struct(">cQ")


def chunks_from_child(*, source_url: str, schema: str, plan: TablePlan,
                      after: Sequence[Any] | None, chunk_rows: int, chunk_bytes: int,
                      connect_timeout_s: int) -> Iterator[Chunk]:
    """The worker's side: start the child, yield its chunks, re-raise its errors as ours.
    Closing the iterator early (cancel, lease lost) kills the child."""
    request = {"source": source_url, "schema": schema, "plan": plan.to_dict(),
               "after": list(after) if after is not None else None, "chunk_rows": chunk_rows,
               "chunk_bytes": chunk_bytes, "timeout_s": connect_timeout_s}
    child = subprocess.Popen([sys.executable, "-m", "worker.reader_process"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env={**memory.ENV, **os.environ})  # memory.py: big values
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(json.dumps(request).encode())
        child.stdin.close()
        while True:
            kind, payload = _read_frame(child.stdout)
            if kind == b"C":
                chunk = Chunk(*marshal.loads(payload))
                del payload  # not held while the chunk is inserted
                yield chunk
                del chunk
            elif kind == b"D":
                return
            elif kind == b"E":
                raise _error(json.loads(payload), plan.name)
            else:
                raise SourceUnavailable(
                    f"the reader process for table {plan.name!r} ended without finishing "
                    f"(exit status {child.wait()}); will retry from the last committed chunk",
                    table=plan.name)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()


def _read_frame(stream: IO[bytes]) -> tuple[bytes | None, bytearray]:
    header = _read_exact(stream, HEADER.size)
    if header is None:
        return None, bytearray()
    kind, length = HEADER.unpack(header)
    payload = _read_exact(stream, length)
    return (kind, payload) if payload is not None else (None, bytearray())


def _read_exact(stream: IO[bytes], size: int) -> bytearray | None:
    """`size` bytes from the pipe's file descriptor, or None at its end. Raw reads: see
    _write_all for why the buffered layer is not trusted here."""
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        n = os.readv(stream.fileno(), [view[got:]])
        if n == 0:
            return None
        got += n
    return data


def _error(answer: dict[str, Any], table: str) -> LiteshiftError:
    cls = getattr(errors, answer.get("kind", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, LiteshiftError)):
        cls = LiteshiftError
    return cls(answer["message"], table=table)


def main() -> int:
    # A reader makes a few objects per row and keeps none: the cycle collector found nothing
    # to free and cost 1.1 s of CPU per 1M rows (one message object per row).
    gc.disable()
    out = sys.stdout.buffer
    try:
        _serve(json.loads(sys.stdin.buffer.read()), out)
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
    from worker.chunks import make_chunks
    from worker.sealing import remember_url_password
    from worker.source_url import parse_source_url

    remember_url_password(request["source"])
    source = parse_source_url(request["source"])
    plan = TablePlan.from_dict(request["plan"])
    reader = sources.for_kind(source.kind)
    with reader.connect(source, timeout_s=request["timeout_s"]) as conn:
        rows = reader.stream_table(conn, schema=request["schema"], plan=plan,
                                   after=request["after"])
        for chunk in make_chunks(rows, plan, chunk_rows=request["chunk_rows"],
                                 chunk_bytes=request["chunk_bytes"]):
            _write(out, b"C", marshal.dumps((chunk.payload, chunk.row_count, chunk.checksum,
                                             chunk.size_bytes, chunk.last_key, chunk.lossy),
                                            ENCODING_VERSION))
            del chunk  # not held while the next one is made
    _write(out, b"D", b"")


def _write(out: IO[bytes], kind: bytes, payload: bytes) -> None:
    _write_all(out.fileno(), HEADER.pack(kind, len(payload)))
    _write_all(out.fileno(), payload)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte with os.write, handling partial writes ourselves. A reader stopped
    and continued (SIGSTOP, SIGCONT: a frozen VM, a debugger) gets partial pipe writes, and
    Python 3.11's buffered stdout then corrupted the stream (bad marshal data in the
    worker; reproduced with a plain pipe, not with this loop)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


if __name__ == "__main__":
    sys.exit(main())
