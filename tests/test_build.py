"""Building the job's file from the work files (worker/sqlite/build.py): on the largest work file,
the others merged into it, and never a work file lost half-changed: a failed check or a
worker killed mid-build leaves it as it was; one killed after the commit is finished from
the built file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from worker.core.errors import VerificationFailed
from worker.core.model import ColumnPlan, TablePlan
from worker.sqlite import build
from worker.sqlite.build import build_database
from worker.sqlite.checks import run_checks
from worker.sqlite.chunks import copy_rows
from worker.sqlite.workfile import WorkFile, open_work_db

REPO = Path(__file__).resolve().parents[1]

# Listed with the largest in the middle: neither the first nor the last plan is the one built on.
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


def closed_work_files(tmp_path: Path) -> tuple[Path, Path, list[TablePlan]]:
    tables_dir, out = tmp_path / "tables", tmp_path / "out" / "app.db.partial"
    out.parent.mkdir()
    plans, works = write_work_files(tables_dir)
    for work in works.values():
        work.close()
    return tables_dir, out, plans


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
    beside = [p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "-")]
    assert beside == []  # no -journal, -wal, -shm


def assert_work_files_intact(tables_dir: Path, plans: list[TablePlan]) -> None:
    for plan in plans:
        work = WorkFile(tables_dir / plan.file, plan)
        try:
            assert work.checkpoint().done and work.checkpoint().rows == SOURCES[plan.name]
            assert work.db.execute(f'SELECT id, body FROM "{plan.name}" ORDER BY id'
                                   ).fetchall() == source_rows(plan.name)
        finally:
            work.close()


def events(logs: list[dict]) -> list[tuple[str, str | None]]:
    return [(e["event"], e.get("table")) for e in logs]


def test_the_largest_work_file_is_built_on_and_the_others_merged_into_it(tmp_path):
    # Given finished work files of three sizes, their writers closed
    tables_dir, out, plans = closed_work_files(tmp_path)
    big = tables_dir / plans[1].file
    others = {p.file: (tables_dir / p.file).read_bytes() for p in plans if p.name != "big"}

    # When the file is built
    with capture_logs() as logs:
        checks = build_database(out, plans, tables_dir)

    # Then the largest table's work file became the file (not copied: moved), holding every
    # table's rows, their CREATE statements and indexes, no checkpoint table, no journal
    assert events(logs) == [("work_file_built_on", "big")]
    assert checks["rows"] == SOURCES
    assert not big.exists()
    assert_published(out, plans)
    # and the other work files are byte for byte what they were
    assert {f: (tables_dir / f).read_bytes() for f in others} == others
    assert_work_files_intact(tables_dir, [p for p in plans if p.name != "big"])

    # When finalize runs again before publishing (killed, or the target was in the way)
    with capture_logs() as logs:
        again = build_database(out, plans, tables_dir)

    # Then it takes the built file as it is
    assert events(logs) == [("build_reused", None)]
    assert again == checks
    assert_published(out, plans)


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

        # Then every table was merged, the largest too, into a new, complete file
        assert events(logs) == [("largest_table_merged", "big")]
        assert checks["rows"] == SOURCES
        assert_published(out, plans)
        assert reader.execute('SELECT count(*) FROM "big"').fetchone() == (SOURCES["big"],)
    finally:
        reader.close()
    assert_work_files_intact(tables_dir, plans)


def test_an_open_idle_connection_to_the_largest_work_file_makes_finalize_merge_it(tmp_path):
    # Given a process that has the largest work file open, outside any transaction: it could
    # write to it later, so the file must not become the published one under it
    tables_dir, out, plans = closed_work_files(tmp_path)
    idle = sqlite3.connect(tables_dir / plans[1].file, isolation_level=None)
    try:
        idle.execute('SELECT count(*) FROM "big"').fetchone()

        # When the file is built
        with capture_logs() as logs:
            checks = build_database(out, plans, tables_dir)
    finally:
        idle.close()

    # Then it was merged into a new file, and its work file is as it was
    assert events(logs) == [("largest_table_merged", "big")]
    assert checks["rows"] == SOURCES
    assert_published(out, plans)
    assert_work_files_intact(tables_dir, plans)


def test_a_check_that_fails_leaves_the_largest_work_file_a_work_file(tmp_path):
    # Given an index SQLite cannot build on the largest table (its data holds duplicates)
    tables_dir, out, plans = closed_work_files(tmp_path)
    plans[1].indexes.append({"name": "big_head", "sql": 'CREATE UNIQUE INDEX "big_head" ON '
                                                        '"big" (substr("body", 1, 3))'})

    # When the file is built
    # Then it fails, naming the index, and nothing is left to publish
    with pytest.raises(VerificationFailed, match="index 'big_head' on 'big' cannot be built"):
        build_database(out, plans, tables_dir)
    assert not out.exists()
    assert not out.with_name(out.name + ".json").exists()
    # and the largest work file still is one: its rows, its checkpoint, resumable
    assert_work_files_intact(tables_dir, plans)

    # When the index is dropped from the plan and finalize runs again
    plans[1].indexes.pop()
    checks = build_database(out, plans, tables_dir)

    # Then the merges, done again, give each table once
    assert checks["rows"] == SOURCES
    assert_published(out, plans)


def test_while_the_checks_run_the_work_file_can_be_read_but_not_written(tmp_path,
                                                                         monkeypatch):
    # Given a build whose checks, before running, try the largest work file from outside
    tables_dir, out, plans = closed_work_files(tmp_path)
    big = tables_dir / plans[1].file
    tried = {}

    def checks_trying_the_file(db):
        other = sqlite3.connect(big, isolation_level=None, timeout=0)
        try:
            tried["read"] = other.execute('SELECT count(*) FROM "small"').fetchone()[0]
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("PRAGMA journal_mode=WAL")
        finally:
            other.close()
        return run_checks(db)

    monkeypatch.setattr(build, "run_checks", checks_trying_the_file)

    # When the file is built
    checks = build_database(out, plans, tables_dir)

    # Then the checks' readers could read the merged tables, no one could write or switch
    # the file to WAL, and the file is built
    assert tried == {"read": SOURCES["small"]}
    assert checks["rows"] == SOURCES
    assert_published(out, plans)


def test_a_check_that_fails_after_the_objects_committed_leaves_a_work_file(tmp_path,
                                                                          monkeypatch):
    # Given a build with a view whose checks fail once (indexes and views are committed by
    # then)
    tables_dir, out, plans = closed_work_files(tmp_path)
    view = {"kind": "view", "name": "smalls", "fate": "translated",
            "sql": 'CREATE VIEW "smalls" AS SELECT * FROM "small"'}

    def failing(db):
        raise VerificationFailed("PRAGMA quick_check failed: ['bad page']")

    monkeypatch.setattr(build, "run_checks", failing)
    with pytest.raises(VerificationFailed, match="bad page"):
        build_database(out, plans, tables_dir, [dict(view)])

    # Then nothing is left to publish, and the largest work file still is one
    assert not out.exists()
    assert not out.with_name(out.name + ".json").exists()
    assert_work_files_intact(tables_dir, plans)

    # When finalize runs again with the checks as they are
    monkeypatch.setattr(build, "run_checks", run_checks)
    objects = [dict(view)]
    checks = build_database(out, plans, tables_dir, objects)

    # Then the file is built, its view made again
    assert checks["rows"] == SOURCES
    assert objects[0]["fate"] == "translated"
    db = sqlite3.connect(out)
    try:
        assert db.execute('SELECT count(*) FROM "smalls"').fetchone() == (SOURCES["small"],)
    finally:
        db.close()


# A build that dies at a chosen instant: the process SIGKILLs itself when
# worker/sqlite/build.py calls the named function, the only way to hit that instant every time.
DIE_IN_BUILD = """
import json, os, signal, sys
from pathlib import Path
from worker.sqlite import build
from worker.core.model import TablePlan

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(build, sys.argv[1], die)
plans = [TablePlan.from_dict(p) for p in json.loads(os.environ["PLANS"])]
build.build_database(Path(os.environ["OUT"]), plans, Path(os.environ["TABLES"]))
"""


def kill_build_at(function: str, out: Path, plans: list[TablePlan], tables_dir: Path) -> None:
    died = subprocess.run(
        [sys.executable, "-c", DIE_IN_BUILD, function], cwd=REPO, capture_output=True,
        timeout=60, env={**os.environ, "OUT": str(out), "TABLES": str(tables_dir),
                         "PLANS": json.dumps([p.to_dict() for p in plans])})
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()


def test_a_build_killed_inside_its_transaction_is_rolled_back_and_built_again(tmp_path):
    # Given a build killed -9 while its last transaction (indexes, the checkpoint table
    # dropped, the checks) is open on the largest work file
    tables_dir, out, plans = closed_work_files(tmp_path)
    big = tables_dir / plans[1].file
    kill_build_at("run_checks", out, plans, tables_dir)
    assert big.with_name(big.name + "-journal").exists()  # hot: SQLite rolls it back

    # When finalize runs again
    with capture_logs() as logs:
        checks = build_database(out, plans, tables_dir)

    # Then it built the file again, on the same work file, complete
    assert events(logs) == [("work_file_built_on", "big")]
    assert checks["rows"] == SOURCES
    assert_published(out, plans)
    assert not big.exists()


def test_a_build_killed_after_its_commit_is_finished_from_the_built_file(tmp_path):
    # Given a build killed -9 after its commit, before the built work file was moved
    tables_dir, out, plans = closed_work_files(tmp_path)
    big = tables_dir / plans[1].file
    kill_build_at("_move", out, plans, tables_dir)
    assert big.exists() and not out.exists()

    # When finalize runs again
    with capture_logs() as logs:
        checks = build_database(out, plans, tables_dir)

    # Then it takes that file as built, with the checks it passed
    assert events(logs) == [("build_reused", None)]
    assert checks["rows"] == SOURCES
    assert checks["integrity_check"] == "ok"
    assert_published(out, plans)
    assert not big.exists()


def test_a_copy_into_a_work_file_a_killed_build_used_starts_the_table_again(tmp_path):
    # Given the largest work file built on by a finalize killed after its commit (its
    # checkpoint table gone), and then its table queued again (Redis lost and rebuilt)
    tables_dir, out, plans = closed_work_files(tmp_path)
    kill_build_at("_move", out, plans, tables_dir)

    # When a worker opens it to copy the table
    with capture_logs() as logs:
        work = WorkFile(tables_dir / plans[1].file, plans[1])

    # Then it starts from an empty table and a new checkpoint, never on top of the rows
    try:
        assert events(logs) == [("built_work_file_discarded", "big")]
        assert work.count() == 0
        assert work.checkpoint().rows == 0 and not work.checkpoint().done
    finally:
        work.close()


def test_indexes_built_in_the_work_files_are_merged_with_their_rows(tmp_path):
    # Given work files whose copies built their indexes (all but the tiny table's)
    tables_dir, out = tmp_path / "tables", tmp_path / "out" / "app.db.partial"
    out.parent.mkdir()
    plans, works = write_work_files(tables_dir)
    for name, work in works.items():
        if name != "tiny":
            assert work.build_indexes(1) == [f"{name}_body"]
            assert work.build_indexes(1) == []  # once
        work.close()

    # When finalize builds the file
    checks = build_database(out, plans, tables_dir)

    # Then it holds every row and every index once, checked
    assert checks["rows"] == SOURCES
    assert_published(out, plans)


def test_an_index_sqlite_refuses_while_copying_is_left_to_finalize(tmp_path):
    tables_dir, out = tmp_path / "tables", tmp_path / "out" / "app.db.partial"
    out.parent.mkdir()
    plans, works = write_work_files(tables_dir)
    plans[0].indexes = [{"name": "one_body", "sql": 'CREATE UNIQUE INDEX "one_body" ON '
                                                    '"small" (substr("body", 1, 1))'}]
    works["small"].plan = plans[0]
    assert works["small"].build_indexes(1) == []
    for work in works.values():
        work.close()
    with pytest.raises(VerificationFailed, match="index 'one_body' on 'small' cannot be built"):
        build_database(out, plans, tables_dir)


def write_grouped(tables_dir: Path, group: list[str]) -> list[TablePlan]:
    """The tables in `group` share one work file (as a group of small tables does, one
    connection for all of them), the others each have their own; all finished, closed."""
    plans = [table_plan(name, "group00001.db" if name in group else f"{n:05d}.db")
             for n, name in enumerate(SOURCES)]
    shared = open_work_db(tables_dir / "group00001.db", group)
    try:
        for plan in plans:
            rows = source_rows(plan.name)
            work = WorkFile(tables_dir / plan.file, plan,
                            db=shared if plan.name in group else None)
            copy_rows(plan=plan, work=work, token=1, chunk_rows=1000, chunk_bytes=1 << 20,
                      source=lambda after, rows=rows: iter(rows))
            work.close()
    finally:
        shared.close()
    return plans


@pytest.mark.parametrize("group", [["small", "tiny"], ["small", "big"]],
                         ids=["group-merged", "group-built-on"])
def test_tables_sharing_a_work_file_are_built_like_the_others(tmp_path, group):
    # Given two of the three tables in one shared work file (in the second case the largest
    # table is in it, so the build happens on the shared file)
    tables_dir, out = tmp_path / "tables", tmp_path / "out" / "app.db.partial"
    out.parent.mkdir()
    plans = write_grouped(tables_dir, group)

    # When the file is built
    checks = build_database(out, plans, tables_dir)

    # Then every table is there once, with its index, and the build record keeps the
    # checkpoint of every table of the file built on
    assert checks["rows"] == SOURCES
    assert_published(out, plans)
    record = json.loads(out.with_name(out.name + ".json").read_text())
    built_on = {p.name for p in plans if p.file == record["file"]}
    assert {c["table"]: c["rows"] for c in record["checkpoints"]} == {
        name: SOURCES[name] for name in built_on}


def test_a_table_of_a_shared_work_file_resumes_alone(tmp_path):
    # Given a shared work file where "tiny" is finished and "small" stopped after its
    # first chunk (its writer killed)
    plans = {p.name: p for p in (table_plan("tiny", "g.db"), table_plan("small", "g.db"))}
    path = tmp_path / "g.db"
    rows = source_rows("small")
    shared = open_work_db(path, list(plans))
    copy_rows(plan=plans["tiny"], work=WorkFile(path, plans["tiny"], db=shared), token=1,
              chunk_rows=1000, chunk_bytes=1 << 20, source=lambda after: iter(source_rows("tiny")))

    def stop_after_first(after):
        yield from rows[:100]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        copy_rows(plan=plans["small"], work=WorkFile(path, plans["small"], db=shared), token=1,
                  chunk_rows=100, chunk_bytes=1 << 20, source=stop_after_first)
    shared.close()

    # When each table is taken up again by a new writer, alone (a retry of one table)
    resumed_from = []

    def source(after):
        resumed_from.append(after)
        return (r for r in rows if after is None or r[0] > after[0])

    small = WorkFile(path, plans["small"])
    committed = small.checkpoint()
    done = copy_rows(plan=plans["small"], work=small, token=2, chunk_rows=100,
                     chunk_bytes=1 << 20, source=source)
    tiny = WorkFile(path, plans["tiny"])
    again = copy_rows(plan=plans["tiny"], work=tiny, token=2, chunk_rows=100,
                      chunk_bytes=1 << 20, source=lambda after: pytest.fail("copied again"))

    # Then "small" resumed after its committed rows, "tiny" was not read again, and each
    # holds its rows once
    assert committed.rows > 0 and resumed_from == [committed.last_key]
    assert (done.rows, small.count()) == (300, 300)
    assert again.done and (again.rows, tiny.count()) == (3, 3)
    small.close()
    tiny.close()
