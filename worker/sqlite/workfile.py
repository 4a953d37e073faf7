"""A table's work file: its rows and its checkpoint, committed together.

One SQLite file per table, merged at finalize (docs/architecture.md, "Work files"), so tables
copy in parallel without sharing SQLite's single writer, and retrying a table touches only its
file. Small tables share one work file per group (worker/jobs/grouping.py): creating,
syncing and closing a file costs more than copying such a table, and a WAL commit does not
sync. Each table keeps its own checkpoint row there, so it resumes, retries and fences
alone. The checkpoint row holds the resume key, row count, running checksum, lossy counts and
the fencing token of the lease holder allowed to write: a chunk commits only while its
writer's token is the newest, checked inside the same transaction.

A table copied into a work file of its own writes with a rollback journal; a group's file,
and any file at rest, is in WAL (open_work_db, WorkFile.close). A copy appends: SQLite
journals only the pages that existed when a transaction began (the B-tree's right edge, the
checkpoint row's page), so each chunk's pages are written once, to the file, where a WAL
writes them twice (the WAL, then the checkpoint's copy into the file). The price is three
fsyncs per commit (synchronous=FULL), cheap for a big table's few large chunks and dear for
many small tables' many tiny commits, which is why groups keep the WAL. ops/bench/RESULTS.md
has the figures.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.core import filemodes
from worker.core.checksum import as_hex
from worker.core.errors import LeaseLost, TargetError, VerificationFailed, VolumeFull, WorkFileBusy
from worker.core.identifiers import CHECKPOINT_TABLE, quote
from worker.core.logs import get_logger
from worker.core.model import TablePlan
from worker.core.serverpaths import on_volume
from worker.native import fastsqlite
from worker.sqlite.wal_copier import WRITER_CHECKPOINT_PAGES, WalCopier

CHECKPOINT_DDL = f"""
CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (
  name TEXT PRIMARY KEY,
  last_key TEXT,
  rows INTEGER NOT NULL,
  checksum TEXT NOT NULL,
  lossy TEXT NOT NULL,
  chunks INTEGER NOT NULL,
  token INTEGER NOT NULL,
  done INTEGER NOT NULL
)"""


CACHE_MIN_BYTES = 2 * 1024 * 1024  # SQLite's default page cache
CACHE_MAX_BYTES = 64 * 1024 * 1024
# Rows of at least chunk_bytes / BIG_ROW_PARTS on average make a chunk of big rows.
BIG_ROW_PARTS = 8


@dataclass
class Checkpoint:
    last_key: list[Any] | None = None
    rows: int = 0
    checksum: int = 0
    lossy: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    token: int = 0
    done: bool = False


def translate_sqlite_error(exc: sqlite3.Error, *, what: str) -> TargetError:
    text = str(exc)
    if "disk is full" in text or "SQLITE_FULL" in text:
        return VolumeFull(f"{what}: the data volume is full ({text}); free space on it, then "
                          "`liteshift retry` the job")
    if "database is locked" in text:  # SQLITE_BUSY after the busy timeout
        return WorkFileBusy(f"{what}: another process holds its lock ({text}), most likely "
                            "a worker that froze in the middle of a commit; will retry")
    return TargetError(f"{what}: {text}")


def tables_present(path: Path, names: Sequence[str]) -> set[str]:
    """Which of `names` an existing SQLite file holds (opening it rolls back a hot journal)."""
    db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=30)
    try:
        marks = ", ".join("?" * len(names))
        return {r[0] for r in db.execute(
            f"SELECT name FROM sqlite_master WHERE name IN ({marks})", tuple(names))}
    finally:
        db.close()


def remove_database_files(path: Path) -> None:
    """A SQLite file and the journal, WAL and shared memory SQLite keeps beside it by name
    (left behind, a -wal or hot -journal would be applied to a new file of that name)."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def open_work_db(path: Path, names: Sequence[str], *, alone: bool = False) -> sqlite3.Connection:
    """A connection to the work file at `path` (created if missing) holding the tables
    `names`, ready for writing; one that a finalize already built on is discarded first.
    `alone`: the file is one table's, copied with a rollback journal (see the module's
    docstring) unless another connection has it open; else in WAL."""
    with sqlite_errors(f"opening work file {on_volume(path)}"):
        filemodes.make_dirs(path.parent)
        _discard_if_built(path, names)
        filemodes.create_file(path)  # its mode, which SQLite gives its -wal and -shm
        db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        _set_journal(db, alone=alone)
        # A CHECK that SQLite evaluates differently from PostgreSQL must not stop a copy
        # of rows PostgreSQL accepted: finalize audits every CHECK over the whole table.
        db.execute("PRAGMA ignore_check_constraints=ON")
        db.execute(CHECKPOINT_DDL)
    return db


def _set_journal(db: sqlite3.Connection, *, alone: bool) -> None:
    if alone:
        try:
            mode = db.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except sqlite3.OperationalError:  # another connection has it open: it stays in WAL
            mode = "wal"
        if mode != "wal":
            # A rollback journal is safe at any crash only when synced before the file is
            # written, and the file before the journal is let go: FULL. Nothing committed
            # is lost.
            db.execute("PRAGMA synchronous=FULL")
            return
    db.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a crash loses at most the last commits, never consistency, and the
    # checkpoint always matches the rows it commits with.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")


def _leave_in_wal(db: sqlite3.Connection) -> None:
    """A file at rest is in WAL whatever it was copied with: finalize tells by the WAL's
    lock that no one else has the file open before it builds on it (worker/sqlite/build.py),
    which a rollback journal's file, unlocked between transactions, cannot show."""
    try:
        db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:  # the file is complete either way; a resume switches again
        get_logger().warning("work_file_left_in_rollback_mode", error=str(exc))


def _discard_if_built(path: Path, names: Sequence[str]) -> None:
    """A finalize that built the job's file on this work file (worker/sqlite/build.py) and
    was killed before moving it away left its tables without their checkpoints. Copying into
    it again would double their rows: start a new work file instead."""
    if not path.exists():
        return
    present = tables_present(path, (CHECKPOINT_TABLE, *names))
    if present and CHECKPOINT_TABLE not in present:
        named = {"table": next(iter(present))} if len(present) == 1 else {
            "tables": sorted(present)}
        get_logger(**named).warning(
            "built_work_file_discarded", path=str(path),
            reason="a finalize built the job's file on it; its tables are copied again")
        remove_database_files(path)


@contextmanager
def sqlite_errors(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError:
        raise
    except sqlite3.Error as exc:
        raise translate_sqlite_error(exc, what=what) from None


class WorkFile:
    """One table in its work file. `db`, a connection from open_work_db, shares one
    connection among the tables of a group (the caller closes it); else the table opens
    its own."""

    def __init__(self, path: Path, plan: TablePlan, db: sqlite3.Connection | None = None):
        self.path = path
        self.plan = plan
        self._owns_db = db is None
        self.db = db if db is not None else open_work_db(path, [plan.name], alone=True)
        try:
            with self._transaction(f"opening table {plan.name!r} in work file {on_volume(path)}"):
                if not self._has_table():
                    self.db.execute(plan.create_sql)
                self.db.execute(f"INSERT OR IGNORE INTO {CHECKPOINT_TABLE} "
                                "VALUES (?, NULL, 0, ?, '{}', 0, 0, 0)", (plan.name, as_hex(0)))
        except BaseException:
            if self._owns_db:
                self.db.close()
            raise
        self.fast = fastsqlite.usable(self.db, path)
        self._wal = self.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        self._wal_copier: WalCopier | None = None  # started by the second chunk
        self._commits = 0
        self._held_kib: int | None = None  # hold_chunks' cache
        self._big_row_bytes = 0

    def close(self) -> None:
        if self._wal_copier is not None:
            self._wal_copier.stop()
            self._wal_copier = None
        if self._owns_db:
            if not self._wal:
                _leave_in_wal(self.db)
            self.db.close()

    def hold_chunks(self, chunk_bytes: int) -> None:
        """Give SQLite's page cache room for a chunk's pages: written once at its commit
        and read back from memory, instead of spilled to the file or WAL halfway through
        the insert and read again from the OS (a rollback journal must even be synced
        before such a spill). Bounded: a chunk ends one row past chunk_bytes, and a row
        of big values spills as before."""
        kib = max(CACHE_MIN_BYTES, min(2 * chunk_bytes, CACHE_MAX_BYTES)) // 1024
        self.db.execute(f"PRAGMA cache_size=-{kib}")
        self._held_kib, self._big_row_bytes = kib, max(1, chunk_bytes // BIG_ROW_PARTS)

    @contextmanager
    def _small_cache_for(self, payload_bytes: int, rows: int | None) -> Iterator[None]:
        """A chunk of big rows (a row of big values often is a chunk by itself) is written
        through SQLite's default cache: held whole, its pages would cost one more copy of
        the row, and spilling them costs such a chunk little."""
        big = (self._held_kib is not None and rows is not None and rows > 0
               and payload_bytes // rows >= self._big_row_bytes)
        if big:
            self.db.execute(f"PRAGMA cache_size=-{CACHE_MIN_BYTES // 1024}")  # frees pages
        try:
            yield
        finally:
            if big:
                self.db.execute(f"PRAGMA cache_size=-{self._held_kib}")

    def _has_table(self) -> bool:
        row = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                              (self.plan.name,)).fetchone()
        return row is not None

    def checkpoint(self) -> Checkpoint:
        row = self.db.execute("SELECT last_key, rows, checksum, lossy, chunks, token, done "
                              f"FROM {CHECKPOINT_TABLE} WHERE name = ?",
                              (self.plan.name,)).fetchone()
        return Checkpoint(last_key=json.loads(row[0]) if row[0] else None, rows=row[1],
                          checksum=int(row[2], 16), lossy=json.loads(row[3]), chunks=row[4],
                          token=row[5], done=bool(row[6]))

    def fence(self, token: int) -> Checkpoint:
        """Claim the file for `token`; any writer holding an older token fails at its next
        commit. Returns the checkpoint to resume from."""
        with self._transaction("claiming the work file"):
            current = self.checkpoint()
            if current.token > token:
                raise LeaseLost(f"a newer writer (token {current.token}) owns this table",
                                table=self.plan.name)
            self.db.execute(f"UPDATE {CHECKPOINT_TABLE} SET token = ? WHERE name = ?",
                            (token, self.plan.name))
            if not self.plan.key and not current.done and current.rows:
                # No key to resume from: an interrupted one-pass copy starts again from zero.
                self.db.execute(f"DELETE FROM {quote(self.plan.name)}")
                self.db.execute(f"UPDATE {CHECKPOINT_TABLE} SET last_key = NULL, rows = 0, "
                                "checksum = ?, lossy = '{}', chunks = 0 WHERE name = ?",
                                (as_hex(0), self.plan.name))
            return self.checkpoint()

    def commit_chunk(self, token: int, payload: bytes | memoryview, state: Checkpoint,
                     checksum: int | None = None, *, rows: int | None = None) -> None:
        """Write a chunk's rows (marshal bytes of a list of tuples, fastsqlite.payload_of)
        and the checkpoint after it in one transaction. Given the rows' checksum, read them
        back before committing and refuse to commit if SQLite holds anything else (affinity
        rewrites, truncation, loss). `rows`, the chunk's row count, tells a chunk of big rows
        (_small_cache_for)."""
        with self._small_cache_for(len(payload), rows), \
                self._transaction(f"writing table {self.plan.name!r}"):
            self._check_token(token)
            top = self.db.execute(f"SELECT max({self._rowid}) "
                                  f"FROM {quote(self.plan.name)}").fetchone()[0]
            rows = fastsqlite.insert_rows(self.db, self.plan.insert_sql, payload, fast=self.fast)
            if checksum is not None:
                self._check_readback(top, rows, checksum, state)
            self._save(state)
        self._commits += 1
        # From the second chunk on: a table of one chunk (most tables of an app) is done
        # before the thread would copy anything, and starting and stopping it cost more.
        if self._wal and self._wal_copier is None and self._commits > 1:
            self._wal_copier = WalCopier(self.path)
        if self._wal_copier is not None:
            self._wal_copier.nudge()

    def _check_readback(self, top: int | None, rows: int, checksum: int,
                        state: Checkpoint) -> None:
        # Rows are inserted in key order after every row already there, so SQLite gives the
        # new ones higher rowids (an INTEGER PRIMARY KEY is the key itself). One chunk's
        # rows are bounded by bytes, so they are read back at once.
        select = (f"SELECT {', '.join(quote(c.name) for c in self.plan.columns)} "
                  f"FROM {quote(self.plan.name)}")
        if top is not None:
            select += f" WHERE {self._rowid} > ?"
        found, readback = fastsqlite.readback(self.db, select, top, fast=self.fast)
        if (found, readback) != (rows, checksum):
            raise VerificationFailed(
                f"table {self.plan.name!r}: the chunk ending at key {state.last_key} reads "
                f"back from SQLite as {found} rows with checksum {as_hex(readback)}, but "
                f"{rows} rows with checksum {as_hex(checksum)} were written: SQLite changed or "
                "lost values, and nothing of this chunk was kept. Retry the table, and report "
                "this if it repeats", table=self.plan.name)

    @property
    def _rowid(self) -> str:
        return self.plan.rowid or "rowid"  # the plan refused a table without one

    def count(self) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM {quote(self.plan.name)}").fetchone()[0])

    def build_indexes(self, token: int) -> list[str]:
        """Build the table's secondary indexes here, once its rows are verified: the job's
        file gets them with the rows when finalize merges this file (SQLite's transfer
        copies an index's entries, already in order, instead of sorting them again), so the
        sorting happens while other tables still copy instead of in the serial finalize.
        An index SQLite refuses (duplicates under its rules) is left to finalize, which
        reports it. Returns the names built."""
        built = []
        present = {r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        for index in self.plan.indexes:
            if index["name"] in present:
                continue
            try:
                with self._transaction(f"indexing table {self.plan.name!r}"):
                    self._check_token(token)
                    self.db.execute(index["sql"])
            except sqlite3.IntegrityError:
                continue
            built.append(index["name"])
        return built

    def mark_done(self, token: int, state: Checkpoint) -> None:
        with self._transaction("finishing the work file"):
            self._check_token(token)
            state.done = True
            self._save(state)

    def _save(self, state: Checkpoint) -> None:
        self.db.execute(
            f"UPDATE {CHECKPOINT_TABLE} SET last_key = ?, rows = ?, checksum = ?, lossy = ?, "
            "chunks = ?, done = ? WHERE name = ?",
            (json.dumps(state.last_key) if state.last_key is not None else None, state.rows,
             as_hex(state.checksum), json.dumps(state.lossy), state.chunks, int(state.done),
             self.plan.name))

    def _check_token(self, token: int) -> None:
        row = self.db.execute(f"SELECT token FROM {CHECKPOINT_TABLE} WHERE name = ?",
                              (self.plan.name,)).fetchone()
        if row[0] != token:
            raise LeaseLost(f"another worker (token {row[0]}) took over this table",
                            table=self.plan.name)

    @contextmanager
    def _transaction(self, what: str) -> Iterator[None]:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, what=what) from None
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException as exc:
            # After SQLITE_FULL or an I/O error SQLite has already rolled back by itself: a
            # second ROLLBACK would fail and hide the real error behind "no transaction".
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
                raise translate_sqlite_error(exc, what=what) from None
            raise

    def find_bad_row(self, rows: Sequence[tuple]) -> tuple[tuple | None, str]:
        """After a chunk broke a constraint, find the first row that does, without keeping
        anything: each row is tried inside a savepoint that is rolled back."""
        self.db.execute("BEGIN")
        try:
            for row in rows:
                try:
                    self.db.execute(self.plan.insert_sql, row)
                except sqlite3.IntegrityError as exc:
                    return row, str(exc)
            return None, "unknown constraint"
        finally:
            self.db.execute("ROLLBACK")
