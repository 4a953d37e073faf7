"""A consistent copy of a published SQLite file to download, kept while the file is unchanged
so that a download cut halfway resumes (HTTP Range) on the same bytes, with their SHA-256."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from worker.core import filemodes

STALE_AFTER_S = 24 * 3600  # a copy nobody asked for in a day goes; no download takes a day


@dataclass(frozen=True)
class Snapshot:
    path: Path
    sha256: str  # hex digest of the whole file


def download_copy(path: Path, workdir: Path) -> Snapshot:
    """The copy of `path` for downloads, made now or reused: it is reused while `path` (and
    its -wal) are unchanged, so the ranges of one download all come from the same bytes.

    A plain file copy of a database another process is writing can tear mid-transaction;
    SQLite's backup API reads under a lock and gives one committed state. The copy lives on
    the data volume (not /tmp) because it is as large as the database.
    """
    filemodes.make_dirs(workdir)
    name = f"{path.stem}-{_identity(path)}"
    copy, digest = workdir / f"{name}.db", workdir / f"{name}.sha256"
    with _locked(workdir / ".lock"):
        _sweep(workdir, keep=copy)
        if copy.exists() and digest.exists():
            os.utime(copy)  # in use: not stale
            return Snapshot(copy, digest.read_text().strip())
        for old in workdir.glob(f"{path.stem}-*"):  # earlier states of this file
            old.unlink(missing_ok=True)
        made = _backup(path, workdir)
        with open(made, "rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        os.replace(made, copy)
        with os.fdopen(filemodes.open_new(digest), "w") as handle:
            handle.write(sha256 + "\n")  # written last: a copy without it is unfinished
    return Snapshot(copy, sha256)


def _identity(path: Path) -> str:
    """Changes whenever the database's content may have: its inode, size and mtime, and its
    -wal's (commits in WAL mode change only the -wal until a checkpoint)."""
    parts = []
    for file in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            st = file.stat()
            parts.append(f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _backup(path: Path, workdir: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix="making-", suffix=".db", dir=workdir)
    try:
        filemodes.adopt(fd)
    finally:
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


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One API process at a time makes or removes copies (uvicorn may run several)."""
    with os.fdopen(filemodes.open_new(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND),
                   "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _sweep(workdir: Path, keep: Path) -> None:
    cutoff = time.time() - STALE_AFTER_S
    for old in [*workdir.glob("*.db"), *workdir.glob("*.sha256")]:
        with contextlib.suppress(OSError):
            if old.with_suffix(".db") != keep and old.stat().st_mtime < cutoff:
                old.unlink()
