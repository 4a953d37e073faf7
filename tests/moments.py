"""Helpers for the one-moment tests: three tables chained by foreign keys, a writer that
keeps adding one row to each per transaction while a job copies them, and checks on the
published file.

accounts ← ledger ← zz_audit: every writer transaction inserts an account, a ledger line for
it and an audit row for that line, all marked `w = 1`. A file that is one moment of the
source therefore holds as many writer rows in each table, and no orphan.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.jobs import control

TABLES = ("accounts", "ledger", "zz_audit")

# (accounts, ledger, zz_audit) rows before the writer starts; the ledger takes many chunks
SEED = (4_000, 60_000, 4_000)
CHUNK_ROWS = 2_000
WRITER_PAUSE_S = 0.003


class Writer(threading.Thread):
    """Runs `one_transaction()` every few milliseconds until stopped; counts its commits."""

    def __init__(self, connect: Callable[[], Any], one_transaction: Callable[[Any], None]):
        super().__init__(name="moment-writer", daemon=True)
        self._connect = connect
        self._one = one_transaction
        self._halt = threading.Event()
        self.commits = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = self._connect()
            try:
                while not self._halt.is_set():
                    self._one(conn)
                    self.commits += 1
                    time.sleep(WRITER_PAUSE_S)
            finally:
                conn.close()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> int:
        self._halt.set()
        self.join(timeout=30)
        assert self.error is None, f"the writer failed: {self.error!r}"
        return self.commits


@contextmanager
def writing(connect: Callable[[], Any],
            one_transaction: Callable[[Any], None]) -> Iterator[Writer]:
    """A writer at work (its first commits made) for the block's length."""
    started = Writer(connect, one_transaction)
    started.start()
    wait_commits(started, 20)
    try:
        yield started
    finally:
        if started.is_alive():
            started.stop()


def wait_commits(writer: Writer, at_least: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while writer.commits < at_least:
        assert writer.error is None, f"the writer failed: {writer.error!r}"
        assert time.monotonic() < deadline, f"the writer made {writer.commits} commits"
        time.sleep(0.01)


def one_moment(path: Path) -> dict[str, int]:
    """The published file holds one moment: no orphan, and as many writer rows per table.
    Returns each table's count of writer rows."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        counts = {t: db.execute(f'SELECT count(*) FROM "{t}" WHERE w = 1').fetchone()[0]
                  for t in TABLES}
        seeded = {t: db.execute(f'SELECT count(*) FROM "{t}" WHERE w = 0').fetchone()[0]
                  for t in TABLES}
    finally:
        db.close()
    assert seeded == dict(zip(TABLES, SEED, strict=True)), seeded
    assert len(set(counts.values())) == 1, f"writer rows per table differ: {counts}"
    return counts


# -- the scenarios both sources run (tests/test_snapshot_pg.py, mysqlsrc/test_snapshot_mysql.py)

@dataclass
class Scenario:
    """A source with the chained tables and a writer at work, the test's job services, and
    what a job leaves on that source (`leftovers(job_id)`: sessions, slots, transactions)."""

    db: Any
    writer: Writer
    settings: Any
    store: Any
    send: Any
    worker_proc: Callable[[], Any]
    wait_for: Callable[..., dict[str, Any]]
    wait_until: Callable[..., Any]
    leftovers: Callable[[str], list[Any]]

    @classmethod
    def for_test(cls, request: Any, db: Any, writer: Writer, *,
                 leftovers: Callable[[str], list[Any]]) -> Scenario:
        """The scenario with the test's own services (tests/conftest.py's fixtures)."""
        fixture = request.getfixturevalue
        return cls(db, writer, fixture("settings_env"), fixture("store"), fixture("send"),
                   fixture("worker_proc"), fixture("wait_for"), fixture("wait_until"),
                   leftovers)

    def submit(self, target: str) -> str:
        return control.submit_job(self.settings, self.store, self.send, source=self.db.url,
                                  target=target, options={"chunk_rows": CHUNK_ROWS})

    def under_way(self, job_id: str, worker: Any, *, ledger_rows: int = CHUNK_ROWS) -> None:
        def rows() -> int:
            return int((self.store.table(job_id, "ledger") or {}).get("rows_done") or 0)

        self.wait_until(lambda: rows() >= ledger_rows, 120, "the ledger's copy to be under way",
                        workers=[worker])

    def ended(self, job_id: str, *workers: Any, timeout: float = 180) -> dict[str, Any]:
        return self.wait_for(self.store, job_id, ["done", "failed"], timeout=timeout,
                             workers=workers)

    def nothing_left(self, job_id: str, *workers: Any) -> None:
        self.wait_until(lambda: not self.leftovers(job_id), 15, "the job's sessions to end",
                        workers=workers)

    def path(self, target: str) -> Path:
        return Path(self.settings.data_dir) / f"{target}.db"


def copied_as_one_moment(run: Scenario) -> dict[str, Any]:
    """Two workers copy the tables while the writer writes; returns the job's view."""
    # Given two workers and a writer adding to all three tables every few milliseconds
    workers = [run.worker_proc(), run.worker_proc()]

    # When a job copies the tables
    job_id = run.submit("moment")
    view = run.ended(job_id, *workers)
    commits = run.writer.stop()

    # Then the file is one moment: no orphan, as many writer rows in each table, and the
    # writer went on writing after that moment
    assert view["state"] == "done", view
    counts = one_moment(run.path("moment"))
    assert commits > counts["accounts"] > 0, (commits, counts)
    assert view["snapshot"]["consistent"] is True, view["snapshot"]
    # and the job left nothing on the source
    run.nothing_left(job_id, *workers)
    return view


def killed_worker_resumes(run: Scenario) -> tuple[dict[str, Any], dict[str, Any]]:
    """A worker killed -9 mid-copy; another finishes in the same moment. Returns the job's
    snapshot record before the kill and its view at the end."""
    # Given a job under way with one worker
    worker = run.worker_proc()
    job_id = run.submit("killed")
    run.under_way(job_id, worker, ledger_rows=3 * CHUNK_ROWS)
    before = run.store.job(job_id)["snapshot"]

    # When the worker is killed -9 (its whole process group) and another one starts
    worker.kill()
    os.kill(before["holder_pid"], 0)  # the holder lives on: it has a session of its own
    survivor = run.worker_proc()
    view = run.ended(job_id, survivor)
    run.writer.stop()

    # Then the ledger resumed in the same snapshot and the file is one moment
    assert view["state"] == "done", view
    assert view["snapshot"]["holder"] == before["holder"]
    assert max(t["attempts"] for t in view["tables"]) >= 2
    one_moment(run.path("killed"))
    run.nothing_left(job_id, survivor)
    return before, view


def lost_snapshot_then_retry(run: Scenario, *, says: str) -> None:
    """The holder killed -9: the job fails, its tables' errors saying `says` and what to do;
    a retry copies every table again under a new snapshot."""
    # Given a job under way with one worker
    worker = run.worker_proc()
    job_id = run.submit("lost")
    run.under_way(job_id, worker)
    first = run.store.job(job_id)["snapshot"]

    # When the snapshot's holder is killed -9, and the worker with it (so that the ledger
    # must enter the snapshot again to resume)
    os.kill(first["holder_pid"], signal.SIGKILL)
    worker.kill()
    worker = run.worker_proc()

    # Then the job fails, saying the snapshot is gone and what to do; nothing is published
    view = run.ended(job_id, worker, timeout=120)
    assert view["state"] == "failed", view
    errors = [t["error"] for t in view["tables"] if t["state"] == "failed"]
    assert errors and all(says in e and "liteshift retry" in e for e in errors), errors
    assert not run.path("lost").exists()
    run.nothing_left(job_id, worker)

    retried_under_a_new_snapshot(run, job_id, first, worker)


def left_without_workers_then_retry(run: Scenario, monkeypatch: Any) -> None:
    """Every worker killed -9 and none back: the holder releases the snapshot after
    LITESHIFT_SNAPSHOT_IDLE_TIMEOUT_S and fails the job saying so; a retry with a worker
    back copies every table again under a new snapshot."""
    # Given a job under way with its only worker, and snapshots kept 4 s without a worker
    monkeypatch.setenv("LITESHIFT_SNAPSHOT_IDLE_TIMEOUT_S", "4")  # the workers' and holders'
    worker = run.worker_proc()
    job_id = run.submit("unattended")
    run.under_way(job_id, worker)
    first = run.store.job(job_id)["snapshot"]

    # When the worker is killed -9 and none comes back
    worker.kill()
    assert run.leftovers(job_id), "the holder keeps the snapshot while a worker may return"

    # Then the holder releases the snapshot, and the job fails saying so and what to do
    view = run.ended(job_id, timeout=60)
    assert view["state"] == "failed", view
    assert "snapshot of the source was released" in view["error"], view["error"]
    assert f"`liteshift retry {job_id}`" in view["error"], view["error"]
    assert {t["state"] for t in view["tables"]} <= {"verified", "failed"}, view["tables"]
    run.nothing_left(job_id)
    run.wait_until(lambda: not _running(first["holder_pid"]), 15, "the holder to exit")
    assert not run.path("unattended").exists()

    retried_under_a_new_snapshot(run, job_id, first, run.worker_proc())


def retried_under_a_new_snapshot(run: Scenario, job_id: str, first: dict[str, Any],
                                 worker: Any) -> None:
    # When it is retried: every table again, under a new snapshot
    control.retry_job(run.store, run.send, job_id)
    view = run.ended(job_id, worker)
    run.writer.stop()
    assert view["state"] == "done", view
    assert view["snapshot"]["holder"] != first["holder"]
    one_moment(run.path(view["target"]))
    run.nothing_left(job_id, worker)


def cancelled_leaves_nothing(run: Scenario) -> None:
    worker = run.worker_proc()
    job_id = run.submit("cancelled")
    run.under_way(job_id, worker)
    control.cancel_job(run.settings, run.store, job_id)
    run.writer.stop()
    run.nothing_left(job_id, worker)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
