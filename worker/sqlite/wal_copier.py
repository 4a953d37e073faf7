"""Copy a work file's WAL into the file from a thread of its own, beside the writer (a
group's work file: a table's own file is copied with a rollback journal, worker/sqlite/workfile.py).

SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so the
writer itself would copy every page a second time (ops/bench/RESULTS.md has what that
cost). A PASSIVE checkpoint from another connection runs while the writer inserts
the next chunk (SQLite releases the GIL while it works), on the core the writer leaves idle.
Nothing here is needed for safety: the WAL holds every committed page until a checkpoint
copies it, whichever connection runs it; a kill at any instant loses nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from worker.core.logs import get_logger

# Kept by the writer in case this thread falls behind or fails: past it, the writer copies
# the WAL itself again, so the WAL stays bounded (4 KiB pages: 64 MiB).
WRITER_CHECKPOINT_PAGES = 16_384


class WalCopier:
    def __init__(self, path: Path):
        self._path = path
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"wal-copier {path.name}",
                                        daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """A commit added pages to the WAL: copy them when the previous copy is done."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the copy in progress, close the connection, end the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self._path, isolation_level=None, timeout=0,
                                 check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")  # the writer's durability, no more
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                # PASSIVE: copies what no reader still needs and never waits on a lock.
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            # The writer's own checkpoint (WRITER_CHECKPOINT_PAGES) takes over; a full disk
            # reaches the writer at its next commit.
            get_logger().warning("wal_copier_failed", path=str(self._path), error=str(exc))
        finally:
            if db is not None:
                db.close()
