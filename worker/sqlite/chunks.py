"""The chunk loop: stream a table's rows, convert, checksum, and commit chunk + checkpoint.

Plain functions, no Celery: `copy_rows` takes any iterator factory of source rows, so a test
can feed it a list. A reader thread turns rows into chunks while the calling thread commits
the previous one (both drivers release the GIL while they do I/O).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

from worker import native
from worker.core.checksum import fold
from worker.core.errors import BigRowHere, TargetError
from worker.core.model import TablePlan
from worker.native.fastsqlite import LIST_HEADER, payload_of, rows_of
from worker.native.pgcopy import CopyMessages, LibpqCopy, first_big
from worker.sqlite.batches import (
    Batch,
    RowSender,
    add_counts,
    counted_fields,
    key_getter,
    native_encoder,
    python_encoder,
    values_encoder,
)
from worker.sqlite.workfile import Checkpoint, WorkFile

# A source's rows in key order (worker/sources/base.py's Rows)
Rows = Iterator[Any] | CopyMessages | LibpqCopy
RowSource = Callable[[Sequence[Any] | None], Rows]  # after_key -> rows in key order
MICRO_MAX = 2_000  # rows per micro-batch when rows are small
CHUNKS_AHEAD = 1  # chunks the reader may prepare ahead of the writer (bounds memory)
RAMP_START = 16  # the first chunk holds chunk_rows / RAMP_START rows (see ramp)
RATE_WINDOW_S = 10.0  # the ETA follows the rate of about the last ten seconds


@dataclass
class Chunk:
    """A chunk's rows travel as the marshal bytes they are checksummed in (payload_of), so
    the work file binds from them without a Python object per value."""
    payload: bytes | memoryview  # a view while a reader process's buffer holds it
    row_count: int
    checksum: int
    size_bytes: int
    last_key: list[Any] | None
    lossy: dict[str, int] = field(default_factory=dict)
    sent: bool = False  # its payload was written to make_chunks' frames_fd (empty here)
    # For a reader process's frames (make_chunks' frames_fd), the payload in pieces, never
    # joined (payload empty): joining them cost a fresh 8 MiB and its page faults a chunk.
    parts: list[bytes | memoryview] | None = None

    @property
    def rows(self) -> list[tuple]:
        return rows_of(self.payload)


ChunkSource = Callable[[Sequence[Any] | None], Iterator[Chunk]]  # after_key -> chunks


@dataclass
class Progress:
    rows_done: int
    chunk_rows: int
    chunk_bytes: int
    last_key: list[Any] | None
    checksum: int
    elapsed_s: float
    rows_copied_now: int  # rows this attempt has committed (for rows/s)
    recent_rows_per_s: float | None = None  # over the last RATE_WINDOW_S (RecentRate)
    commit_s: float = 0.0  # the chunk's SQLite transaction, read-back and fsync included


class RecentRate:
    """Rows per second over the last RATE_WINDOW_S of commits, measured from the first
    commit on: the attempt's average includes the reader's start, which would make the first
    ETAs of a short copy several times too long."""

    def __init__(self) -> None:
        self._marks: deque[tuple[float, int]] = deque()  # (elapsed s, rows) at each commit

    def add(self, elapsed_s: float, rows: int) -> float | None:
        marks = self._marks
        marks.append((elapsed_s, rows))
        while len(marks) > 2 and elapsed_s - marks[1][0] >= RATE_WINDOW_S:
            marks.popleft()
        since, rows_then = marks[0]
        seconds = elapsed_s - since
        return (rows - rows_then) / seconds if len(marks) > 1 and seconds > 0 else None


def make_chunks(rows: Rows, plan: TablePlan, *, chunk_rows: int, chunk_bytes: int,
                frames_fd: int = -1, stop_at_big: bool = False) -> Iterator[Chunk]:
    """Group rows into chunks bounded by rows and by bytes. Work is done per micro-batch,
    in C (pgcopy) or with C-level maps; the micro-batch shrinks for wide rows so a table of
    5 MB blobs never holds more than about chunk_bytes at once. A LibpqCopy makes whole
    chunks in C. The first chunks are smaller (ramp): the writer starts while the reader
    is still on its first full chunk, instead of waiting for it. Given frames_fd (a reader
    process's stdout), a chunk's payload comes in its parts (Chunk.parts), for the frame
    that carries it, and a row longer than chunk_bytes is written there as a chunk by itself
    (Chunk.sent), its big values never joined into a payload: by LibpqCopy from libpq's
    message, and a driver's row of Python values from its values (RowSender). A LibpqCopy
    writes every chunk there, from one buffer it reuses (LibpqCopy.chunks). With
    stop_at_big instead (a worker reading a table itself), such a row ends the chunks: the
    chunk before it comes, then BigRowHere (copy_rows has a reader process read on)."""
    if isinstance(rows, LibpqCopy):
        yield from _libpq_chunks(rows, plan, chunk_rows=chunk_rows, chunk_bytes=chunk_bytes,
                                 frames_fd=frames_fd, stop_at_big=stop_at_big)
        return
    limits = ramp(chunk_rows)
    encode_batch = (native_encoder(plan, rows.codec) if isinstance(rows, CopyMessages)
                    else values_encoder(plan) or python_encoder(plan))
    sender = (RowSender.of(plan, frames_fd, chunk_bytes)
              if frames_fd >= 0 and not isinstance(rows, CopyMessages) else None)
    stop = _big_row_finder(rows, chunk_bytes) if stop_at_big else None
    pending = _Pending(joined=frames_fd < 0)
    micro = 1  # until one row tells us how wide rows are: 64 blobs of 5 MB would not fit
    limit = next(limits)
    while raw := list(islice(rows, min(micro, limit - pending.count))):
        big = None
        stopping = stop is not None and (at := stop(raw)) >= 0
        if stopping:
            raw = raw[:at]  # the big row is dropped: the reader process reads it again
        elif sender is not None and (at := sender.first_big(raw)) >= 0:
            rows, big, raw = chain(raw[at + 1:], rows), raw[at], raw[:at]
        if raw:
            batch = encode_batch(raw, pending.lossy)
            del raw
            pending.add(batch)
            micro = _micro_rows(chunk_bytes, batch)
            del batch
        if pending.count and (stopping or big is not None or pending.count >= limit
                              or pending.size >= chunk_bytes):
            yield pending.chunk()  # before a big row: the chunk before it goes first
            limit = next(limits)
        if stopping:
            raise BigRowHere("a row longer than a chunk")
        if big is not None and sender is not None:
            sent, big = Chunk(b"", *sender.send(big), sent=True), None
            yield sent
            del sent
            limit = next(limits)
    if pending.count:
        yield pending.chunk()


def _big_row_finder(rows: Rows, chunk_bytes: int) -> Callable[[list[Any]], int] | None:
    """stop_at_big's look at a micro-batch: the index of its first row longer than a chunk,
    or -1, at C speed. None for the pure-Python path (no extension), which is not held to
    the bound."""
    if isinstance(rows, CopyMessages):
        def first_long(raw: list[Any]) -> int:
            if max(map(len, raw)) < chunk_bytes:
                return -1
            return next(i for i, message in enumerate(raw) if len(message) >= chunk_bytes)
        return first_long
    if native.extension("_pgcopy") is None:
        return None
    return lambda raw: first_big(raw, chunk_bytes)


def _micro_rows(chunk_bytes: int, batch: Batch) -> int:
    """Rows for the next micro-batch: an eighth of a chunk's bytes, at rows as wide as
    this batch's."""
    return max(1, min(MICRO_MAX, chunk_bytes // 8 // max(1, len(batch.data) // batch.rows)))


class _Pending:
    """The micro-batches of the chunk being made."""

    def __init__(self, *, joined: bool = True) -> None:
        self.joined = joined  # a chunk's payload as one bytes object, else as Chunk.parts
        self.parts: list[bytes | memoryview] = []  # each micro-batch's rows' marshal bytes
        self.whole: bytes | None = None  # the first micro-batch's payload, if its encoder made one
        self.count = self.size = self.checksum = 0
        self.lossy: dict[str, int] = {}
        self.last_key: list[Any] | None = None

    def add(self, batch: Batch) -> None:
        self.last_key = batch.key if batch.key is not None else self.last_key
        self.checksum = fold(self.checksum, batch.checksum)
        self.whole = batch.whole if not self.parts else None
        self.parts.append(batch.data)
        self.count, self.size = self.count + batch.rows, self.size + len(batch.data)

    def chunk(self) -> Chunk:
        """The chunk of what was added, and a fresh start."""
        if self.joined:
            chunk = Chunk(_payload(self.parts, self.count, self.whole), self.count,
                          self.checksum, self.size, self.last_key, self.lossy)
        else:
            chunk = Chunk(b"", self.count, self.checksum, self.size, self.last_key, self.lossy,
                          parts=[LIST_HEADER.pack(b"[", self.count), *self.parts])
        self.parts, self.whole, self.count, self.size, self.checksum = [], None, 0, 0, 0
        self.lossy = {}
        return chunk


def _payload(parts: list[bytes | memoryview], rows: int, whole: bytes | None) -> bytes:
    """A chunk of one micro-batch (a row of big values: a chunk by itself) is that batch's
    own payload when its encoder made one, not a copy of it."""
    if whole is not None and len(parts) == 1:
        return whole
    return payload_of(parts, rows)


def ramp(chunk_rows: int) -> Iterator[int]:
    """Rows per chunk: chunk_rows / 16 first, doubling up to chunk_rows, so the writer
    starts on a small chunk instead of idling while a full first chunk is read."""
    limit = max(1, chunk_rows // RAMP_START)
    while True:
        yield limit
        limit = min(chunk_rows, limit * 2)


def _libpq_chunks(copy: LibpqCopy, plan: TablePlan, *, chunk_rows: int, chunk_bytes: int,
                  frames_fd: int, stop_at_big: bool) -> Iterator[Chunk]:
    flags = counted_fields(plan)
    key_of = key_getter(plan.key_positions)
    key_fields = copy.codec.key_fields(plan.key_positions)
    for payload, rows, checksum, size, last, counts in copy.chunks(
            ramp(chunk_rows), chunk_bytes, key_fields, frames_fd, stop_at_big):
        lossy: dict[str, int] = {}
        add_counts(lossy, flags, counts)
        last_key = key_of(copy.codec.raw_fields(last)) if key_of and last is not None else None
        yield Chunk(payload if payload is not None else b"", rows, checksum, size, last_key,
                    lossy, sent=payload is None)
        del payload  # not held while the next chunk is read


def copy_rows(*, plan: TablePlan, work: WorkFile, token: int, chunk_rows: int,
              chunk_bytes: int, source: RowSource | None = None,
              chunk_source: ChunkSource | None = None,
              big_row_source: ChunkSource | None = None,
              before_commit: Callable[[], None] = lambda: None,
              after_commit: Callable[[Progress], None] = lambda p: None,
              read_ahead: bool = True) -> Checkpoint:
    """Copy the rest of a table into its work file; returns the final checkpoint.

    Resumes after the checkpoint's last key. Chunks are made from `source`'s rows by a
    reader thread (or, without `read_ahead`, in this thread: for a small table the thread
    costs more than it saves), or come ready from `chunk_source` (a reader process, which
    works ahead by itself). Given `big_row_source` (a reader process), a row of `source`
    longer than a chunk ends `source`'s part: the rest of the table comes from there, after
    the last commit (from the start again for a table without a key: WorkFile.fence).
    `before_commit` may raise to stop (cancel, lost lease); `after_commit` mirrors progress
    (Redis, logs) once a chunk is durable.
    """
    state = work.fence(token)
    if state.done:
        return state
    work.hold_chunks(chunk_bytes)
    resume_after = state.last_key
    if chunk_source is not None:
        chunks = chunk_source(resume_after)
    elif source is not None:
        def make() -> Iterator[Chunk]:
            return make_chunks(source(resume_after), plan, chunk_rows=chunk_rows,
                               chunk_bytes=chunk_bytes, stop_at_big=big_row_source is not None)
        chunks = _read_ahead(make, alone_bytes=chunk_bytes * 3 // 2) if read_ahead else make()
    else:
        raise TypeError("copy_rows needs a source or a chunk_source")
    committer = _Committer(plan, work, token, state, before_commit, after_commit)
    try:
        committer.commit_all(chunks)
    except BigRowHere:
        assert big_row_source is not None, "stop_at_big is asked only with a big_row_source"
        committer.state = work.fence(token)  # the last commit (a keyless table: emptied)
        committer.commit_all(big_row_source(committer.state.last_key))
    work.mark_done(token, committer.state)
    return committer.state


class _Committer:
    """copy_rows' writer: each chunk and the checkpoint after it in one transaction, then
    its progress."""

    def __init__(self, plan: TablePlan, work: WorkFile, token: int, state: Checkpoint,
                 before_commit: Callable[[], None], after_commit: Callable[[Progress], None]):
        self.plan, self.work, self.token, self.state = plan, work, token, state
        self.before_commit, self.after_commit = before_commit, after_commit
        self.started, self.copied_now, self.recent = time.monotonic(), 0, RecentRate()

    def commit_all(self, chunks: Iterator[Chunk]) -> None:
        for chunk in chunks:
            self.commit(chunk)
            del chunk  # not held while the next one is made: a worker holds about three chunks

    def commit(self, chunk: Chunk) -> None:
        self.before_commit()
        state = self.state = _advance(self.state, chunk)
        committing = time.monotonic()
        try:
            self.work.commit_chunk(self.token, chunk.payload, state, chunk.checksum,
                                   rows=chunk.row_count)
        except sqlite3.IntegrityError as exc:
            raise _constraint_error(self.work, self.plan, chunk, exc) from None
        self.copied_now += chunk.row_count
        elapsed = time.monotonic() - self.started
        self.after_commit(Progress(rows_done=state.rows, chunk_rows=chunk.row_count,
                                   chunk_bytes=chunk.size_bytes, last_key=state.last_key,
                                   checksum=state.checksum, elapsed_s=elapsed,
                                   rows_copied_now=self.copied_now,
                                   recent_rows_per_s=self.recent.add(elapsed, self.copied_now),
                                   commit_s=time.monotonic() - committing))


def _advance(state: Checkpoint, chunk: Chunk) -> Checkpoint:
    lossy = dict(state.lossy)
    for name, count in chunk.lossy.items():
        lossy[name] = lossy.get(name, 0) + count
    return Checkpoint(last_key=chunk.last_key if chunk.last_key is not None else state.last_key,
                      rows=state.rows + chunk.row_count, checksum=fold(state.checksum,
                                                                        chunk.checksum),
                      lossy=lossy, chunks=state.chunks + 1, token=state.token, done=False)


def _constraint_error(work: WorkFile, plan: TablePlan, chunk: Chunk,
                      exc: sqlite3.IntegrityError) -> TargetError:
    row, reason = work.find_bad_row(chunk.rows)
    key = None
    if row is not None and plan.key:
        by_name = {c.name: v for c, v in zip(plan.columns, row)}
        key = {k: by_name.get(k) for k in plan.key}
    error = TargetError(f"a row of {plan.name!r} breaks a constraint in SQLite ({reason}); "
                        f"offending key: {key}. Fix the row at the source, then retry the "
                        "table", table=plan.name)
    error.offending_key = key  # type: ignore[attr-defined]
    return error


_DONE = object()


def _read_ahead(make: Callable[[], Iterator[Chunk]], *,
                alone_bytes: int | None = None) -> Iterator[Chunk]:
    """Run the chunk producer in a thread, at most CHUNKS_AHEAD chunks ahead of the writer.
    A chunk of `alone_bytes` or more (a chunk ends one row past its byte bound: this one
    ends in a row of big values) is read ahead of nothing: the producer waits for the writer
    to be done with it before it reads on, so that a table of big rows holds one of them,
    not three. Its exceptions are re-raised here; stopping early tells it to stop too."""
    handoff: queue.Queue = queue.Queue(maxsize=CHUNKS_AHEAD)
    stop = threading.Event()
    finished = threading.Condition()
    counts = {"handed": 0, "finished": 0}  # chunks handed to the writer, and done with

    def wait_until_finished(chunk: Chunk) -> None:
        if alone_bytes is None or chunk.size_bytes < alone_bytes:
            return
        with finished:
            while counts["finished"] < counts["handed"] and not stop.is_set():
                finished.wait(timeout=0.2)

    def hand_over(item: object) -> bool:
        while not stop.is_set():  # the consumer may have stopped early: don't block forever
            try:
                handoff.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in make():
                with finished:
                    counts["handed"] += 1
                if not hand_over(chunk):
                    return
                wait_until_finished(chunk)
                del chunk
            hand_over(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            hand_over(exc)

    reader = threading.Thread(target=produce, name="liteshift-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            item = None  # the writer is done with it: the producer may read on
            with finished:
                counts["finished"] += 1
                finished.notify()
    finally:
        stop.set()
        reader.join(timeout=10)
