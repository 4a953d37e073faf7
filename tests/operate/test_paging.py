"""A job of many tables, seen a page at a time: GET /jobs/{id} answers the job's summary over
every table and one page of them, however many tables the job has; the pages cover every
table once, a state filter finds the failed ones, a bad parameter is a 422 that changes
nothing; `liteshift status` shows the tables that need a look, `--all` every one, and
`watch` off a terminal fetches only what changed."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from faults.support import LITESHIFT, REPO

from worker.state.store import StateStore

TABLES = 300
UNREADABLE = [f"t{i:03d}" for i in (3, 50, 51, 149, 200, 257, 299)]  # fail: no SELECT grant
ANSWER_MAX = 64 * 1024  # bytes of one GET /jobs/{id}: one page of tables, not every table


@pytest.fixture
def many_tables(pg_db) -> Iterator[str]:
    """TABLES tiny tables, t000…t299 of 2 rows each, read through a role that may not read
    the UNREADABLE ones; returns the role's source URL."""
    role = f"ls_pager_{uuid.uuid4().hex[:8]}"
    pg_db.execute(f"""DO $$ BEGIN
        FOR i IN 0..{TABLES - 1} LOOP
          EXECUTE format('CREATE TABLE t%s (id bigint PRIMARY KEY, s text)', lpad(i::text, 3, '0'));
          EXECUTE format('INSERT INTO t%s VALUES (1, ''a''), (2, ''b'')', lpad(i::text, 3, '0'));
        END LOOP; END $$;
        CREATE ROLE {role} LOGIN;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};
        REVOKE ALL ON {", ".join(UNREADABLE)} FROM {role};""")
    yield pg_db.url.replace("postgres@", f"{role}@", 1)
    pg_db.execute(f"DROP OWNED BY {role}")
    pg_db.execute(f"DROP ROLE {role}")


def pages(http: Any, first: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page, following `next` from the first answer."""
    found, link = [first], first.get("next")
    while link:
        answer = http.get(link)
        assert answer.status_code == 200, answer.text
        found.append(answer.json())
        link = found[-1]["next"]
    return found


def cli(api_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LITESHIFT, *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "LITESHIFT_API_URL": api_url}, timeout=60)


def test_a_job_of_many_tables_is_seen_a_page_at_a_time(
        many_tables, settings_env, store: StateStore, worker_proc, api_process, wait_for):
    # Given a job of 300 tables, 7 of which fail, finished
    workers = [worker_proc(), worker_proc()]
    api = api_process()
    with api.client() as http:
        answer = http.post("/jobs", json={"source": many_tables, "target": "paged"})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
        wait_for(store, job_id, ["failed"], 240, workers=workers)
        names = store.job(job_id)["tables"]
        assert len(names) == TABLES
        unreadable = [name for name in names if name in UNREADABLE]  # in the plan's order
        assert len(unreadable) == 7

        # When the job is asked for with no parameters
        first = http.get(f"/jobs/{job_id}")

        # Then the answer is the summary over every table and the first page of 100
        assert first.status_code == 200, first.text
        assert len(first.content) < ANSWER_MAX, len(first.content)
        view = first.json()
        assert view["tables_total"] == TABLES
        assert view["table_counts"] == {"pending": 0, "copying": 0, "copied": 0,
                                        "verified": TABLES - 7, "failed": 7}
        assert view["progress"]["rows_done"] == 2 * (TABLES - 7)
        assert [t["name"] for t in view["tables"]] == names[:100]
        assert view["next"] and view["tables_matching"] == TABLES
        assert "7 table(s) failed" in view["error"]

        # And the pages, followed from `next`, cover every table once, in plan order
        listed = [t["name"] for page in pages(http, http.get(
            f"/jobs/{job_id}/tables", params={"limit": 37}).json()) for t in page["tables"]]
        assert listed == names

        # And a state filter finds the failed tables, with their errors, and nothing else
        failed = http.get(f"/jobs/{job_id}/tables", params={"state": "failed"}).json()
        assert [t["name"] for t in failed["tables"]] == unreadable
        assert failed["tables_matching"] == 7 and failed["next"] is None
        assert all(t["error"] for t in failed["tables"])
        both = pages(http, http.get(f"/jobs/{job_id}/tables",
                                    params={"state": "failed,verified", "limit": 1000}).json())
        assert len(both) == 1 and len(both[0]["tables"]) == TABLES
        small = pages(http, http.get(f"/jobs/{job_id}", params={"state": "failed",
                                                                "limit": 2}).json())
        assert [t["name"] for page in small for t in page["tables"]] == unreadable
        summary = http.get(f"/jobs/{job_id}", params={"limit": 0}).json()
        assert summary["tables"] == [] and summary["tables_total"] == TABLES
        assert summary["next"].startswith(f"/jobs/{job_id}/tables?cursor=0")

        # And bad parameters are 422s that say what is allowed, and change nothing
        before = store.job(job_id)
        for path, params, expected in [
            (f"/jobs/{job_id}", {"limit": 5000}, "limit: 5000 is outside 0 to 1000"),
            (f"/jobs/{job_id}/tables", {"limit": 0}, "limit: 0 is outside 1 to 1000"),
            (f"/jobs/{job_id}/tables", {"limit": "many"}, "limit: Input should be a valid "
             "integer"),
            (f"/jobs/{job_id}/tables", {"cursor": -1}, "cursor: -1 is not a position"),
            ("/jobs", {"cursor": 2**70}, "cursor: 1180591620717411303424 is not a position"),
            (f"/jobs/{job_id}/tables", {"state": "broken"}, "state: 'broken' is not a table "
             "state: use one or more of pending, copying, copied, verified, failed"),
            (f"/jobs/{job_id}/tables", {"since": -5}, "since: -5.0 is not a time"),
            (f"/jobs/{job_id}/report", {"limit": 1001}, "limit: 1001 is outside 1 to 1000"),
            ("/jobs", {"limit": 100_000}, "limit: 100000 is outside 1 to 1000"),
        ]:
            refused = http.get(path, params=params)
            assert refused.status_code == 422, (path, params, refused.text)
            assert expected in refused.json()["error"], refused.json()
        assert store.job(job_id) == before

        # And `liteshift status` shows the summary and the failed tables, `--all` all of them
        shown = cli(api.url, "status", job_id)
        assert shown.returncode == 0, shown.stderr
        assert f"tables: 300 (7 failed, {TABLES - 7} verified)" in shown.stdout
        assert [line.split()[0] for line in shown.stdout.splitlines()
                if line.startswith("t") and " failed " in line] == unreadable
        assert f"7 of 300 tables shown, those failed or copying: `liteshift status {job_id} " \
               "--all`" in shown.stdout
        every = cli(api.url, "status", job_id, "--all")
        table_lines = [line for line in every.stdout.splitlines() if line[:1] == "t"
                       and line.split()[0] in names]
        assert len(table_lines) == TABLES and table_lines[0].split()[0] == unreadable[0]
        as_json = json.loads(cli(api.url, "status", job_id, "--json").stdout)
        assert [t["name"] for t in as_json["tables"]] == names and as_json["next"] is None

        # And `watch` off a terminal says where the job ended and which tables failed
        watched = cli(api.url, "watch", job_id)
        assert watched.returncode == 1
        lines = [line.split(" ", 1)[1] for line in watched.stdout.splitlines()]
        assert lines[0].startswith(f"job {job_id} failed: 586/"), lines
        assert "293/300 tables" in lines[0], lines
        assert [line.split()[1] for line in lines[1:]] == unreadable, lines

        # And the job list is paged as well, each job with its count of tables, no names
        listed_jobs = http.get("/jobs", params={"limit": 1})
        assert listed_jobs.json()[0]["tables_total"] == TABLES
        assert "tables" not in listed_jobs.json()[0]
