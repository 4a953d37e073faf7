"""Redis lost after finalize committed the job's file but before it was published: the job is
rebuilt from the volume as built (every table verified, finalize queued), and no table is
copied again. The largest table's work file has become the job's file by then, so before,
the rebuild queued that table as never copied and its rows were read from the source again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from worker.control import FINALIZE_TASK, submit_job
from worker.copying import copy_table
from worker.finalize import finalize_job
from worker.plan import plan_job
from worker.recover import rebuild_job
from worker.state import JobState

REPO = Path(__file__).resolve().parents[1]
SIZES = {"big": 3_000, "small": 1_000}

# finalize in a process of its own that SIGKILLs itself when the build, just committed,
# moves the built work file: the instant between the commit and the publication.
FINALIZE_DIES_AT_MOVE = """
import os, signal, sys
from worker import build
from worker.config import Settings
from worker.finalize import finalize_job
from worker.state import StateStore
build._move = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
settings = Settings()
finalize_job(settings, StateStore.from_settings(settings), sys.argv[1])
"""


def test_a_job_whose_file_was_built_is_rebuilt_as_built_and_not_copied_again(
        pg_db, settings_env, store):
    # Given a job whose tables are copied and verified (by the plain functions behind the
    # tasks: the queue is not what this is about)
    for name, rows in SIZES.items():
        pg_db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text NOT NULL)")
        pg_db.execute(f"INSERT INTO {name} SELECT g, 'v' || g FROM generate_series(1, {rows}) g")
    sent: list = []
    job_id = submit_job(settings_env, store, lambda *task: sent.append(task),
                        source=pg_db.url, target="built")
    plan_job(settings_env, store, lambda *task: sent.append(task), job_id)
    for name in SIZES:
        copy_table(settings_env, store, lambda *task: sent.append(task), job_id, name)
    checksums = {name: store.table(job_id, name)["checksum"] for name in SIZES}

    # and its finalize killed -9 after the build committed, before publication
    died = subprocess.run([sys.executable, "-c", FINALIZE_DIES_AT_MOVE, job_id], cwd=REPO,
                          capture_output=True, timeout=60, env=dict(os.environ))
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()

    # When Redis loses everything of the job, and it is rebuilt from the volume
    lost = list(store.redis.scan_iter(f"{settings_env.redis_prefix}:*"))
    store.redis.delete(*lost)
    assert store.job(job_id) is None
    sent.clear()
    said = rebuild_job(settings_env, store, lambda *task: sent.append(task), job_id)

    # Then no table is queued for copying: every table is verified with its checksum, and
    # finalize is queued
    assert said == "rebuilt from the volume; its file was already built: finalizing"
    assert sent == [(FINALIZE_TASK, job_id)]
    for name, rows in SIZES.items():
        table = store.table(job_id, name)
        assert (table["state"], table["rows_done"], table["checksum"]) == (
            "verified", rows, checksums[name])

    # and finalize publishes the built file, each row once, with the copy's checksums
    finalize_job(settings_env, store, job_id)
    job = store.job(job_id)
    assert job["state"] == JobState.DONE.value, job
    published = sqlite3.connect(job["published"])
    for name, rows in SIZES.items():
        assert published.execute(
            f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM {name}").fetchone() == (
            rows, rows, 1, rows)
    report = {t["name"]: t for t in json.loads(Path(job["report"]).read_text())["tables"]}
    assert {name: report[name]["checksum"] for name in SIZES} == checksums
