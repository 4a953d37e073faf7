"""Workers die at random instants: nothing lost, nothing doubled, the job finishes by itself.

DESIGN 2.1-2.3: a chunk and its checkpoint commit in one SQLite transaction, so a kill -9 at any
instant loses only uncommitted work; a resumed copy starts after the last committed key; the
reaper re-queues a table whose lease expired; the file appears only when complete.
"""

from __future__ import annotations

import os
import random
import signal
import time

from faults.support import (
    assert_exactly_once,
    children,
    json_lines,
    make_narrow_tables,
    rows_done,
    start_worker,
    table_states,
)
from worker.jobs import control
from worker.state.manifest import read_manifest

# 4.5 million rows in four narrow tables, committed 4,000 rows at a time: 1,125 commits
SIZES = {"ka": 1_800_000, "kb": 1_350_000, "kc": 900_000, "kd": 450_000}
MAX_KILLS = 8


def test_repeated_sigkill_during_a_multi_table_job(pg_db, settings_env, store, send,
                                                   worker_proc, wait_for, publish_watch,
                                                   monkeypatch):
    # Given four tables, short leases so a dead worker's table is re-queued in seconds
    monkeypatch.setenv("LITESHIFT_LEASE_TTL_S", "2")
    make_narrow_tables(pg_db, SIZES)
    watch = publish_watch(settings_env.data_dir, "killed", SIZES)
    seed = int(os.environ.get("LITESHIFT_TEST_SEED") or time.time())
    rng = random.Random(seed)
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="killed",
                                options={"chunk_rows": 4000})

    # When the worker is killed with SIGKILL at random instants, a fresh one started each time
    kills: list[tuple[str, int]] = []
    while len(kills) < MAX_KILLS:
        time.sleep(rng.uniform(0.2, 1.2))  # a worker copies about 700,000 rows a second
        state = store.job_state(job_id)
        if state is not None and state.finished:
            break
        worker.kill()
        kills.append((state.value if state else "?", rows_done(store, job_id)))
        worker = worker_proc()
    view = wait_for(store, job_id, ["done", "failed"], timeout=180, workers=[worker])
    watch.stop()

    # Then the job finished by itself, after at least five kills in the middle of it
    print(f"seed={seed} kills (job state, rows done)={kills}")
    assert view["state"] == "done", view
    assert len(kills) >= 5, f"the job ended after only {len(kills)} kills (seed {seed})"
    assert sum(1 for state, _ in kills if state == "copying") >= 3, kills
    # every row exactly once, every checksum that of a clean read
    assert_exactly_once(settings_env, store, job_id, "killed", SIZES)
    assert {t["state"] for t in view["tables"]} == {"verified"}
    assert sum(t["rows_done"] for t in view["tables"]) == sum(SIZES.values())
    assert max(t["attempts"] for t in view["tables"]) >= 2  # work really was resumed
    # and the file was never visible before it was complete
    assert watch.problems == []
    # (the report is written beside it through a temporary file, after the publish)
    assert set(watch.seen) <= {"killed.db", "killed.report.json", "killed.report.json.tmp"}
    assert "killed.db" in watch.seen


PREFORK_SIZES = {"pa": 600_000, "pb": 200_000}


def test_killing_a_prefork_child_redelivers_its_task(pg_db, settings_env, store, send,
                                                     processes, tmp_path, wait_for,
                                                     wait_until, monkeypatch):
    # Given a prefork worker with one child, busy copying a table
    monkeypatch.setenv("LITESHIFT_LEASE_TTL_S", "2")
    make_narrow_tables(pg_db, PREFORK_SIZES)
    log = tmp_path / "prefork.log"
    main = start_worker(settings_env, log, pool="prefork", concurrency=1)
    processes.append(main)
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="prefork",
                                options={"chunk_rows": 4000})
    wait_until(lambda: rows_done(store, job_id) >= 100_000, 60, "the copy to be under way")
    (child,) = children(main.pid)

    # When the child is killed with SIGKILL in the middle of the copy
    os.kill(child, signal.SIGKILL)

    # Then the main process sees the child die and rejects the task, which is delivered
    # again (to the new child); the job finishes with every row exactly once
    view = wait_for(store, job_id, ["done", "failed"], timeout=120)
    text = log.read_text(errors="replace")
    assert view["state"] == "done", text[-3000:]
    assert "WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL)" in text
    assert wait_until(lambda: children(main.pid), 10, "a new pool child") != [child]
    starts = [e for e in json_lines(text) if e.get("table") == "pa"
              and e["event"] in ("table_copying", "table_skipped")]
    # the same task id starts a second time: the redelivery. It finds the dead child's lease
    # not yet expired and steps aside; the reaper queues the table again once it has expired.
    again = [e for e in starts[1:] if e["task_id"] == starts[0]["task_id"]]
    assert again, starts
    assert_exactly_once(settings_env, store, job_id, "prefork", PREFORK_SIZES)
    assert table_states(store, job_id)["pa"]["attempts"] >= 2



# Small tables: copied in groups, one task and one shared work file for several of them
GROUPED_SIZES = {f"g{i:02d}": 3_000 for i in range(24)}


def test_sigkill_during_a_job_of_small_tables_copied_in_groups(pg_db, settings_env, store,
                                                               send, worker_proc, wait_for,
                                                               wait_until, monkeypatch):
    # Given 24 small tables, which the plan puts in groups sharing work files, copied in
    # chunks of 500 rows
    monkeypatch.setenv("LITESHIFT_LEASE_TTL_S", "2")
    make_narrow_tables(pg_db, GROUPED_SIZES)
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="grouped",
                                options={"chunk_rows": 500})

    # When the worker is killed with SIGKILL twice in the middle of the copy, a fresh one
    # started each time
    kills = []
    for kill in (1, 2):
        wait_until(lambda kill=kill: rows_done(store, job_id) >= kill * 20_000
                   or store.job_state(job_id).value != "copying" and
                   rows_done(store, job_id) > 0, 120, "rows to be copied", interval=0.005,
                   workers=[worker])
        kills.append((store.job_state(job_id).value, rows_done(store, job_id)))
        worker.kill()
        worker = worker_proc()
    view = wait_for(store, job_id, ["done", "failed"], timeout=180, workers=[worker])

    # Then the job finished by itself with every row exactly once, the tables having shared
    # work files, and at least one kill came in the middle of the copy
    assert view["state"] == "done", view
    assert kills[0][0] == "copying", kills
    assert_exactly_once(settings_env, store, job_id, "grouped", GROUPED_SIZES)
    _, plans, _ = read_manifest(settings_env.job_dir(job_id))
    assert len({p.file for p in plans}) < len(plans) // 4
