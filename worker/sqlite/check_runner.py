"""Read-only pieces of work run at once on every core: on the connection that built a file,
and on read-only connections of their own to the same file.

Python's sqlite3 and the C read-back (worker/native/_fastsqlite.c) release the GIL while
SQLite works, so one thread per connection is enough. The building connection sees the file
as it will be committed (it may hold an open write transaction: readers can still read then,
as long as it holds no more than a RESERVED lock); a reader sees the file as last committed,
in one read transaction from its first piece of work to its last. Pieces that must see the
former are pinned to the building connection (`main_only`); the rest go to whichever
connection is free first, largest first.
"""

from __future__ import annotations

import contextvars
import sqlite3
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.core.steps import step

#: How long a reader waits for its read lock. The building connection holds at most a
#: RESERVED lock while pieces run, which never blocks a reader; anything longer means
#: someone else has the file, and the building connection then does every piece itself.
READER_WAIT_S = 1.0


@dataclass
class Piece:
    key: Hashable
    item: str  # what progress names while it runs
    run: Callable[[sqlite3.Connection], Any]
    size: int = 0  # larger first
    main_only: bool = False


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None

    def result(self) -> Any:
        """The piece's value, or what it raised, raised again here."""
        if self.error is not None:
            raise self.error
        return self.value


@dataclass
class _Queue:
    pieces: list[Piece]
    total: int
    outcomes: dict[Hashable, Outcome] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, *, main: bool) -> Piece | None:
        with self.lock:
            at = next((n for n, p in enumerate(self.pieces) if main or not p.main_only), None)
            if at is None:
                return None
            piece = self.pieces.pop(at)
            # The listener (finalize's progress) is called by one thread at a time.
            step("checking", len(self.outcomes), self.total, piece.item)
            return piece

    def work(self, db: sqlite3.Connection, *, main: bool) -> None:
        while (piece := self.take(main=main)) is not None:
            try:
                outcome = Outcome(value=piece.run(db))
            except Exception as exc:  # kept for the caller, who reads outcomes in order
                outcome = Outcome(error=exc)
            with self.lock:
                self.outcomes[piece.key] = outcome


def run_pieces(db: sqlite3.Connection, pieces: list[Piece], *, readers: int,
               open_reader: Callable[[Path], sqlite3.Connection | None]
               ) -> dict[Hashable, Outcome]:
    """Run every piece once, on `db` (the calling thread) and on up to `readers` reader
    connections made by `open_reader` (None: that reader is not had); each piece's outcome.
    A piece that fails does not stop the others: the caller decides which failure counts."""
    queue = _Queue(sorted(pieces, key=lambda p: (not p.main_only, -p.size)), len(pieces))
    path = _main_file(db)
    threads = [threading.Thread(target=contextvars.copy_context().run,
                                args=(_reader, path, queue, open_reader),
                                name=f"check-reader-{n}", daemon=True)
               for n in range(readers if path else 0)]
    for thread in threads:
        thread.start()
    try:
        queue.work(db, main=True)
    except BaseException:  # a signal's exception: the readers stop after their piece
        with queue.lock:
            queue.pieces.clear()
        raise
    finally:
        for thread in threads:
            thread.join()
    return queue.outcomes


def _reader(path: Path, queue: _Queue,
            open_reader: Callable[[Path], sqlite3.Connection | None]) -> None:
    try:
        db = open_reader(path)
    except sqlite3.Error:
        db = None
    if db is None:
        return  # the building connection takes every piece
    try:
        queue.work(db, main=False)
    finally:
        db.close()


def open_reader(path: Path, setup: Callable[[sqlite3.Connection], bool]
                ) -> sqlite3.Connection | None:
    """A read-only connection to `path` in a read transaction that lasts until it closes, or
    None when it cannot be had at once or `setup(connection)` says it cannot be used."""
    db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                         isolation_level=None, timeout=READER_WAIT_S)
    try:
        db.execute("BEGIN")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read lock, now
        if setup(db):
            return db
    except sqlite3.Error:
        pass
    db.close()
    return None


def _main_file(db: sqlite3.Connection) -> Path | None:
    name = next((row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main"), "")
    return Path(name) if name else None
