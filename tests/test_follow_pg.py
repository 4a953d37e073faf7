"""Follow mode on PostgreSQL (worker/follow/): a writer inserts, updates and deletes rows of
three tables chained by foreign keys (and inserts prices that the type rules cannot store
exactly) while the job copies them and then follows the source; the writer stops; cutover
publishes; every table of the file equals the source (the verify step's checksums, source
re-read). Also with the follower killed -9 while following and while cutting over. No slot
or publication of the job is left on the source afterwards. The run itself is
tests/follow_support.py's, shared with the MariaDB tests.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from follow_support import (
    LOSSY_PRICE,
    PRICES,
    PRICES_SEED,
    FollowSource,
    lossy_values,
    run_follow,
    stopped_on_ddl,
    verify_against_source,
    wait_applied,
)
from moments import CHUNK_ROWS
from test_snapshot_pg import make_chain

from worker.jobs import control


def write_mixed(conn: psycopg.Connection) -> None:
    """One transaction: an account with its ledger line and audit row (INSERT), a ledger
    amount changed (UPDATE), an audit row removed (DELETE), a lossy price (INSERT)."""
    with conn.transaction():
        conn.execute("""
            WITH a AS (INSERT INTO accounts (name, w) VALUES ('w', 1) RETURNING id),
                 l AS (INSERT INTO ledger (account_id, amount, w) SELECT id, 1, 1 FROM a
                       RETURNING id)
            INSERT INTO zz_audit (ledger_id, note, w) SELECT id, 'w', 1 FROM l""")
        conn.execute("UPDATE ledger SET amount = amount + 1 WHERE id = "
                     "(SELECT floor(random() * 60000)::int + 1)")
        conn.execute("UPDATE accounts SET name = name || 'u' WHERE id = "
                     "(SELECT floor(random() * 4000)::int + 1)")
        conn.execute("DELETE FROM zz_audit WHERE id = (SELECT floor(random() * 4000)::int + 1)")
        conn.execute(f"INSERT INTO {PRICES} (price) VALUES ({LOSSY_PRICE})")


def follow_leftovers(db: Any, job_id: str) -> list[Any]:
    with psycopg.connect(db.url, autocommit=True) as conn:
        slots = conn.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name "
                             "LIKE %s", (f"liteshift\\_{job_id}%",)).fetchall()
        publications = conn.execute("SELECT pubname FROM pg_publication WHERE pubname = %s",
                                    (f"liteshift_{job_id}",)).fetchall()
    return [*slots, *publications]


@pytest.fixture
def chain(pg_db: Any) -> Any:
    make_chain(pg_db)
    pg_db.execute(f"CREATE TABLE {PRICES} (id bigserial PRIMARY KEY, price numeric(30, 4))")
    pg_db.execute(f"INSERT INTO {PRICES} (price) SELECT {LOSSY_PRICE} "
                  f"FROM generate_series(1, {PRICES_SEED})")
    return pg_db


def _source(db: Any) -> FollowSource:
    return FollowSource(db=db, connect=db.connect, write=write_mixed,
                        leftovers=lambda job_id: follow_leftovers(db, job_id))


def test_follow_then_cutover_equals_the_source(chain, settings_env, store, send, worker_proc,
                                               wait_for, wait_until):
    figures = run_follow(_source(chain), settings_env, store, send, worker_proc, wait_for,
                         wait_until, kill_following=False, kill_cutover=False)
    assert figures["downtime"] < 30  # generous: figures go to RESULTS.md, not asserts


def test_follower_killed_while_following_and_cutting_over(chain, settings_env, store, send,
                                                          worker_proc, wait_for, wait_until):
    run_follow(_source(chain), settings_env, store, send, worker_proc, wait_for, wait_until,
               kill_following=True, kill_cutover=True)


def test_cancel_drops_the_slot(chain, settings_env, store, send, worker_proc, wait_for,
                               wait_until):
    workers = [worker_proc()]
    job_id = control.submit_job(settings_env, store, send, source=chain.url, target="gone",
                                options={"chunk_rows": CHUNK_ROWS, "follow": True})
    wait_for(store, job_id, ["following"], timeout=120, workers=workers)
    assert follow_leftovers(chain, job_id)
    control.cancel_job(settings_env, store, job_id, send)
    wait_until(lambda: not follow_leftovers(chain, job_id), 30, "the slot to be dropped",
               workers=workers)
    assert not (settings_env.data_dir / "gone.db").exists()


def test_a_table_without_a_key_is_refused(pg_db, settings_env, store, send, worker_proc,
                                          wait_for, wait_until):
    pg_db.execute("CREATE TABLE keyed (id int PRIMARY KEY)")
    pg_db.execute("CREATE TABLE loose (a int, b text)")
    workers = [worker_proc()]
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="nokey",
                                options={"follow": True})
    view = wait_for(store, job_id, ["failed"], timeout=60, workers=workers)
    assert "'loose' has no primary key or unique NOT NULL key" in view["error"], view
    wait_until(lambda: not follow_leftovers(pg_db, job_id), 30, "no slot", workers=workers)


def _following(chain: Any, settings: Any, store: Any, send: Any, wait_for: Any,
               workers: list[Any], target: str) -> str:
    job_id = control.submit_job(settings, store, send, source=chain.url, target=target,
                                options={"chunk_rows": CHUNK_ROWS, "follow": True})
    wait_for(store, job_id, ["following"], timeout=120, workers=workers)
    return job_id


def test_ddl_on_a_followed_table_stops_the_follow(chain, settings_env, store, send,
                                                  worker_proc, wait_for, wait_until):
    # Given a follow that applied a change made before the DDL
    workers = [worker_proc()]
    job_id = _following(chain, settings_env, store, send, wait_for, workers, "ddl")
    chain.execute("INSERT INTO ledger (account_id, amount, w) VALUES (1, 1, 7)")
    wait_applied(store, job_id, 1, wait_until, workers)

    # When a column is added and a row uses it
    chain.execute("ALTER TABLE ledger ADD COLUMN extra text")
    chain.execute("INSERT INTO ledger (account_id, amount, w, extra) VALUES (1, 1, 8, 'x')")

    # Then the follow stops naming the table, with the file as it was before the DDL
    file = stopped_on_ddl(settings_env, store, job_id, "ledger", wait_for, workers)
    assert file.execute("SELECT w FROM ledger WHERE w > 0").fetchall() == [(7,)]
    wait_until(lambda: not follow_leftovers(chain, job_id), 30, "no slot", workers=workers)


def test_drop_of_a_followed_table_stops_the_follow(chain, settings_env, store, send,
                                                   worker_proc, wait_for, wait_until):
    # Given a follow that applied a change
    workers = [worker_proc()]
    job_id = _following(chain, settings_env, store, send, wait_for, workers, "drop")
    chain.execute("INSERT INTO zz_audit (ledger_id, note, w) VALUES (1, 'before', 7)")
    wait_applied(store, job_id, 1, wait_until, workers)

    # When a followed table is dropped (pgoutput sends nothing for it) and nothing else
    # changes on the source
    chain.execute("DROP TABLE zz_audit")

    # Then the follow stops naming the table, having applied what came before
    file = stopped_on_ddl(settings_env, store, job_id, "zz_audit", wait_for, workers)
    assert file.execute("SELECT note FROM zz_audit WHERE w = 7").fetchall() == [("before",)]
    wait_until(lambda: not follow_leftovers(chain, job_id), 30, "no slot", workers=workers)


def test_big_transactions_truncate_and_unchanged_toast(chain, settings_env, store, send,
                                                       worker_proc, wait_for, wait_until,
                                                       monkeypatch):
    # Given batches much smaller than one source transaction, and a TOASTed column
    monkeypatch.setenv("LITESHIFT_FOLLOW_BATCH_CHANGES", "700")
    chain.execute("ALTER TABLE accounts ADD COLUMN bio text")
    chain.execute("UPDATE accounts SET bio = repeat(md5(id::text), 400) WHERE id <= 50")
    workers = [worker_proc()]
    job_id = control.submit_job(settings_env, store, send, source=chain.url, target="big",
                                options={"chunk_rows": CHUNK_ROWS, "follow": True})
    wait_for(store, job_id, ["following"], timeout=120, workers=workers)

    # When one transaction changes thousands of rows, an update leaves the TOASTed bio as
    # it was (pgoutput sends it as unchanged), and a table is truncated
    with chain.connect() as conn, conn.transaction():
        conn.execute("INSERT INTO accounts (name, w) SELECT 'big' || i, 2 "
                     "FROM generate_series(1, 3000) i")
        conn.execute("UPDATE ledger SET amount = -amount WHERE id <= 2500")
        conn.execute("UPDATE accounts SET name = 'renamed' WHERE id <= 40")
        conn.execute(f"INSERT INTO {PRICES} (price) SELECT CASE WHEN i <= 30 THEN "
                     f"{LOSSY_PRICE} ELSE 1.5 END FROM generate_series(1, 35) i")
    with chain.connect() as conn, conn.transaction():
        conn.execute(f"TRUNCATE zz_audit, {PRICES}")
        conn.execute("INSERT INTO zz_audit (ledger_id, note) VALUES (1, 'after truncate')")
        conn.execute(f"INSERT INTO {PRICES} (price) VALUES ({LOSSY_PRICE}), (2.5), "
                     f"({LOSSY_PRICE})")
    wait_applied(store, job_id, 3000 + 2500 + 40 + 35 + 1 + 1 + 3, wait_until, workers)

    # Then cutover publishes the source as it is now
    control.request_cutover(store, send, job_id, timeout_s=60)
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=workers)
    assert view["state"] == "done", view
    verify_against_source(store, send, job_id, wait_until, workers)
    # the truncated prices are counted no more: only the two lossy ones written after it
    report = json.loads((settings_env.data_dir / "big.report.json").read_text())
    assert lossy_values(report, PRICES) == {"price": 2}, report["tables"]
    batches = [e["changes"] for e in workers[0].events("follow_batch")]
    assert max(batches) <= 700, batches
    wait_until(lambda: not follow_leftovers(chain, job_id), 30, "no slot", workers=workers)
