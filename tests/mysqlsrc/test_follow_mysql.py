"""Follow mode on MariaDB (worker/sources/mysql/changes.py): a writer inserts, updates and
deletes rows of three tables chained by foreign keys (and inserts prices that the type
rules cannot store exactly) while the job copies them and then follows the binlog, which
rotates meanwhile; the writer stops; cutover publishes; every table of the file equals the
source (verify --source). Also with the follower killed -9 while following and while
cutting over; and DDL on a followed table, which stops the follow. The run itself is
tests/follow_support.py's, shared with the PostgreSQL tests."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from follow_support import (
    LOSSY_PRICE,
    PRICES,
    PRICES_SEED,
    FollowSource,
    run_follow,
    stopped_on_ddl,
    wait_applied,
)
from moments import CHUNK_ROWS
from mysql.connector import errors as my_errors

from mysqlsrc.conftest import MY_HOST, MY_PORT, MyDatabase, my_connect
from mysqlsrc.test_snapshot_mysql import make_chain
from worker.jobs import control

BINLOG_FILE_BYTES = 1 << 32  # what a position's difference across a rotation amounted to


def write_mixed(conn: Any) -> None:
    """One transaction, tried again when InnoDB picks it as a deadlock's victim (several
    writers lock neighbouring rows)."""
    for attempt in range(200):
        try:
            _write_mixed(conn)
            return
        except my_errors.Error as exc:
            conn.rollback()
            if exc.errno not in (1205, 1213):
                raise
            time.sleep(0.002 * min(attempt, 10))
    raise AssertionError("the writer kept deadlocking")


def _write_mixed(conn: Any) -> None:
    """An account with its ledger line and audit row, a ledger amount and an account name
    changed, an audit row removed, a lossy price."""
    cur = conn.cursor()
    cur.execute("INSERT INTO accounts (name, w) VALUES ('w', 1)")
    cur.execute("INSERT INTO ledger (account_id, amount, w) VALUES (LAST_INSERT_ID(), 1, 1)")
    cur.execute("INSERT INTO zz_audit (ledger_id, note, w) VALUES (LAST_INSERT_ID(), 'w', 1)")
    # Keys drawn here: RAND() in the WHERE would scan (and lock) the whole table.
    cur.execute("UPDATE ledger SET amount = amount + 1 WHERE id = %s",
                (random.randint(1, 60_000),))
    cur.execute("UPDATE accounts SET name = LEFT(CONCAT(name, 'u'), 20) WHERE id = %s",
                (random.randint(1, 4_000),))
    cur.execute("DELETE FROM zz_audit WHERE id = %s", (random.randint(1, 4_000),))
    cur.execute(f"INSERT INTO {PRICES} (price) VALUES ({LOSSY_PRICE})")
    conn.commit()
    cur.close()


def _connect(db: Any) -> Any:
    conn = my_connect(db.name)
    conn.autocommit = False
    return conn


def binlog_readers(user: str) -> list[Any]:
    """The source's sessions of `user` (the job's own user): its binlog dump among them."""
    return [r for r in MyDatabase("mysql").execute("SHOW PROCESSLIST") if r[1] == user]


@pytest.fixture
def chain(my_db: Any) -> Any:
    make_chain(my_db)
    my_db.execute(f"CREATE TABLE {PRICES} (id bigint AUTO_INCREMENT PRIMARY KEY, "
                  "price decimal(30, 4)) ENGINE=InnoDB")
    my_db.execute(f"INSERT INTO {PRICES} (price) SELECT {LOSSY_PRICE} "
                  f"FROM seq_1_to_{PRICES_SEED}")
    return my_db


@pytest.fixture
def job_user(chain: Any) -> Iterator[tuple[str, str]]:
    """A user of the job's own (user, url), so that the test can see its sessions alone on
    a server other tests use too."""
    user, password = f"lsf_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    chain.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    chain.execute(f"GRANT ALL ON `{chain.name}`.* TO '{user}'@'%'")
    chain.execute(f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%'")
    try:
        yield user, f"mysql://{user}:{password}@{MY_HOST}:{MY_PORT}/{chain.name}"
    finally:
        chain.execute(f"DROP USER IF EXISTS '{user}'@'%'")


def _source(db: Any, **extra: Any) -> FollowSource:
    return FollowSource(db=db, connect=lambda: _connect(db), write=write_mixed,
                        leftovers=lambda job_id: [], **extra)


def test_follow_across_binlog_rotations_equals_the_source(chain, settings_env, store, send,
                                                          worker_proc, wait_for, wait_until):
    # The binlog rotates twice while the job follows: the follow reads on into the new
    # files, and its lag in bytes counts the bytes in between, not the files' numbers.
    def rotate_twice() -> None:
        chain.execute("FLUSH BINARY LOGS")
        time.sleep(0.5)
        chain.execute("FLUSH BINARY LOGS")

    source = _source(chain, during_follow=rotate_twice)
    figures = run_follow(source, settings_env, store, send, worker_proc, wait_for,
                         wait_until, kill_following=False, kill_cutover=False)
    assert figures["downtime"] < 30  # generous: the figure goes to RESULTS.md, not an assert
    lags = [lag for lag in figures["lag_bytes"] if lag is not None]
    assert lags and max(lags) < BINLOG_FILE_BYTES // 16, lags


def test_follower_killed_while_following_and_cutting_over(chain, settings_env, store, send,
                                                          worker_proc, wait_for, wait_until):
    run_follow(_source(chain), settings_env, store, send, worker_proc, wait_for, wait_until,
               kill_following=True, kill_cutover=True)


@pytest.mark.parametrize("ddl", ["ALTER TABLE ledger ADD COLUMN extra text",
                                 "DROP TABLE zz_audit"])
def test_ddl_on_a_followed_table_stops_the_follow(ddl, chain, job_user, settings_env, store,
                                                  send, worker_proc, wait_for, wait_until):
    table = ddl.split()[2]
    user, url = job_user
    # Given a follow (as its own user) that applied a change made before the DDL
    workers = [worker_proc()]
    job_id = control.submit_job(settings_env, store, send, source=url, target="ddl",
                                options={"chunk_rows": CHUNK_ROWS, "follow": True})
    wait_for(store, job_id, ["following"], timeout=120, workers=workers)
    chain.execute("INSERT INTO zz_audit (ledger_id, note, w) VALUES (1, 'before', 7)")
    wait_applied(store, job_id, 1, wait_until, workers)
    assert binlog_readers(user)  # the follower's connection, as the job's user

    # When the DDL runs, and rows change after it
    chain.execute(ddl)
    conn = _connect(chain)
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO accounts (name, w) VALUES ('after', 8)")
        cur.execute("INSERT INTO ledger (account_id, amount, w) VALUES (1, 1, 8)")
        conn.commit()
    finally:
        conn.close()

    # Then the follow stops naming the table, the file holds what came before the DDL and
    # nothing after it, and no session of the job's is left on the source (binlog reader
    # closed)
    file = stopped_on_ddl(settings_env, store, job_id, table, wait_for, workers)
    assert file.execute("SELECT note FROM zz_audit WHERE w = 7").fetchall() == [("before",)]
    assert file.execute("SELECT count(*) FROM accounts WHERE w = 8").fetchone() == (0,)
    wait_until(lambda: not binlog_readers(user), 30, "the job's sessions to close",
               workers=workers)
