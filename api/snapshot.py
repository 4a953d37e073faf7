"""A consistent copy of a published SQLite file, safe to stream while the app writes to it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from pathlib import Path

STALE_AFTER_S = 24 * 3600  # leftovers of a crashed API; no download takes a day


def snapshot(path: Path, workdir: Path) -> Path:
    """Copy `path` with SQLite's backup API into a new file in `workdir` and return it.

    A plain file copy of a database another process is writing can tear mid-transaction;
    the backup API reads under a lock and gives one committed state. The copy lives on the
    data volume (not /tmp) because it is as large as the database. The caller deletes it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    _sweep(workdir)
    fd, name = tempfile.mkstemp(prefix="download-", suffix=".db", dir=workdir)
    os.close(fd)
    out = Path(name)
    try:
        source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            with contextlib.closing(sqlite3.connect(out)) as dest:
                source.backup(dest)  # all pages in one step: one consistent read
        finally:
            source.close()
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


def _sweep(workdir: Path) -> None:
    cutoff = time.time() - STALE_AFTER_S
    for old in workdir.glob("download-*.db"):
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                old.unlink()
