"""finalize_job: copy the largest work file, merge the others into it, build indexes, check,
report, publish atomically."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker import post_data
from worker.config import Settings
from worker.errors import TargetError, TargetExists, VerificationFailed, VolumeFull
from worker.jobfiles import read_json, remove_work_files, write_json_atomic, write_outcome
from worker.lease import Lease
from worker.logs import get_logger
from worker.manifest import read_manifest
from worker.names import published_path, report_path
from worker.state import JobState, StateStore, TableState
from worker.translate import TablePlan, quote
from worker.workfile import sqlite_errors

FK_VIOLATIONS_SHOWN = 5
PUBLISHING = "publishing.json"  # in the job's directory, from just before the rename until done


def finalize_job(settings: Settings, store: StateStore, job_id: str) -> None:
    log = get_logger(job_id=job_id, step="finalize")
    job = store.job(job_id)
    if job is None or JobState(job["state"]) not in (JobState.COPYING, JobState.FINALIZING):
        log.info("finalize_skipped", reason=f"job is {job and job['state']}")
        return
    tables = store.tables(job_id, job.get("tables") or [])
    if any(t.get("state") != TableState.VERIFIED.value for t in tables):
        log.info("finalize_skipped", reason="not every table is verified yet")
        return
    with Lease(store.redis, store.keys, job_id, "finalize", settings.lease_ttl_s) as lease:
        if not lease.acquire():
            log.info("finalize_skipped", reason="another worker is finalizing this job")
            return
        store.set_job_state(job_id, JobState.FINALIZING)
        started = time.monotonic()
        job_dir = settings.job_dir(job_id)
        done = published_earlier(job_dir, settings.data_dir, job["target"])
        if done is None:
            done = _build_and_publish(settings, store, job, tables)
        if done is None:
            log.info("finalize_stopped", reason="job cancelled")
            return
        final, backup, report = done
        report["published"] = {"path": str(final), "replaced_file_kept_as": backup,
                               "bytes": final.stat().st_size}
        write_json_atomic(report_path(settings.data_dir, job["target"]), report)
        store.set_job_state(job_id, JobState.DONE, published=str(final),
                            report=str(report_path(settings.data_dir, job["target"])),
                            backup=backup, error=None)
        write_outcome(job_dir, JobState.DONE.value, published=str(final), backup=backup)
        (job_dir / PUBLISHING).unlink(missing_ok=True)
        store.release_target(job["target"], job_id)
        remove_work_files(job_dir)
        log.info("job_published", path=str(final), backup=backup,
                 seconds=round(time.monotonic() - started, 2))


Published = tuple[Path, str | None, dict[str, Any]]  # the file, the old one kept, the report


def _build_and_publish(settings: Settings, store: StateStore, job: dict[str, Any],
                       tables: list[dict[str, Any]]) -> Published | None:
    """Build the file from the work files and publish it; None when the job was cancelled
    meanwhile (nothing is published then)."""
    job_dir = settings.job_dir(job["id"])
    _, plans, objects = read_manifest(job_dir)
    partial = job_dir / f"{job['target']}.db.partial"
    checks = build_database(partial, plans, job_dir / "tables", objects)
    report = build_report(job, plans, objects, {t["name"]: t for t in tables}, checks)
    if store.job_state(job["id"]) == JobState.CANCELLED:
        partial.unlink(missing_ok=True)
        return None
    final, backup = publish(partial, settings.data_dir, job["target"],
                            replace=bool(job.get("replace")),
                            intent=lambda backup: _record_intent(job_dir, partial, report,
                                                                 backup))
    return final, backup, report


def _record_intent(job_dir: Path, partial: Path, report: dict[str, Any],
                   backup: str | None) -> None:
    """Written just before the rename: which inode we publish, so a re-run can tell our own
    file at <target>.db from somebody else's."""
    st = partial.stat()
    write_json_atomic(job_dir / PUBLISHING, {"device": st.st_dev, "inode": st.st_ino,
                                             "backup": backup, "report": report})


def published_earlier(job_dir: Path, data_dir: Path, target: str) -> Published | None:
    """A worker killed after the rename but before marking the job done left our file at
    <target>.db. Finish the job from there instead of building the file again, which would
    then refuse to overwrite it (or, with replace, push it aside as an "old" file)."""
    intent = read_json(job_dir / PUBLISHING)
    final = published_path(data_dir, target)
    try:
        st = final.stat()
    except FileNotFoundError:
        return None
    if intent is None or (st.st_dev, st.st_ino) != (intent["device"], intent["inode"]):
        return None
    (job_dir / f"{target}.db.partial").unlink(missing_ok=True)  # killed before its unlink
    return final, intent["backup"], intent["report"]


def build_database(path: Path, plans: list[TablePlan], tables_dir: Path,
                   objects: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Start from a copy of the largest table's work file, merge every other table's work
    file into it, then indexes, then sequences, views and the CHECK audit (post_data.py,
    recording outcomes on `objects`), then checks.

    The file is scratch until published, so it is built without a journal: a crash here
    means finalize starts again from the work files, which are only read.
    """
    _remove_scratch(path)
    db: sqlite3.Connection | None = None
    synced: Callable[[], None] | None = None
    try:
        with sqlite_errors("building the SQLite file"):
            copied = _copy_largest(path, plans, tables_dir)
            if copied:
                synced = _start_fsync(path)
            db = sqlite3.connect(path, isolation_level=None)
            _set_scratch_pragmas(db)
            counts = _keep_copied_table(db, *copied) if copied else {}
            for plan in plans:
                if plan.name not in counts:
                    counts[plan.name] = _merge_table(db, plan, tables_dir / plan.file)
            for plan in plans:
                for index in plan.indexes:
                    _create_index(db, plan, index)
            post_data.apply(db, plans, objects if objects is not None else [])
            checks = _run_checks(db)
            checks["rows"] = counts
            db.execute("PRAGMA journal_mode=DELETE")
        db.close()
        if synced is not None:
            synced()
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        return checks
    except BaseException:
        if db is not None:
            db.close()
        _remove_scratch(path)
        raise


def _start_fsync(path: Path) -> Callable[[], None]:
    """fsync `path` in a thread; the call returned waits for it and raises its error. The
    copied work file's pages then go to disk while the checks read them (0.1 s of a 1M-row
    table's 0.5 s finalize), and the last fsync has only what changed since."""
    failed: list[OSError] = []

    def fsync() -> None:
        try:
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        except OSError as exc:
            failed.append(exc)

    thread = threading.Thread(target=fsync, name="finalize-fsync", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failed:
            raise TargetError(f"writing {path} to disk: {failed[0]}")

    return wait


def _remove_scratch(path: Path) -> None:
    # A -wal left beside the partial by a killed run would be applied to the next copy.
    for suffix in ("", "-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _set_scratch_pragmas(db: sqlite3.Connection) -> None:
    # synchronous first: the journal mode switches below then fsync nothing (they took
    # 30-80 ms of fsyncs; the file's one fsync comes when it is built).
    db.execute("PRAGMA synchronous=OFF")
    # A copied work file's header says WAL: back to a rollback journal first (which removes
    # the -wal and -shm beside it), then none at all. A new empty file is unaffected.
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA foreign_keys=OFF")  # keeps SQLite's transfer optimisation on
    # Rows were copied with CHECKs off; post_data audits them against the whole table.
    db.execute("PRAGMA ignore_check_constraints=ON")


def _copy_largest(path: Path, plans: list[TablePlan],
                  tables_dir: Path) -> tuple[TablePlan, int] | None:
    """Copy the largest work file's bytes to `path` to build on, instead of merging its rows:
    merging a 5M-row table took 1.42 s of a 1.6 s finalize, copying its file a fraction of
    that. Returns its plan and row count, or None when its WAL cannot be emptied into the
    file (a reader holds it) or is written to again: nothing is copied then, every table is
    merged."""
    if not plans:
        return None
    plan = max(plans, key=lambda p: _work_file_bytes(tables_dir / p.file))
    work_file = tables_dir / plan.file
    # mode=rw: a missing work file is an error, not a new empty one. No busy wait: a reader
    # still on the WAL this late is stale, and merging costs less than waiting for it.
    work = sqlite3.connect(f"{work_file.absolute().as_uri()}?mode=rw", uri=True,
                           isolation_level=None, timeout=0)
    log = get_logger(step="finalize", table=plan.name)
    try:
        if work.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            log.info("largest_table_merged", reason="a reader holds its work file's WAL")
            return None
        # A read transaction begun while the WAL is empty reads the file alone, and while it
        # is open nobody can checkpoint into the file: the bytes copied are the rows counted.
        work.execute("BEGIN")
        expected = _expected_rows(work, plan, "main")
        if _bytes(_wal(work_file)):
            log.info("largest_table_merged", reason="written to since its WAL was emptied")
            return None
        _copy_file(work_file, path)
    finally:
        work.close()
    log.info("work_file_copied", bytes=path.stat().st_size, rows=expected)
    return plan, expected


def _work_file_bytes(path: Path) -> int:
    # With its WAL: pages not yet checkpointed are only there (all, while a reader holds it).
    return _bytes(path) + _bytes(_wal(path))


def _bytes(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _copy_file(source: Path, target: Path) -> None:
    what = f"copying work file {source} to {target}"
    try:
        shutil.copyfile(source, target)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise VolumeFull(f"{what}: the data volume is full ({exc}); free space on it, "
                             "then `liteshift retry` the job") from None
        raise TargetError(f"{what}: {exc}") from None


def _keep_copied_table(db: sqlite3.Connection, plan: TablePlan,
                       expected: int) -> dict[str, int]:
    db.execute("DROP TABLE _liteshift_checkpoint")
    return {plan.name: _check_count(db, plan, expected, done="copied")}


def _expected_rows(db: sqlite3.Connection, plan: TablePlan, schema: str) -> int:
    expected = db.execute(f"SELECT rows, done FROM {schema}._liteshift_checkpoint").fetchone()
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


def _merge_table(db: sqlite3.Connection, plan: TablePlan, work_file: Path) -> int:
    db.execute(plan.create_sql)
    db.execute("ATTACH DATABASE ? AS stg", (str(work_file),))
    try:
        expected = _expected_rows(db, plan, "stg")
        db.execute("BEGIN")
        # Identical definitions and an empty target: SQLite copies raw records. A table with
        # generated columns names the copied ones (SQLite computes the rest) in case SQLite
        # declines the transfer optimisation, where SELECT * would not fit.
        columns = ""
        if getattr(plan, "generated_columns", None):
            columns = ", ".join(quote(c.name) for c in plan.columns)
        db.execute(f"INSERT INTO main.{quote(plan.name)} {f'({columns})' if columns else ''} "
                   f"SELECT {columns or '*'} FROM stg.{quote(plan.name)}")
        db.execute("COMMIT")
    finally:
        db.execute("DETACH DATABASE stg")
    return _check_count(db, plan, expected, done="merged")


def _create_index(db: sqlite3.Connection, plan: TablePlan, index: dict[str, Any]) -> None:
    try:
        db.execute(index["sql"])
    except sqlite3.IntegrityError as exc:
        raise VerificationFailed(
            f"index {index['name']!r} on {plan.name!r} cannot be built in SQLite ({exc}): the "
            "data holds duplicates under SQLite's rules (collation or type differences)",
            table=plan.name) from None


def _run_checks(db: sqlite3.Connection) -> dict[str, Any]:
    integrity = [r[0] for r in db.execute("PRAGMA integrity_check")]
    if integrity != ["ok"]:
        raise VerificationFailed(f"PRAGMA integrity_check failed: {integrity[:5]}")
    violations = db.execute("PRAGMA foreign_key_check").fetchmany(FK_VIOLATIONS_SHOWN)
    if violations:
        shown = "; ".join(f"{t} rowid {rowid} → {parent}" for t, rowid, parent, _ in violations)
        raise VerificationFailed(
            f"PRAGMA foreign_key_check found rows whose parent is missing ({shown}): the source "
            "changed while tables were copied, or its constraints were not enforced")
    return {"integrity_check": "ok", "foreign_key_check": "ok"}


def publish(partial: Path, data_dir: Path, target: str, *, replace: bool,
            intent: Callable[[str | None], None] = lambda backup: None,
            ) -> tuple[Path, str | None]:
    """Make <target>.db appear by rename. Without `replace` an existing file is never touched
    (a hard link fails if the name exists); with it, the old file is kept under a new name
    first, then the new one replaces it in one rename. `intent` is called with the backup's
    name right before the rename."""
    final = published_path(data_dir, target)
    backup: str | None = None
    _refuse_if_in_use(final)
    if replace and final.exists():
        backup = str(_keep_old(final, target))
        intent(backup)
        os.replace(partial, final)
    else:
        intent(None)
        try:
            os.link(partial, final)
        except FileExistsError:
            raise TargetExists(f"{final} already exists; submit with replace to swap it "
                               "(the old file is kept)") from None
        partial.unlink()
    _fsync_dir(data_dir)
    return final, backup


def _refuse_if_in_use(final: Path) -> None:
    """SQLite finds a database's -wal, -shm and -journal files by name. Were a new file put
    under a name whose -wal/-shm an app still uses (WAL mode: they exist as long as it has the
    file open, even when the WAL is empty), that app's next write would land in the WAL that
    readers of the new file apply to it; a hot -journal would be rolled back into it. Both
    destroy the new file, so refuse, whether or not the job asked to replace. (An app that
    opens the file between this check and the rename is not caught: stop apps first.)"""
    names = [final.with_name(final.name + suffix) for suffix in ("-wal", "-shm", "-journal")]
    in_use = [p.name for p in names
              if p.exists() and (p.stat().st_size > 0 or not p.name.endswith("-journal"))]
    if in_use:
        raise TargetError(
            f"{final} is in use: {', '.join(in_use)} exist beside it, so an app has it open in "
            "WAL mode (or is writing it, or crashed while writing it). Publishing now would "
            "let that app's journal be applied to the new file. Stop the app (or close its "
            "connections) so these files go away, then `liteshift retry` the job")


def _keep_old(final: Path, target: str) -> Path:
    """Hard-link the current file under a new name (same inode: apps holding it open keep
    reading it), never over an earlier backup."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(1000):
        backup = final.with_name(f"{target}.{stamp}{f'-{n}' if n else ''}.old.db")
        try:
            os.link(final, backup)
            return backup
        except FileExistsError:
            continue
    raise TargetError(f"cannot find a free name to keep {final} under")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_report(job: dict[str, Any], plans: list[TablePlan], objects: list[dict[str, Any]],
                 tables: dict[str, dict[str, Any]], checks: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": job["id"], "target": job["target"], "source": job["source"],
        "schema": job["schema"], "profile": (job.get("options") or {}).get("profile", "ecto"),
        "created_at": job.get("created_at"), "finished_at": time.time(),
        "checks": {k: v for k, v in checks.items() if k != "rows"},
        "tables": [_table_report(plan, tables.get(plan.name, {}), checks["rows"][plan.name])
                   for plan in plans],
        "objects": objects,
    }


def _table_report(plan: TablePlan, state: dict[str, Any], rows: int) -> dict[str, Any]:
    lossy = state.get("lossy") or {}
    return {
        "name": plan.name, "rows": rows, "checksum": state.get("checksum"), "verified": True,
        "chunk_key": plan.key, "key_kind": plan.key_kind,
        "columns": [{"name": c.name, "source_type": c.source_type, "sqlite_type": c.sqlite_type,
                     "rule": c.rule, "note": c.note, "lossy_values": lossy.get(c.name, 0)}
                    for c in plan.columns],
    }
