"""build_database: the job's SQLite file, built from the tables' work files.

The largest work file is built on where it lies, not copied: a copy would cost its size
again, in time and in disk (docs/architecture.md, "Finalize builds on the largest work
file"). A work file holds one table, or a group of small tables (worker/jobs/grouping.py);
the build goes file by file.
Everything that changes it happens so that the work file is never lost half-changed:
- The other files' tables are merged into it first, a few files per transaction, each table
  dropped and re-created by it, so a merge can be repeated. Its own tables and checkpoints
  stay as they were: until the last step it is still a valid work file.
- Indexes, sequences and views are made in one transaction, which commits with the
  checkpoints still there: a finalize that starts again finds them made, or makes them again.
- Dropping the checkpoint table and the checks run in a second transaction under a rollback
  journal, the checks on every core (worker/sqlite/checks.py). A check that fails rolls it
  back; a worker killed inside it leaves a hot journal that SQLite rolls back when the file
  is next opened.
- What that transaction produced (the checks, the objects' fates) is written beside the
  partial file before the commit, so a finalize killed after the commit finishes from the
  built file (renamed to the partial) instead of building again from a work file now gone.
When the largest work file cannot be had to itself (a stale reader holds its WAL), every
table is merged into a new file instead.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from worker.core import filemodes
from worker.core.errors import VerificationFailed
from worker.core.identifiers import quote
from worker.core.logs import get_logger
from worker.core.model import TablePlan
from worker.core.steps import step
from worker.sqlite import post_data
from worker.sqlite.checks import run_checks
from worker.sqlite.workfile import (
    CHECKPOINT_TABLE,
    remove_database_files,
    sqlite_errors,
    tables_present,
)
from worker.state.jobfiles import read_json, write_json_atomic


def build_database(path: Path, plans: list[TablePlan], tables_dir: Path,
                   objects: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Build the file at `path` (the job's partial file) with every table's rows, indexes,
    sequences and views, checked; returns the checks, with each table's row count. The
    objects' fates are recorded on `objects`."""
    objects = objects if objects is not None else []
    earlier = _built_earlier(path, tables_dir, objects)
    if earlier is not None:
        return earlier
    remove_build(path)
    with sqlite_errors("building the SQLite file"):
        checks = _build_on_largest(path, plans, tables_dir, objects)
        if checks is None:
            checks = _build_new(path, plans, tables_dir, objects)
    return checks


def remove_build(path: Path) -> None:
    """The partial file, the files SQLite keeps beside it, and its build record."""
    remove_database_files(path)
    _record(path).unlink(missing_ok=True)


def _record(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def committed_build(path: Path, tables_dir: Path) -> dict[str, Any] | None:
    """The record of a build that committed before its finalize was killed: its checks, the
    objects' fates, the work file it was built on and that table's last checkpoint. None when
    no build committed (a build rolled back by its journal left a work file as it was)."""
    record = read_json(_record(path))
    if record is None:
        return None
    work_file = tables_dir / record["file"]
    if work_file.exists():
        if path.exists() or CHECKPOINT_TABLE in tables_present(work_file, (CHECKPOINT_TABLE,)):
            return None
    elif not path.exists():
        return None
    return record


def _built_earlier(path: Path, tables_dir: Path,
                   objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The checks of a build that committed before its finalize was killed, after moving the
    built work file to `path` if that had not happened yet; None when there is none."""
    record = committed_build(path, tables_dir)
    if record is None:
        return None
    work_file = tables_dir / record["file"]
    if work_file.exists():
        _move(work_file, path)
    get_logger(step="finalize").info("build_reused", file=str(path))
    objects[:] = record["objects"]
    return dict(record["checks"])


def by_file(plans: list[TablePlan]) -> dict[str, list[TablePlan]]:
    """The plans of each work file, in plan order."""
    files: dict[str, list[TablePlan]] = {}
    for plan in plans:
        files.setdefault(plan.file, []).append(plan)
    return files


def _largest(plans: list[TablePlan], tables_dir: Path) -> str:
    # With its WAL: pages not yet checkpointed are only there (all, while a reader holds it).
    return max(by_file(plans), key=lambda f: sum(_bytes(tables_dir / f"{f}{suffix}")
                                                 for suffix in ("", "-wal")))


def _bytes(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _build_on_largest(path: Path, plans: list[TablePlan], tables_dir: Path,
                      objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Build on the largest work file and move it to `path`; None (nothing changed) when it
    cannot be had alone."""
    if not plans:
        return None
    name = _largest(plans, tables_dir)
    work_file = tables_dir / name
    inside = by_file(plans)[name]
    # mode=rw: a missing work file is an error, not a new empty one. No busy wait: a reader
    # still on the WAL this late is stale, and merging costs less than waiting for it.
    db = sqlite3.connect(f"{work_file.absolute().as_uri()}?mode=rw", uri=True,
                         isolation_level=None, timeout=0)
    log = get_logger(step="finalize", file=name,
                     **({"table": inside[0].name} if len(inside) == 1 else
                        {"tables": len(inside)}))
    try:
        if not _take_alone(db):
            log.info("largest_table_merged", reason="a reader holds its work file")
            return None
        db.execute("PRAGMA synchronous=NORMAL")  # the rollback journal is synced before use
        _merge_pragmas(db)
        counts = {plan.name: _check_count(db, plan, _expected_rows(db, plan, "main"),
                                          done="copied") for plan in inside}
        others = [other for other in plans if other.file != name]
        # The largest file's tables count as merged: they are there.
        counts.update(_merge_tables(db, others, tables_dir, first_step=len(inside),
                                    steps=len(plans)))
        checks = _finish(db, path, name, plans, objects, counts)
        _move(work_file, path)  # with the lock still held
    finally:
        db.close()
    log.info("work_file_built_on", bytes=path.stat().st_size,
             rows=sum(counts[p.name] for p in inside))
    return checks


def _take_alone(db: sqlite3.Connection) -> bool:
    """Lock the file for this connection until it closes, empty the WAL into it and leave
    WAL mode for a rollback journal. False when someone else has it open (its rows are
    unchanged then). Held to the end, the lock keeps anyone from opening it and switching it
    back to WAL, where our commits would land in a -wal that the move leaves behind."""
    try:
        db.execute("PRAGMA main.locking_mode=EXCLUSIVE")
        if db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            return False
        if db.execute("PRAGMA journal_mode=DELETE").fetchone()[0] != "delete":
            return False
        db.execute("BEGIN EXCLUSIVE")
        db.execute("COMMIT")
        return True
    except sqlite3.OperationalError:  # "database is locked"
        return False


def _merge_pragmas(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA foreign_keys=OFF")  # keeps SQLite's transfer optimisation on
    db.execute("PRAGMA ignore_check_constraints=ON")  # post_data audits CHECKs instead


@contextmanager
def _transaction(db: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[None]:
    db.execute(begin)
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # after SQLITE_FULL SQLite has rolled back by itself
            db.execute("ROLLBACK")
        raise


def _finish(db: sqlite3.Connection, path: Path, file: str, plans: list[TablePlan],
            objects: list[dict[str, Any]], counts: dict[str, int]) -> dict[str, Any]:
    """Two transactions. The first makes the indexes and objects and commits: the file is
    still a work file (its checkpoints are there), and a finalize that starts again makes
    them again or finds them made. The second drops the checkpoint table and runs the
    checks, whose read-only connections read the file as the first left it, the tables
    and indexes they check being the same in both (worker/sqlite/checks.py)."""
    with _transaction(db, "BEGIN IMMEDIATE"):
        _indexes_and_objects(db, plans, objects)
        held = _keep_read_lock(db)
    try:
        with _transaction(db, "BEGIN IMMEDIATE"):
            held.close()
            # Kept in the record: with Redis lost after the commit, the job is rebuilt from
            # it (worker/jobs/recover.py) instead of copying these tables again.
            kept = [{"table": name, "rows": rows, "checksum": checksum,
                     "lossy": json.loads(lossy)} for name, rows, checksum, lossy in db.execute(
                        f"SELECT name, rows, checksum, lossy FROM {CHECKPOINT_TABLE}")]
            db.execute(f"DROP TABLE {CHECKPOINT_TABLE}")
            checks = {**run_checks(db), "rows": counts}
            db.execute("PRAGMA main.locking_mode=EXCLUSIVE")  # kept from the commit on
            write_json_atomic(_record(path), {
                "file": file, "checks": checks, "objects": objects, "checkpoints": kept})
            fsync_dir(path.parent)
    except BaseException:
        _record(path).unlink(missing_ok=True)
        raise
    return checks


def _keep_read_lock(db: sqlite3.Connection) -> sqlite3.Cursor:
    """Called inside a write transaction: from its commit on, let readers in (the checks')
    but no writer, and no one that would switch the file back to WAL. The exclusive locking
    mode would keep every reader out; in the normal mode, a statement still reading when
    the transaction commits keeps the connection's SHARED lock, under which no one else can
    commit, until the next transaction takes a RESERVED lock (or fails to: someone else has
    the file then). Close the cursor returned once that transaction has begun."""
    db.execute("PRAGMA main.locking_mode=NORMAL")
    return db.execute("SELECT name FROM sqlite_master")  # stepped to its first row


def _move(work_file: Path, path: Path) -> None:
    os.replace(work_file, path)
    # After the commit the journal is spent (an exclusive lock keeps it until close): gone,
    # it cannot be taken for the journal of a new work file under the same name.
    remove_database_files(work_file)
    fsync_dir(path.parent)
    fsync_dir(work_file.parent)


def _build_new(path: Path, plans: list[TablePlan], tables_dir: Path,
               objects: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge every table into a new file. It is scratch until published, so it is built
    without a journal: a crash here means finalize starts again from the work files, which
    are only read."""
    filemodes.create_file(path)  # the published file's mode, kept by the rename
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")  # the file's one fsync comes when it is built
        db.execute("PRAGMA journal_mode=OFF")
        _merge_pragmas(db)
        counts = _merge_tables(db, plans, tables_dir, first_step=0, steps=len(plans))
        _indexes_and_objects(db, plans, objects)
        checks = {**run_checks(db), "rows": counts}
        db.execute("PRAGMA journal_mode=DELETE")
    except BaseException:
        db.close()
        remove_build(path)
        raise
    db.close()
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    return checks


def _indexes_and_objects(db: sqlite3.Connection, plans: list[TablePlan],
                         objects: list[dict[str, Any]]) -> None:
    indexes = [(plan, index) for plan in plans for index in plan.indexes]
    for built, (plan, index) in enumerate(indexes):
        step("indexing", built, len(indexes), index["name"])
        _create_index(db, plan, index)
    step("indexing", len(indexes), len(indexes))
    post_data.apply(db, plans, objects)


def _expected_rows(db: sqlite3.Connection, plan: TablePlan, schema: str) -> int:
    expected = db.execute(f"SELECT rows, done FROM {schema}.{CHECKPOINT_TABLE} WHERE name = ?",
                          (plan.name,)).fetchone()
    if not expected or not expected[1]:
        raise VerificationFailed(f"table {plan.name!r}: its work file is not complete",
                                 table=plan.name)
    return int(expected[0])


def _check_count(db: sqlite3.Connection, plan: TablePlan, expected: int, *, done: str) -> int:
    count = int(db.execute(f"SELECT count(*) FROM main.{quote(plan.name)}").fetchone()[0])
    if count != expected:
        raise VerificationFailed(f"table {plan.name!r}: {done} {count} rows, expected "
                                 f"{expected}", table=plan.name)
    return count


# Work files attached at once (SQLite allows 10 attached databases unless built otherwise).
MERGE_GROUP = 9


def _merge_tables(db: sqlite3.Connection, plans: list[TablePlan], tables_dir: Path, *,
                  first_step: int, steps: int) -> dict[str, int]:
    """Copy the work files' tables into main, the tables of several files per transaction,
    replacing any copy an interrupted build left; returns each table's rows. A transaction
    per table would cost a synced commit per table, most of finalize for jobs of many small
    tables."""
    counts: dict[str, int] = {}
    files = list(by_file(plans).items())
    merged = first_step
    for start in range(0, len(files), MERGE_GROUP):
        group = files[start:start + MERGE_GROUP]
        for n, (name, _) in enumerate(group):  # ATTACH cannot happen inside a transaction
            db.execute("ATTACH DATABASE ? AS ?", (str(tables_dir / name), f"stg{n}"))
        try:
            expected = {plan.name: _expected_rows(db, plan, f"stg{n}")
                        for n, (_, inside) in enumerate(group) for plan in inside}
            with _transaction(db):
                for n, (_, inside) in enumerate(group):
                    for plan in inside:
                        step("merging", merged, steps, plan.name)
                        _copy_table(db, plan, f"stg{n}")
                        merged += 1
        finally:
            for n in range(len(group)):
                db.execute(f"DETACH DATABASE stg{n}")
        for _, inside in group:
            for plan in inside:
                counts[plan.name] = _check_count(db, plan, expected[plan.name], done="merged")
    step("merging", steps, steps)
    return counts


def _copy_table(db: sqlite3.Connection, plan: TablePlan, schema: str) -> None:
    db.execute(f"DROP TABLE IF EXISTS main.{quote(plan.name)}")  # main: never the work file's
    db.execute(plan.create_sql)
    # The indexes the copy built in the work file, created empty: the transfer below then
    # copies their entries in order too, instead of CREATE INDEX sorting again.
    built = {r[0] for r in db.execute(
        f"SELECT name FROM {schema}.sqlite_master WHERE type = 'index' AND tbl_name = ?",
        (plan.name,))}
    for index in plan.indexes:
        if index["name"] in built:
            db.execute(index["sql"])
    # Identical definitions and an empty target: SQLite copies raw records. A table with
    # generated columns names the copied ones (SQLite computes the rest) in case SQLite
    # declines the transfer optimisation, where SELECT * would not fit.
    columns = ""
    if plan.generated_columns:
        columns = ", ".join(quote(c.name) for c in plan.columns)
    db.execute(f"INSERT INTO main.{quote(plan.name)} "
               f"{f'({columns})' if columns else ''} "
               f"SELECT {columns or '*'} FROM {schema}.{quote(plan.name)}")


def _create_index(db: sqlite3.Connection, plan: TablePlan, index: dict[str, Any]) -> None:
    if db.execute("SELECT 1 FROM main.sqlite_master WHERE type = 'index' AND name = ?",
                  (index["name"],)).fetchone():
        return  # built with the rows in the table's work file (WorkFile.build_indexes)
    try:
        db.execute(index["sql"])
    except sqlite3.IntegrityError as exc:
        raise VerificationFailed(
            f"index {index['name']!r} on {plan.name!r} cannot be built in SQLite ({exc}): the "
            "data holds duplicates under SQLite's rules (collation or type differences)",
            table=plan.name) from None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
