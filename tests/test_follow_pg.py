"""Follow mode on PostgreSQL (worker/follow/): a writer inserts, updates and deletes rows of
three tables chained by foreign keys while the job copies them and then follows the source;
the writer stops; cutover publishes; every table of the file equals the source (the verify
step's checksums, source re-read). Also with the follower killed -9 while following and
while cutting over. No slot or publication of the job is left on the source afterwards.

The issue asks for 30 s of writing; these tests write for WRITE_S (about 10 s) to keep the
suite's time sane: the follow and cutover paths are the same.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest
from moments import CHUNK_ROWS, Writer, wait_commits
from test_snapshot_pg import make_chain

from worker.jobs import control

WRITE_S = 10.0
WRITERS = 3  # writer threads: a steady few hundred row changes per second together


def write_mixed(conn: psycopg.Connection) -> None:
    """One transaction: an account with its ledger line and audit row (INSERT), a ledger
    amount changed (UPDATE), an audit row removed (DELETE)."""
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
    return pg_db


def _follower(workers: list[Any]) -> Any:
    """The worker whose log shows the follow's batches last."""
    return max(workers, key=lambda w: (len(w.events("follow_batch")), w.name))


def _cutover(store: Any, send: Any, job_id: str, wait_for: Any, workers: list[Any],
             kill_during: bool = False) -> dict[str, Any]:
    follower = _follower(workers)
    control.request_cutover(store, send, job_id, timeout_s=120)
    if kill_during:
        time.sleep(0.05)
        follower.kill()
        workers.remove(follower)
        workers.append(follower_restart(workers))
    return wait_for(store, job_id, ["done", "failed"], timeout=120, workers=workers)


_start: list[Any] = []


def follower_restart(workers: list[Any]) -> Any:
    return _start[0]()


def _run(chain: Any, settings: Any, store: Any, send: Any, worker_proc: Any, wait_for: Any,
         wait_until: Any, *, kill_following: bool, kill_cutover: bool) -> dict[str, Any]:
    _start[:] = [worker_proc]
    workers = [worker_proc(), worker_proc()]
    writers = [Writer(chain.connect, write_mixed) for _ in range(WRITERS)]
    for writer in writers:
        writer.start()
    wait_commits(writers[0], 20)

    # When a follow job copies the tables and follows while the writer writes
    job_id = control.submit_job(settings, store, send, source=chain.url, target="live",
                                options={"chunk_rows": CHUNK_ROWS, "follow": True})
    view = wait_for(store, job_id, ["following", "failed"], timeout=180, workers=workers)
    assert view["state"] == "following", view
    assert not (settings.data_dir / "live.db").exists()  # nothing published yet
    started = time.monotonic()
    if kill_following:
        wait_until(lambda: _follower(workers).events("follow_batch"), 30, "a follow batch",
                   workers=workers)
        time.sleep(1.0)
        victim = _follower(workers)
        victim.kill()
        workers.remove(victim)
        workers.append(worker_proc())
    time.sleep(max(0.0, WRITE_S - (time.monotonic() - started)))
    follow = store.job(job_id)["follow"]
    seconds = time.monotonic() - started
    commits = sum(writer.stop() for writer in writers)
    assert commits > 100, commits

    # Then cutover publishes, and the file is the source row for row
    view = _cutover(store, send, job_id, wait_for, workers, kill_during=kill_cutover)
    assert view["state"] == "done", view
    downtime = view["cutover"]["downtime_s"]
    report = json.loads((settings.data_dir / "live.report.json").read_text())
    assert report["cutover"]["downtime_s"] == downtime
    control.request_verify(store, send, job_id, against_source=True)
    result = wait_until(lambda: (store.job(job_id) or {}).get("verification", {}).get("state")
                        not in (None, "running") and store.job(job_id)["verification"],
                        120, "verification", workers=workers)
    assert result["state"] == "ok", json.dumps(result, indent=1)
    rows = {t["name"]: t["rows"] for t in result["tables"]}
    for table, count in rows.items():
        assert chain.execute(f'SELECT count(*) FROM "{table}"')[0][0] == count
    # and the follow left nothing on the source
    wait_until(lambda: not follow_leftovers(chain, job_id), 30, "the follow's slot to go",
               workers=workers)
    print(f"\nfollow: {follow}; cutover downtime {downtime} s; writers {commits} commits, "
          f"{commits / (time.monotonic() - started):.0f} tx/s over the whole job, "
          f"following for {seconds:.1f} s")
    return {"downtime": downtime, "follow": follow}


def test_follow_then_cutover_equals_the_source(chain, settings_env, store, send, worker_proc,
                                               wait_for, wait_until):
    figures = _run(chain, settings_env, store, send, worker_proc, wait_for, wait_until,
                   kill_following=False, kill_cutover=False)
    assert figures["downtime"] < 30  # generous: figures go to RESULTS.md, not asserts


def test_follower_killed_while_following_and_cutting_over(chain, settings_env, store, send,
                                                          worker_proc, wait_for, wait_until):
    _run(chain, settings_env, store, send, worker_proc, wait_for, wait_until,
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


def test_ddl_on_a_followed_table_stops_the_follow(chain, settings_env, store, send,
                                                  worker_proc, wait_for, wait_until):
    workers = [worker_proc()]
    job_id = control.submit_job(settings_env, store, send, source=chain.url, target="ddl",
                                options={"chunk_rows": CHUNK_ROWS, "follow": True})
    wait_for(store, job_id, ["following"], timeout=120, workers=workers)
    chain.execute("ALTER TABLE ledger ADD COLUMN extra text")
    chain.execute("INSERT INTO ledger (account_id, amount, extra) VALUES (1, 1, 'x')")
    view = wait_for(store, job_id, ["failed"], timeout=60, workers=workers)
    assert "followed table 'ledger'" in view["error"], view
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
    chain.execute("TRUNCATE zz_audit")
    chain.execute("INSERT INTO zz_audit (ledger_id, note) VALUES (1, 'after truncate')")
    wait_until(lambda: (store.job(job_id).get("follow") or {}).get("changes_applied", 0)
               >= 5542, 60, "the changes to be applied", workers=workers)

    # Then cutover publishes the source as it is now
    control.request_cutover(store, send, job_id, timeout_s=60)
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=workers)
    assert view["state"] == "done", view
    control.request_verify(store, send, job_id, against_source=True)
    result = wait_until(lambda: (store.job(job_id) or {}).get("verification", {}).get("state")
                        not in (None, "running") and store.job(job_id)["verification"],
                        120, "verification", workers=workers)
    assert result["state"] == "ok", json.dumps(result, indent=1)
    batches = [e["changes"] for e in workers[0].events("follow_batch")]
    assert max(batches) <= 700, batches
    wait_until(lambda: not follow_leftovers(chain, job_id), 30, "no slot", workers=workers)
