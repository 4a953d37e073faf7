"""Replacing a target an app is using (DESIGN 2.3): the old file is kept beside the new one,
the swap is one rename, and an app holding the old file open keeps reading a consistent
database; publishing under an app that has the file open in WAL mode is refused.

(That an existing target is never overwritten without replace, even one that appears while
the job runs, is tests/test_e2e_publish.py.)"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from faults.support import assert_exactly_once, make_narrow_tables, outcome
from worker.jobs import control, copying, plan
from worker.jobs.control import FINALIZE_TASK

REPO = Path(__file__).resolve().parents[2]

SIZES = {"items": 30_000}


def app_database(path: Path, rows: int, *, wal: bool = False) -> None:
    """The file an app has been using: its own table, `rows` rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER, s TEXT)")
    db.executemany("INSERT INTO items VALUES (?, ?, ?)",
                   [(i, -i, f"old {i}") for i in range(1, rows + 1)])
    db.commit()
    db.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_replace_keeps_the_old_file_and_an_open_reader_sees_old_data(
        pg_db, settings_env, store, send, worker_proc, wait_for):
    # Given the app's database with 10 rows, and the app in the middle of a read transaction
    make_narrow_tables(pg_db, SIZES)
    published = settings_env.data_dir / "app.db"
    app_database(published, 10)
    before = digest(published)
    app = sqlite3.connect(published, isolation_level=None)
    app.execute("BEGIN")
    assert app.execute("SELECT count(*), min(s) FROM items").fetchone() == (10, "old 1")
    worker = worker_proc()

    # When a job replaces it
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="app",
                                replace=True)
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])

    # Then the new file is in place, the old one is kept byte for byte beside it
    assert view["state"] == "done", outcome(view)
    backup = settings_env.data_dir / view["backup"]
    assert backup.parent == published.parent and backup.name.endswith(".old.db")
    assert digest(backup) == before
    fresh = sqlite3.connect(f"file:{published}?mode=ro", uri=True)
    assert fresh.execute("SELECT count(*) FROM items").fetchone() == (SIZES["items"],)
    fresh.close()

    # and the app, inside its transaction and after it, reads its old database, consistent
    assert app.execute("SELECT count(*), min(s) FROM items").fetchone() == (10, "old 1")
    app.execute("COMMIT")
    assert app.execute("SELECT count(*), sum(n) FROM items").fetchone() == (10, -55)
    assert app.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    app.close()


def test_publishing_under_an_app_with_the_file_open_in_wal_mode_is_refused(
        pg_db, settings_env, store, send, worker_proc, wait_for):
    # Given the app's database in WAL mode, open (its -wal and -shm exist, the WAL empty)
    make_narrow_tables(pg_db, SIZES)
    published = settings_env.data_dir / "app.db"
    app_database(published, 10, wal=True)
    app = sqlite3.connect(published, isolation_level=None)
    assert app.execute("SELECT count(*) FROM items").fetchone() == (10,)
    assert published.with_name("app.db-wal").exists()
    before = digest(published)
    worker = worker_proc()

    # When a job asks to replace it
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="app",
                                replace=True)
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])

    # Then it is refused (the app's next write would go into a WAL that readers of the new
    # file apply to it), the old file untouched and the app working on
    assert view["state"] == "failed", view
    assert "is in use: app.db-wal, app.db-shm exist" in view["error"]
    assert "Stop the app" in view["error"]
    assert digest(published) == before
    app.execute("INSERT INTO items VALUES (11, -11, 'old 11')")
    assert app.execute("SELECT count(*) FROM items").fetchone() == (11,)

    # When the app stops, `retry` publishes, keeping the app's file (with its last write)
    app.close()
    assert not published.with_name("app.db-wal").exists()
    assert control.retry_job(store, send, job_id) == []
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])
    assert view["state"] == "done", outcome(view)
    kept = sqlite3.connect(settings_env.data_dir / view["backup"])
    assert kept.execute("SELECT count(*) FROM items").fetchone() == (11,)
    kept.close()


# A finalize that dies the instant after <target>.db appears (the rename done, the job not yet
# marked done): the process SIGKILLs itself from inside publish(), the only way to hit that
# instant every time.
DIE_AFTER_PUBLISH = """
import os, signal
from worker.jobs import finalize
from worker.core.config import Settings
from worker.state.store import StateStore

publish = finalize.publish
def publish_then_die(*args, **kwargs):
    publish(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
finalize.publish = publish_then_die
settings = Settings()
finalize.finalize_job(settings, StateStore.from_settings(settings), os.environ["JOB_ID"])
"""


@pytest.mark.parametrize("replace", [False, True])
def test_a_finalize_killed_right_after_publishing_is_finished_not_refused(
        pg_db, settings_env, store, send, worker_proc, wait_for, replace):
    # Given a job whose tables are all copied and verified (plain functions, no queue yet)
    make_narrow_tables(pg_db, SIZES)
    published = settings_env.data_dir / "app.db"
    if replace:
        app_database(published, 10)
    job_id = control.submit_job(settings_env, store, lambda *a: None, source=pg_db.url,
                                target="app", replace=replace)
    plan.plan_job(settings_env, store, lambda *a: None, job_id)
    copying.copy_table(settings_env, store, lambda *a: None, job_id, "items")

    # When finalize is killed -9 right after the new file is in place
    died = subprocess.run([sys.executable, "-c", DIE_AFTER_PUBLISH], cwd=REPO,
                          env={**os.environ, "JOB_ID": job_id}, capture_output=True,
                          timeout=60)
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()
    assert published.exists() and store.job(job_id)["state"] == "finalizing"
    first = published.stat().st_ino

    # Then a worker's finalize finishes the job with that same file: no "already exists", no
    # second build pushing our own file aside as the "old" one
    worker = worker_proc()
    send(FINALIZE_TASK, job_id)
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])
    assert view["state"] == "done", outcome(view)
    assert published.stat().st_ino == first
    assert sorted(p.name for p in settings_env.data_dir.glob("app.*.old.db")) == (
        [view["backup"]] if replace else [])
    assert_exactly_once(settings_env, store, job_id, "app", SIZES)
    assert not list(settings_env.job_dir(job_id).glob("*.partial"))
