"""Publishing: the file built from the work files (the largest one copied, the others merged),
and an existing target refused unless asked, and then the old file kept."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from worker import control
from worker.chunks import copy_rows
from worker.errors import InputError
from worker.finalize import build_database
from worker.translate import ColumnPlan, TablePlan
from worker.workfile import WorkFile


def count_rows(path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*) FROM things").fetchone()[0]
    finally:
        db.close()


def test_existing_target_is_refused_unless_replace_which_keeps_the_old_file(
        pg_db, settings_env, store, send, worker_proc, wait_for):
    # Given a published target "app" made from a 3-row table
    pg_db.execute("CREATE TABLE things (id bigint PRIMARY KEY, label text);"
                  "INSERT INTO things SELECT i, 'thing ' || i FROM generate_series(1, 3) i")
    worker = worker_proc()
    first = control.submit_job(settings_env, store, send, source=pg_db.url, target="app")
    assert wait_for(store, first, ["done", "failed"], workers=[worker])["state"] == "done"
    published = settings_env.data_dir / "app.db"
    assert count_rows(published) == 3

    # When the same target is submitted again without replace
    # Then it is refused, naming the file, and no job is recorded
    with pytest.raises(InputError, match=r"app\.db already exists"):
        control.submit_job(settings_env, store, send, source=pg_db.url, target="app")
    assert store.job_ids() == [first]

    # When the source has grown and the target is submitted with replace
    pg_db.execute("INSERT INTO things VALUES (4, 'four'), (5, 'five')")
    second = control.submit_job(settings_env, store, send, source=pg_db.url, target="app",
                                replace=True)
    view = wait_for(store, second, ["done", "failed"], workers=[worker])

    # Then the new file is in place and the old one is kept beside it as app.<time>.old.db
    assert view["state"] == "done", view
    (backup,) = settings_env.data_dir.glob("app.*.old.db")
    assert count_rows(published) == 5
    assert count_rows(backup) == 3
    assert view["backup"] == str(backup)
    report = json.loads((settings_env.data_dir / "app.report.json").read_text())
    assert report["published"]["replaced_file_kept_as"] == str(backup)
    assert report["tables"][0]["rows"] == 5


def test_a_target_that_appears_while_the_job_runs_is_never_overwritten(
        pg_db, settings_env, store, send, worker_proc, wait_for):
    # Given a job queued while no worker runs, and then someone else's app.db appearing
    pg_db.execute("CREATE TABLE things (id bigint PRIMARY KEY);"
                  "INSERT INTO things SELECT generate_series(1, 3)")
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="app")
    published = settings_env.data_dir / "app.db"
    published.write_bytes(b"somebody else's database")

    # When a worker runs the job
    worker = worker_proc()
    view = wait_for(store, job_id, ["done", "failed"], workers=[worker])

    # Then publishing is refused at the last step and that file is untouched
    assert view["state"] == "failed", view
    assert "already exists" in view["error"]
    assert published.read_bytes() == b"somebody else's database"
    assert not list(settings_env.data_dir.glob("app.*.old.db"))


# -- building the file from work files ----------------------------------------------------

# Listed with the largest in the middle: neither the first nor the last plan is the one copied.
SOURCES = {"small": 300, "big": 20_000, "tiny": 3}


def _column(name: str, sqlite_type: str) -> ColumnPlan:
    return ColumnPlan(name=name, source_type=sqlite_type.lower(), sqlite_type=sqlite_type,
                      select_sql=name, wire="text", converter=None, rule="integer",
                      lossy=False, note="", nullable=name != "id")


def table_plan(name: str, file: str) -> TablePlan:
    return TablePlan(
        name=name, file=file, columns=[_column("id", "INTEGER"), _column("body", "TEXT")],
        key=["id"], key_kind="primary_key", key_types=["bigint"], key_positions=[0],
        create_sql=f'CREATE TABLE "{name}" ("id" INTEGER PRIMARY KEY NOT NULL, "body" TEXT)',
        insert_sql=f'INSERT INTO "{name}" ("id", "body") VALUES (?, ?)',
        indexes=[{"name": f"{name}_body",
                  "sql": f'CREATE INDEX "{name}_body" ON "{name}" ("body")'}])


def source_rows(name: str) -> list[tuple]:
    return [(i, f"{name} {i}") for i in range(1, SOURCES[name] + 1)]


def write_work_files(tables_dir: Path) -> tuple[list[TablePlan], dict[str, WorkFile]]:
    """A finished work file per table, written by the chunk loop from a list of rows; the
    writers are left open for the test to close."""
    plans = [table_plan(name, f"{n:05d}.db") for n, name in enumerate(SOURCES)]
    works = {}
    for plan in plans:
        rows = source_rows(plan.name)
        works[plan.name] = WorkFile(tables_dir / plan.file, plan)
        copy_rows(plan=plan, work=works[plan.name], token=1, chunk_rows=1000,
                  chunk_bytes=1 << 20,
                  source=lambda after, rows=rows: (r for r in rows
                                                   if after is None or r[0] > after[0]))
    return plans, works


def assert_published(path: Path, plans: list[TablePlan]) -> None:
    db = sqlite3.connect(path)
    try:
        for plan in plans:
            assert db.execute(f'SELECT id, body FROM "{plan.name}" ORDER BY id').fetchall() \
                == source_rows(plan.name), plan.name
        schema = dict(db.execute("SELECT name, sql FROM sqlite_master").fetchall())
        assert schema == {**{p.name: p.create_sql for p in plans},
                          **{i["name"]: i["sql"] for p in plans for i in p.indexes}}
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no -wal, -shm


def assert_work_files_intact(tables_dir: Path, plans: list[TablePlan]) -> None:
    for plan in plans:
        work = WorkFile(tables_dir / plan.file, plan)
        try:
            assert work.checkpoint().done and work.checkpoint().rows == SOURCES[plan.name]
            assert work.db.execute(f'SELECT id, body FROM "{plan.name}" ORDER BY id'
                                   ).fetchall() == source_rows(plan.name)
        finally:
            work.close()


def test_the_largest_work_file_is_copied_and_the_others_merged_into_it(tmp_path):
    # Given finished work files of three sizes, their writers closed
    tables_dir, out = tmp_path / "tables", tmp_path / "out" / "app.db.partial"
    out.parent.mkdir()
    plans, works = write_work_files(tables_dir)
    for work in works.values():
        work.close()
    before = {p.file: (tables_dir / p.file).read_bytes() for p in plans}

    # When the file is built
    with capture_logs() as logs:
        checks = build_database(out, plans, tables_dir)

    # Then the largest table's work file was the one copied, and the file holds every
    # table's rows, their CREATE statements and indexes, no checkpoint table, no journal
    assert [(e["event"], e["table"]) for e in logs] == [("work_file_copied", "big")]
    assert checks["rows"] == SOURCES
    assert_published(out, plans)
    # and the work files are byte for byte what they were, still usable to finalize again
    assert {p.file: (tables_dir / p.file).read_bytes() for p in plans} == before
    assert sorted(p.name for p in tables_dir.iterdir()) == sorted(before)
    assert_work_files_intact(tables_dir, plans)


def test_a_reader_holding_the_largest_work_files_wal_makes_finalize_merge_it(tmp_path):
    # Given a reader (a stale process) that began reading the largest work file before its
    # writer closed, so it still reads from the WAL and a TRUNCATE checkpoint reports busy
    tables_dir, out = tmp_path / "tables", tmp_path / "out" / "app.db.partial"
    out.parent.mkdir()
    plans, works = write_work_files(tables_dir)
    reader = sqlite3.connect(tables_dir / works["big"].plan.file, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute('SELECT count(*) FROM "big"').fetchone() == (SOURCES["big"],)
        for work in works.values():
            work.close()

        # When the file is built
        with capture_logs() as logs:
            checks = build_database(out, plans, tables_dir)

        # Then every table was merged, the largest too, into the same complete file
        assert [(e["event"], e["table"]) for e in logs] == [("largest_table_merged", "big")]
        assert checks["rows"] == SOURCES
        assert_published(out, plans)
        assert reader.execute('SELECT count(*) FROM "big"').fetchone() == (SOURCES["big"],)
    finally:
        reader.close()
    assert_work_files_intact(tables_dir, plans)
