"""Helpers for the one-moment tests: three tables chained by foreign keys, a writer that
keeps adding one row to each per transaction while a job copies them, and checks on the
published file.

accounts ← ledger ← zz_audit: every writer transaction inserts an account, a ledger line for
it and an audit row for that line, all marked `w = 1`. A file that is one moment of the
source therefore holds as many writer rows in each table, and no orphan.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TABLES = ("accounts", "ledger", "zz_audit")

# (accounts, ledger, zz_audit) rows before the writer starts; the ledger takes many chunks
SEED = (4_000, 60_000, 4_000)
CHUNK_ROWS = 2_000
WRITER_PAUSE_S = 0.003


class Writer(threading.Thread):
    """Runs `one_transaction()` every few milliseconds until stopped; counts its commits."""

    def __init__(self, connect: Callable[[], Any], one_transaction: Callable[[Any], None]):
        super().__init__(name="moment-writer", daemon=True)
        self._connect = connect
        self._one = one_transaction
        self._halt = threading.Event()
        self.commits = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = self._connect()
            try:
                while not self._halt.is_set():
                    self._one(conn)
                    self.commits += 1
                    time.sleep(WRITER_PAUSE_S)
            finally:
                conn.close()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> int:
        self._halt.set()
        self.join(timeout=30)
        assert self.error is None, f"the writer failed: {self.error!r}"
        return self.commits


def wait_commits(writer: Writer, at_least: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while writer.commits < at_least:
        assert writer.error is None, f"the writer failed: {writer.error!r}"
        assert time.monotonic() < deadline, f"the writer made {writer.commits} commits"
        time.sleep(0.01)


def one_moment(path: Path) -> dict[str, int]:
    """The published file holds one moment: no orphan, and as many writer rows per table.
    Returns each table's count of writer rows."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        counts = {t: db.execute(f'SELECT count(*) FROM "{t}" WHERE w = 1').fetchone()[0]
                  for t in TABLES}
        seeded = {t: db.execute(f'SELECT count(*) FROM "{t}" WHERE w = 0').fetchone()[0]
                  for t in TABLES}
    finally:
        db.close()
    assert seeded == dict(zip(TABLES, SEED, strict=True)), seeded
    assert len(set(counts.values())) == 1, f"writer rows per table differ: {counts}"
    return counts
