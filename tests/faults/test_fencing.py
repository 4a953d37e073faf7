"""Two workers on one table (DESIGN 2.5): the lease lets one start; the fencing token, checked
inside each chunk's SQLite transaction, stops a writer that lost its lease without knowing it."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from faults.support import (
    assert_exactly_once,
    json_lines,
    make_narrow_tables,
    outcome,
    rows_done,
)
from worker.core.errors import WorkFileBusy
from worker.jobs import control
from worker.jobs.control import COPY_TASK
from worker.sqlite.workfile import translate_sqlite_error


def test_the_same_task_delivered_twice_at_once_copies_once(pg_db, settings_env, store, send,
                                                          worker_proc, wait_for, wait_until):
    # Given two idle workers and a job with one table
    sizes = {"twice": 400_000}
    make_narrow_tables(pg_db, sizes)
    workers = [worker_proc(), worker_proc()]
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="twice",
                                options={"chunk_rows": 4000})
    wait_until(lambda: store.job_state(job_id) == control.JobState.COPYING, 30, "planning")

    # When the table's task is sent a second time (as a redelivery would), so that both
    # workers run copy_table for it at the same moment
    send(COPY_TASK, job_id, "twice")
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=workers)

    # Then one copied it and the other stepped aside, and every row is there once
    assert view["state"] == "done", outcome(view)
    events = [e for w in workers for e in json_lines(w.log_text()) if e.get("table") == "twice"]
    copying = [e for e in events if e["event"] == "table_copying"]
    skipped = [e for e in events if e["event"] == "table_skipped"]
    assert len(copying) == 1, events
    assert [e["reason"] for e in skipped] in (["another worker holds this table's lease"],
                                              ["already copied"]), events
    assert view["tables"][0]["attempts"] == 1
    assert_exactly_once(settings_env, store, job_id, "twice", sizes)


def test_a_paused_writer_whose_lease_was_taken_over_cannot_commit(
        pg_db, settings_env, store, send, worker_proc, wait_for, wait_until, monkeypatch):
    # Given worker A copying a table under a 2 s lease
    monkeypatch.setenv("LITESHIFT_LEASE_TTL_S", "2")
    sizes = {"fenced": 900_000}
    make_narrow_tables(pg_db, sizes)
    a = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="fenced",
                                options={"chunk_rows": 4000})
    wait_until(lambda: rows_done(store, job_id) >= 60_000, 60, "A to be copying")

    # When A freezes (SIGSTOP: a long GC pause, a frozen VM) past its lease, the reaper hands
    # the table to worker B, and A wakes up again while B is taking over
    os.killpg(a.proc.pid, signal.SIGSTOP)
    frozen_at = time.time()
    b = worker_proc()
    wait_until(lambda: "Task liteshift.copy_table[" in b.log_text(), 30,
               "B to be given the table")
    # B may be copying already, or waiting for SQLite's lock: A may have frozen inside a
    # chunk's transaction, which it then finishes (its token was still the file's)
    time.sleep(0.5)
    os.killpg(a.proc.pid, signal.SIGCONT)
    resumed_at = time.time()
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[a, b])

    # Then A's task was refused (LeaseLost) and stopped, the job finished, and every row is
    # there once
    assert view["state"] == "done", outcome(view)
    a_start = a.events("table_copying")[0]
    taken = [e for e in b.events("table_copying") if e["token"] > a_start["token"]]
    assert taken, b.tail()
    stopped = [e for e in a.events("table_stopped") if e["task_id"] == a_start["task_id"]]
    assert len(stopped) == 1, a.tail()
    assert any(words in stopped[0]["reason"] for words in
               ("took over this table", "lease was taken over", "newer writer")), stopped
    # nothing A's task committed landed after B fenced the file: every row count A reached
    # is at most where B's copy started (its first chunk's count less that chunk). (Log
    # timestamps cannot tell: A logs a commit it made before B's fence after it wakes up.)
    b_first = min(b.events("chunk_committed"), key=lambda e: e["rows_done"])
    b_started_at = b_first["rows_done"] - b_first["chunk_rows"]
    a_commits = [e["rows_done"] for e in a.events("chunk_committed")
                 if e["task_id"] == a_start["task_id"]]
    assert a_commits and max(a_commits) <= b_started_at, (a_commits, b_first)
    assert frozen_at < resumed_at
    assert_exactly_once(settings_env, store, job_id, "fenced", sizes)


def test_a_work_file_locked_by_a_frozen_writer_is_a_transient_error(tmp_path):
    # A writer frozen inside a transaction keeps SQLite's lock for as long as it is frozen;
    # its successor must retry later, not fail the table for good.
    path = tmp_path / "w.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        waiter.execute("BEGIN IMMEDIATE")

    error = translate_sqlite_error(locked.value, what="writing table 't'")

    assert isinstance(error, WorkFileBusy) and error.transient
    assert "another process holds its lock" in str(error) and "will retry" in str(error)
    holder.execute("ROLLBACK")
