"""Publishing: an existing target refused unless asked, and then the old file kept.
(Building the file from the work files: test_build.py.)"""

from __future__ import annotations

import json
import sqlite3

import pytest

from worker.core.errors import InputError
from worker.jobs import control


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
    assert view["backup"] == backup.name  # on the volume: no server path in an answer
    report = json.loads((settings_env.data_dir / "app.report.json").read_text())
    assert report["published"]["replaced_file_kept_as"] == backup.name
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
