"""Redis lost after finalize committed the job's file, before the job's outcome was written:
the job is rebuilt from the volume as built (every table verified, finalize queued), and no
table is copied again. The largest table's work file has become the job's file by then, so before,
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

import pytest

from worker.jobs.control import FINALIZE_TASK, submit_job
from worker.jobs.copying import copy_table
from worker.jobs.finalize import finalize_job
from worker.jobs.plan import plan_job
from worker.jobs.recover import rebuild_job
from worker.state.store import JobState

REPO = Path(__file__).resolve().parents[1]
SIZES = {"big": 3_000, "small": 1_000}

# finalize in a process of its own that SIGKILLs itself when it calls the named function:
# build._move comes right after the build's commit, finalize.write_outcome right after the
# publication (the rename) and before the job's outcome is on the volume.
FINALIZE_DIES_AT = """
import importlib, os, signal, sys
from worker.core.config import Settings
from worker.jobs.finalize import finalize_job
from worker.state.store import StateStore
module = importlib.import_module(sys.argv[2])
setattr(module, sys.argv[3], lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL))
settings = Settings()
finalize_job(settings, StateStore.from_settings(settings), sys.argv[1])
"""


@pytest.mark.parametrize("module, function", [("worker.sqlite.build", "_move"),
                                              ("worker.jobs.finalize", "write_outcome")])
def test_a_job_whose_file_was_built_is_rebuilt_as_built_and_not_copied_again(
        pg_db, settings_env, store, module, function):
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

    # and its finalize killed -9 after the build committed (before or after the rename)
    died = subprocess.run([sys.executable, "-c", FINALIZE_DIES_AT, job_id, module, function],
                          cwd=REPO, capture_output=True, timeout=60, env=dict(os.environ))
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
    published = sqlite3.connect(settings_env.data_dir / job["published"])
    for name, rows in SIZES.items():
        assert published.execute(
            f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM {name}").fetchone() == (
            rows, rows, 1, rows)
    written = json.loads((settings_env.data_dir / job["report"]).read_text())
    report = {t["name"]: t for t in written["tables"]}
    assert {name: report[name]["checksum"] for name in SIZES} == checksums
