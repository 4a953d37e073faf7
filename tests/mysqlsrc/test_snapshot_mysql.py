"""A live MariaDB source copies as one moment (worker/sources/mysql/snapshot.py): a writer
keeps adding an account, a ledger line and an audit row per transaction for the whole job,
and the published file still holds one moment of the source. Also after a worker is killed
-9 mid-copy (the holder reads its tables again in the same transactions), and after the
snapshot's holder is killed (the job fails saying why; `retry` copies it again under a new
snapshot), and when no worker is left to finish it (the holder lets the snapshot go after a
while). Nothing of the job is left on the source afterwards: no session, no transaction.
The scenarios are tests/moments.py's, shared with tests/test_snapshot_pg.py.
"""

from __future__ import annotations

import json
from typing import Any

import moments
import pytest
from moments import SEED

from mysqlsrc.conftest import my_connect


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

    with moments.writing(connect, write_one) as started:
        yield started


@pytest.fixture
def run(request, chain, writer) -> moments.Scenario:
    return moments.Scenario.for_test(request, chain, writer,
                                     leftovers=lambda job_id: leftovers(chain))


def test_a_live_mariadb_is_copied_as_one_moment(run):
    view = moments.copied_as_one_moment(run)

    moment = view["snapshot"]
    assert moment["binlog_file"] and moment["binlog_pos"] > 0 and moment["at"], moment
    assert "token_sealed" not in moment  # the holder's key stays in the workers' hands
    report = json.loads((run.settings.data_dir / "moment.report.json").read_text())
    assert report["snapshot"]["binlog_pos"] == moment["binlog_pos"]


def test_a_worker_killed_mid_copy_resumes_in_the_same_moment(run):
    moments.killed_worker_resumes(run)


def test_a_lost_snapshot_fails_the_job_and_retry_takes_a_new_one(run):
    moments.lost_snapshot_then_retry(run, says="snapshot holder")


def test_a_job_left_without_workers_releases_its_snapshot(run, monkeypatch):
    moments.left_without_workers_then_retry(run, monkeypatch)


def test_a_cancelled_job_leaves_nothing_on_the_source(run):
    moments.cancelled_leaves_nothing(run)


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
