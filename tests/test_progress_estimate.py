"""Progress needs a row total: a table PostgreSQL never analyzed (reltuples -1) gets the
planner's estimate, and a copy that outruns its estimate shows no ETA instead of 0. The ETA
follows the recent rate, not one that counts the reader's start."""

from __future__ import annotations

from dataclasses import replace

from worker.core.logs import get_logger
from worker.core.model import TablePlan
from worker.jobs.control import submit_job
from worker.jobs.copying import _mirror, copy_table
from worker.jobs.plan import plan_job
from worker.sources.postgres import source as pg_source
from worker.sources.postgres.translate import translate
from worker.sources.url import parse_source_url
from worker.sqlite.chunks import RATE_WINDOW_S, Progress, RecentRate

ROWS = 20_000


def estimates(url: str) -> dict[str, int]:
    source = parse_source_url(url)
    with pg_source.connect(source) as conn:
        names = pg_source.list_tables(conn, "public")
        schema = pg_source.reflect(source, conn, "public", names)
    return {t.name: t.rows_estimated for t in schema.tables}


def test_a_table_never_analyzed_gets_the_planners_estimate(pg_db):
    # autovacuum off: nothing analyzes the tables behind the test's back
    for name in ("never", "empty", "analyzed"):
        pg_db.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, s text) "
                      "WITH (autovacuum_enabled = false)")
    for name in ("never", "analyzed"):
        pg_db.execute(f"INSERT INTO {name} SELECT g, repeat('x', g % 40) "
                      f"FROM generate_series(1, {ROWS}) g")
    pg_db.execute("ANALYZE analyzed")
    tuples = dict(pg_db.execute("SELECT relname, reltuples::bigint FROM pg_class "
                                "WHERE relname IN ('never', 'empty', 'analyzed')"))
    assert tuples == {"never": -1, "empty": -1, "analyzed": ROWS}

    found = estimates(pg_db.url)

    assert 0.5 * ROWS <= found["never"] <= 1.5 * ROWS, found
    assert found["empty"] == 0  # not the planner's guess of ten pages' worth
    assert found["analyzed"] == ROWS


def planned_table(pg_db, store, rows_estimated: int) -> TablePlan:
    """Table t's plan, estimated at `rows_estimated` rows, in job j1."""
    pg_db.execute("CREATE TABLE t (id bigint PRIMARY KEY)")
    source = parse_source_url(pg_db.url)
    with pg_source.connect(source) as conn:
        plan = translate(pg_source.reflect(source, conn, "public", ["t"])).tables[0]
    store.create_job("j1", {"target": "t", "tables": ["t"]})
    return replace(plan, rows_estimated=rows_estimated)


def mirrored(store, plan: TablePlan, rows_done: int, *, elapsed_s: float = 1.0,
             pace: float | None = None) -> dict:
    """Table t as Redis shows it after the mirror of a commit at `rows_done` rows, all
    copied by this attempt in `elapsed_s`, the recent pace being `pace`."""
    _mirror(store, "j1", plan, Progress(rows_done=rows_done, chunk_rows=100, chunk_bytes=1,
                                        last_key=[rows_done], checksum=0, elapsed_s=elapsed_s,
                                        rows_copied_now=rows_done, recent_rows_per_s=pace),
            get_logger(job_id="j1", table="t"))
    return store.table("j1", "t") or {}


def test_progress_past_the_estimate_has_no_eta_instead_of_zero(pg_db, store):
    plan = planned_table(pg_db, store, 1000)

    def at(rows_done: int) -> dict:  # at a pace of rows_done rows/s
        return mirrored(store, plan, rows_done, pace=float(rows_done))

    assert at(500)["eta_s"] == 1.0  # 500 rows/s, 500 left
    assert at(990)["eta_s"] == 0.1  # 10 rows left at 990 rows/s: 0.01 s, not 0
    assert at(1000)["eta_s"] == 0
    past = at(1500)
    assert past["eta_s"] is None
    assert past["rows_estimated"] == 1500


def test_a_verified_table_shows_its_counted_rows_not_the_estimate(pg_db, settings_env, store):
    # Given a never-analyzed table the planner guesses at, copied by the plain functions
    # behind the plan and copy tasks (the queue is not what this is about)
    pg_db.execute("CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL) "
                  "WITH (autovacuum_enabled = false)")
    pg_db.execute("INSERT INTO accounts SELECT g, 'n' || g FROM generate_series(1, 1000) g")
    sent: list = []
    job_id = submit_job(settings_env, store, lambda *task: sent.append(task),
                        source=pg_db.url, target="accounts")
    plan_job(settings_env, store, lambda *task: sent.append(task), job_id)
    estimated = store.table(job_id, "accounts")["rows_estimated"]
    assert estimated not in (0, 1000)  # the planner's guess, neither nothing nor exact

    # When the table is copied, its total is what was counted
    copy_table(settings_env, store, lambda *task: sent.append(task), job_id, "accounts")
    table = store.table(job_id, "accounts")
    assert (table["state"], table["rows_done"], table["rows_estimated"]) == (
        "verified", 1000, 1000)


def test_the_eta_rate_leaves_out_the_start_and_follows_the_last_seconds():
    recent = RecentRate()
    # The first commit came after 1 s of connecting: no recent rate yet, then the rate since.
    assert recent.add(1.0, 1_000) is None
    assert recent.add(1.5, 51_000) == 100_000  # not 51,000 rows / 1.5 s
    assert recent.add(2.0, 101_000) == 100_000
    # The rows get wider: after a window at the new pace, only the new pace counts.
    rows, at = 101_000, 2.0
    while at < 2.0 + 2 * RATE_WINDOW_S:
        at, rows = at + 0.5, rows + 5_000
        rate = recent.add(at, rows)
    assert rate is not None and 10_000 <= rate <= 10_500


def test_the_mirror_takes_its_eta_from_the_recent_rate(pg_db, store):
    plan = planned_table(pg_db, store, 10_000)
    table = mirrored(store, plan, 2_000, elapsed_s=2.0, pace=4_000.0)
    assert table["eta_s"] == 2.0  # 8,000 rows left at 4,000 rows/s, not at 1,000
    assert table["rows_per_s"] == 1_000  # the attempt's average, as before
    # The first commit has no recent pace yet: no ETA rather than one from the start-up.
    assert mirrored(store, plan, 1_000)["eta_s"] is None
