"""A live MariaDB source copies as one moment (worker/sources/mysql/snapshot.py): a writer
keeps adding an account, a ledger line and an audit row per transaction for the whole job,
and the published file still holds one moment of the source. Also after a worker is killed
-9 mid-copy (the holder reads its tables again in the same transactions), and after the
snapshot's holder is killed (the job fails saying why; `retry` copies it again under a new
snapshot). Nothing of the job is left on the source afterwards: no session, no transaction.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest
from moments import CHUNK_ROWS, SEED, Writer, one_moment, wait_commits

from mysqlsrc.conftest import my_connect
from worker.jobs import control


def make_chain(db: Any) -> None:
    accounts, ledger, audit = SEED
    db.script(f"""
CREATE TABLE accounts (id bigint AUTO_INCREMENT PRIMARY KEY, name varchar(20) NOT NULL,
  w smallint NOT NULL DEFAULT 0) ENGINE=InnoDB;
CREATE TABLE ledger (id bigint AUTO_INCREMENT PRIMARY KEY, account_id bigint NOT NULL,
  amount int NOT NULL, w smallint NOT NULL DEFAULT 0,
  FOREIGN KEY (account_id) REFERENCES accounts (id)) ENGINE=InnoDB;
CREATE TABLE zz_audit (id bigint AUTO_INCREMENT PRIMARY KEY, ledger_id bigint NOT NULL,
  note varchar(20), w smallint NOT NULL DEFAULT 0,
  FOREIGN KEY (ledger_id) REFERENCES ledger (id)) ENGINE=InnoDB;
INSERT INTO accounts (name) SELECT CONCAT('a', seq) FROM seq_1_to_{accounts};
INSERT INTO ledger (account_id, amount) SELECT 1 + seq % {accounts}, seq FROM seq_1_to_{ledger};
INSERT INTO zz_audit (ledger_id, note) SELECT seq, CONCAT('n', seq) FROM seq_1_to_{audit};
ANALYZE TABLE accounts, ledger, zz_audit""")


def write_one(conn: Any) -> None:
    """One transaction: an account, its ledger line, its audit row."""
    cur = conn.cursor()
    cur.execute("INSERT INTO accounts (name, w) VALUES ('w', 1)")
    cur.execute("INSERT INTO ledger (account_id, amount, w) VALUES (LAST_INSERT_ID(), 1, 1)")
    cur.execute("INSERT INTO zz_audit (ledger_id, note, w) VALUES (LAST_INSERT_ID(), 'w', 1)")
    conn.commit()
    cur.close()


WRITERS: set[int] = set()  # the writers' own sessions, not the job's


def leftovers(db: Any) -> list[Any]:
    """Sessions on the job's database (a transaction or a lock needs one), and open InnoDB
    transactions of sessions there; the writer's are not the job's."""
    conn = my_connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT ID, USER, COMMAND, STATE FROM information_schema.PROCESSLIST "
                    "WHERE DB = %s AND ID <> CONNECTION_ID()", (db.name,))
        sessions = [row for row in cur.fetchall() if row[0] not in WRITERS]
        cur.execute("SELECT t.trx_mysql_thread_id FROM information_schema.INNODB_TRX t JOIN "
                    "information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                    "WHERE p.DB = %s AND p.ID <> CONNECTION_ID()", (db.name,))
        return [*sessions, *(row for row in cur.fetchall() if row[0] not in WRITERS)]
    finally:
        conn.close()


@pytest.fixture
def chain(my_db: Any) -> Any:
    make_chain(my_db)
    return my_db


@pytest.fixture
def writer(chain: Any) -> Any:
    def connect() -> Any:
        conn = my_connect(chain.name)
        conn.autocommit = False
        cur = conn.cursor()
        cur.execute("SELECT CONNECTION_ID()")
        WRITERS.add(cur.fetchone()[0])
        cur.close()
        return conn

    started = Writer(connect, write_one)
    started.start()
    wait_commits(started, 20)
    yield started
    if started.is_alive():
        started.stop()


def _submit(settings: Any, store: Any, send: Any, db: Any, target: str) -> str:
    return control.submit_job(settings, store, send, source=db.url, target=target,
                              options={"chunk_rows": CHUNK_ROWS})


def _rows(store: Any, job_id: str, table: str) -> int:
    return int((store.table(job_id, table) or {}).get("rows_done") or 0)


def test_a_live_mariadb_is_copied_as_one_moment(chain, writer, settings_env, store, send,
                                                worker_proc, wait_for, wait_until):
    # Given two workers and a writer adding to all three tables every few milliseconds
    workers = [worker_proc(), worker_proc()]

    # When a job copies the tables
    job_id = _submit(settings_env, store, send, chain, "moment")
    view = wait_for(store, job_id, ["done", "failed"], timeout=180, workers=workers)
    commits = writer.stop()

    # Then the file is one moment, and the writer went on writing after it
    assert view["state"] == "done", view
    counts = one_moment(settings_env.data_dir / "moment.db")
    assert commits > counts["accounts"] > 0, (commits, counts)
    moment = view["snapshot"]
    assert moment["consistent"] is True, moment
    assert moment["binlog_file"] and moment["binlog_pos"] > 0 and moment["at"], moment
    assert "token_sealed" not in moment  # the holder's key stays in the workers' hands
    report = json.loads((settings_env.data_dir / "moment.report.json").read_text())
    assert report["snapshot"]["binlog_pos"] == moment["binlog_pos"]
    # and the job left nothing on the source
    wait_until(lambda: not leftovers(chain), 15, "the job's sessions to end", workers=workers)


def test_a_worker_killed_mid_copy_resumes_in_the_same_moment(chain, writer, settings_env,
                                                             store, send, worker_proc,
                                                             wait_for, wait_until):
    worker = worker_proc()
    job_id = _submit(settings_env, store, send, chain, "killed")
    wait_until(lambda: _rows(store, job_id, "ledger") >= 3 * CHUNK_ROWS, 120,
               "the ledger's copy to be under way", workers=[worker])
    before = store.job(job_id)["snapshot"]

    worker.kill()
    os.kill(before["holder_pid"], 0)  # the holder lives on: it has a session of its own
    survivor = worker_proc()
    view = wait_for(store, job_id, ["done", "failed"], timeout=180, workers=[survivor])
    writer.stop()

    assert view["state"] == "done", view
    assert view["snapshot"]["holder"] == before["holder"]
    assert max(t["attempts"] for t in view["tables"]) >= 2
    one_moment(settings_env.data_dir / "killed.db")
    wait_until(lambda: not leftovers(chain), 15, "the job's sessions to end",
               workers=[survivor])


def test_a_lost_snapshot_fails_the_job_and_retry_takes_a_new_one(chain, writer, settings_env,
                                                                store, send, worker_proc,
                                                                wait_for, wait_until):
    worker = worker_proc()
    job_id = _submit(settings_env, store, send, chain, "lost")
    wait_until(lambda: _rows(store, job_id, "ledger") >= CHUNK_ROWS, 120,
               "the ledger's copy to be under way", workers=[worker])
    first = store.job(job_id)["snapshot"]

    # When the holder is killed -9, and the worker with it
    os.kill(first["holder_pid"], signal.SIGKILL)
    worker.kill()
    worker = worker_proc()

    # Then the job fails, saying the snapshot is gone and what to do
    view = wait_for(store, job_id, ["done", "failed"], timeout=120, workers=[worker])
    assert view["state"] == "failed", view
    errors = [t["error"] for t in view["tables"] if t["state"] == "failed"]
    assert errors and all("snapshot holder" in e and "liteshift retry" in e
                          for e in errors), errors
    assert not (settings_env.data_dir / "lost.db").exists()
    wait_until(lambda: not leftovers(chain), 15, "the job's sessions to end", workers=[worker])

    # When it is retried: every table again, under a new snapshot
    control.retry_job(store, send, job_id)
    view = wait_for(store, job_id, ["done", "failed"], timeout=180, workers=[worker])
    writer.stop()
    assert view["state"] == "done", view
    assert view["snapshot"]["holder"] != first["holder"]
    one_moment(settings_env.data_dir / "lost.db")
    wait_until(lambda: not leftovers(chain), 15, "the job's sessions to end", workers=[worker])


def test_a_cancelled_job_leaves_nothing_on_the_source(chain, writer, settings_env, store,
                                                       send, worker_proc, wait_until):
    worker = worker_proc()
    job_id = _submit(settings_env, store, send, chain, "cancelled")
    wait_until(lambda: _rows(store, job_id, "ledger") >= CHUNK_ROWS, 120,
               "the ledger's copy to be under way", workers=[worker])
    control.cancel_job(settings_env, store, job_id)
    writer.stop()
    wait_until(lambda: not leftovers(chain), 15, "the job's sessions to end", workers=[worker])


def test_how_the_moment_is_taken_with_and_without_reload(my_db, monkeypatch):
    """Best first: equal binlog positions at every reader's start (no privilege); else
    FLUSH TABLES WITH READ LOCK (RELOAD); else one connection (still one moment)."""
    from worker.sources.mysql import snapshot as my_snapshot
    from worker.sources.url import parse_source_url

    my_db.execute("CREATE TABLE t (id int PRIMARY KEY) ENGINE=InnoDB")
    user, password = f"ls_{my_db.name[-8:]}", "pw-Snap-1"
    my_db.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'")
    try:
        my_db.execute(f"GRANT SELECT ON `{my_db.name}`.* TO '{user}'@'127.0.0.1'")
        root = parse_source_url(my_db.url)
        limited = parse_source_url(f"mysql://{user}:{password}@127.0.0.1:3306/{my_db.name}")

        def method(source: Any) -> dict[str, Any]:
            held = my_snapshot.take(source, job_id="t", timeout_s=5)
            try:
                return dict(held.record)
            finally:
                held.close()

        quiet = method(limited)
        assert (quiet["method"], quiet["readers"]) == ("binlog_snapshot", my_snapshot.READERS)
        assert quiet["binlog_file"] and quiet["binlog_pos"] > 0 and quiet["at"]
        monkeypatch.setattr(my_snapshot, "ATTEMPTS", 0)  # as if the source never paused
        locked = method(root)
        assert locked["method"] == "flush_tables_with_read_lock" and locked["gtid"], locked
        alone = method(limited)
        assert (alone["method"], alone["readers"]) == ("single_connection", 1), alone
        assert "RELOAD" in alone["not_better"] and alone["binlog_file"]
    finally:
        my_db.execute(f"DROP USER '{user}'@'127.0.0.1'")
