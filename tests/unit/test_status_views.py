"""What `liteshift status` and `watch` show from the API's paged job view: the summary over
every table, the step a finalize is at, a follow's lag, and the tables that need a look."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from api.cli import render, watch


def view(**fields: Any) -> dict[str, Any]:
    """A GET /jobs/{id} answer of a job of 2,000 tables."""
    return {"id": "j1", "state": "copying", "target": "big", "source": "postgresql://h/db",
            "tables_total": 2000, "table_counts": {"pending": 790, "copying": 2, "copied": 0,
                                                   "verified": 1203, "failed": 5},
            "progress": {"rows_done": 1234, "rows_total": 9876, "rows_per_s": 3200.0,
                         "eta_s": 2.7},
            "tables": [], "next": "/jobs/j1/tables?cursor=100&limit=100", **fields}


def table(name: str, state: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "state": state, "rows_done": 1, "rows_estimated": 2, **fields}


def test_status_sums_every_table_and_lists_failed_then_copying_first():
    shown = render.status(view(tables=[table("a", "copying"), table("b", "failed", error="x"),
                                       table("c", "copying")]))
    assert ("tables: 2,000 (5 failed, 2 copying, 790 pending, 1,203 verified); rows "
            "1,234/9,876 12.5%, 3.2k rows/s, ETA 3s") in shown
    assert [line.split()[0] for line in shown.splitlines()[-5:-2]] == ["b", "a", "c"]
    assert shown.endswith("3 of 2,000 tables shown, those failed or copying: "
                          "`liteshift status j1 --all` lists every table")


def test_status_shows_the_finalize_step_under_way():
    shown = render.status(view(state="finalizing", finalize={
        "step": "indexing", "done": 3, "total": 10, "item": "orders_by_day", "steps": []}))
    assert "finalize: building indexes 3/10 (orders_by_day)" in shown


def test_status_and_watch_show_a_follows_lag():
    job = view(state="following", follow={"lag_bytes": 4096, "lag_s": 1.5,
                                          "changes_per_s": 120, "changes_applied": 3400})
    assert "following: lag 4,096 bytes, 1.5 s behind; 120 changes/s; 3,400 applied" in \
        render.status(job)
    assert watch.job_line(job).endswith("; following: 2s behind, 3,400 changes applied")
    screen = io.StringIO()
    Console(file=screen, width=160).print(watch.live_view(job))
    assert "following: 2s behind" in screen.getvalue()


def test_watch_of_a_big_job_draws_the_tables_under_way_and_counts_the_rest():
    screen = io.StringIO()
    Console(file=screen, width=160).print(watch.live_view(view(
        tables=[table("a", "copying"), table("b", "failed", error="boom")])))
    out = screen.getvalue()
    assert "1,234/9,876 rows 12.5%, 1,203/2,000 tables" in out
    assert "2 of 2,000 tables shown, those copying or failed" in out


class FakeApi:
    """Answers like GET /jobs/{id}, remembering what each call asked for."""

    def __init__(self, answers: list[dict[str, Any]]):
        self.answers, self.asked = answers, []

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        self.asked.append((path, params))
        return self.answers.pop(0)


def test_a_live_feed_asks_for_the_tables_under_way_once_the_job_is_big():
    api = FakeApi([view(), view(), view()])
    feed = watch.JobFeed(api.get, "j1")
    feed.live(), feed.live()
    assert api.asked == [("/jobs/j1", {"limit": watch.LIVE_ROWS}),
                         ("/jobs/j1", {"limit": watch.LIVE_ROWS,
                                       "state": ["copying", "failed"]}),
                         ("/jobs/j1", {"limit": watch.LIVE_ROWS,
                                       "state": ["copying", "failed"]})]


def test_a_log_feed_asks_for_what_changed_since_its_last_answer():
    api = FakeApi([view(next=None, as_of=100.0, tables=[table("a", "copying")]),
                   view(next=None, as_of=101.0, tables=[table("a", "verified")])])
    feed = watch.JobFeed(api.get, "j1")
    known: dict[str, str] = {}
    first = watch.changes(None, feed.changed(), known)
    second = watch.changes(view(), feed.changed(), known)
    assert api.asked[0] == ("/jobs/j1", {"limit": watch.LIVE_ROWS})
    assert api.asked[1] == ("/jobs/j1", {"limit": 1000, "since": 100.0 - watch.CLOCK_SLACK_S})
    assert first[1:] == ["table a copying: 1/2 rows"]
    assert second == ["table a verified: 1/2 rows"]


def test_status_of_a_job_read_from_the_volume_says_so():
    note = "Redis no longer holds this job: this is its record on the data volume, read-only"
    shown = render.status(view(state="done", from_volume=True, note=note))
    assert shown.splitlines()[2] == f"note: {note}"
    assert "note:" not in render.status(view(state="done"))
