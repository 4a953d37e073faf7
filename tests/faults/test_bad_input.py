"""Bad requests through the real API (`liteshift api` as a process, the real source probe, real
PostgreSQL and Redis): each answered with a 4xx whose message says what is wrong, nothing
queued, nothing written. Then the API fuzzed from its own OpenAPI spec: no 5xx, no hang."""

from __future__ import annotations

import itertools
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from api import app as api_app
from api.app import create_app
from faults.support import queue_length, tree
from worker.jobs import control
from worker.state.store import JobState, TableState

RIGHT, WRONG = "Right-Pass-42", "Wrong-Pass-99"


@pytest.fixture
def scram_source(scram_postgres):
    """A database on the password-checking cluster, with a role that has a password."""
    scram_postgres.role("ls_bad", RIGHT)
    name = scram_postgres.database(owner="ls_bad")
    scram_postgres.execute("CREATE TABLE users (id int PRIMARY KEY)", database=name)
    yield scram_postgres, name
    scram_postgres.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def catalogue(pg_url: str, scram, scram_db: str) -> list[tuple[str, Any, int, str]]:
    """(what, body, status, words the message must hold). A body given as bytes is sent as
    is (with Content-Type: application/json)."""
    ok = {"source": pg_url, "target": "good"}
    wrong_password = scram.url("ls_bad", WRONG, scram_db)
    return [
        ("malformed JSON", b'{"source": "x", "target": ', 422, "request body is not valid JSON"),
        ("not an object", [1, 2], 422, "request body must be a JSON object"),
        ("unknown field", {**ok, "colour": "red"}, 422, "colour: unknown field"),
        ("unknown option", {**ok, "options": {"chunkrows": 5}}, 422,
         "options.chunkrows: unknown field"),
        ("mysql URL without database", {**ok, "source": "mysql://u:p@127.0.0.1"}, 422,
         "names no database"),
        ("ftp scheme", {**ok, "source": "ftp://u:p@127.0.0.1/db"}, 422,
         "unsupported source URL scheme 'ftp'"),
        ("no database in URL", {**ok, "source": "postgresql://postgres@127.0.0.1:5432"}, 422,
         "names no database"),
        ("closed port", {**ok, "source": "postgresql://u:pw@127.0.0.1:1/db"}, 422,
         "cannot connect to 127.0.0.1:1"),
        ("unknown host", {**ok, "source": "postgresql://u:pw@no-such-host.invalid/db"}, 422,
         "unknown host 'no-such-host.invalid'"),
        ("wrong password", {**ok, "source": wrong_password}, 422,
         "wrong user name or password"),
        ("missing database",
         {**ok, "source": "postgresql://postgres@127.0.0.1:5432/lstest_no_such_db"}, 422,
         "the database does not exist"),
        ("missing schema", {**ok, "schema": "nope"}, 422, "schema 'nope' does not exist"),
        ("unknown included table", {**ok, "tables": ["users", "nope"]}, 422,
         "unknown table(s) 'nope'"),
        ("unknown excluded table", {**ok, "exclude": ["ghost"]}, 422,
         "unknown table(s) 'ghost'"),
        ("target with /", {**ok, "target": "a/b"}, 422, "target name 'a/b' is not allowed"),
        ("target ..", {**ok, "target": ".."}, 422, "target name '..' is not allowed"),
        ("target ../escape", {**ok, "target": "../x"}, 422, "is not allowed"),
        ("target with NUL", {**ok, "target": "a\x00b"}, 422, "is not allowed"),
        ("target too long", {**ok, "target": "t" * 65}, 422, "use 1 to 64 letters"),
        ("target empty", {**ok, "target": ""}, 422, "is not allowed"),
        ("negative chunk_rows", {**ok, "options": {"chunk_rows": -1}}, 422,
         "options.chunk_rows: Input should be greater than or equal to 1"),
        ("absurd chunk_rows", {**ok, "options": {"chunk_rows": 10**12}}, 422,
         "options.chunk_rows: Input should be less than or equal to 1000000"),
        ("tiny chunk_bytes", {**ok, "options": {"chunk_bytes": 1}}, 422,
         "options.chunk_bytes: Input should be greater than or equal to 65536"),
        ("unknown profile", {**ok, "options": {"profile": "cobol"}}, 422,
         "unknown profile 'cobol'"),
        ("huge body", {**ok, "padding": "x" * (2 * 1024 * 1024)}, 413,
         "request body is larger than 1024 KiB"),
        ("over-long source", {**ok, "source": "postgresql://" + "h" * 5000}, 422,
         "source: String should have at most 4096 characters"),
        ("unknown named source", {**ok, "source": "nowhere"}, 422,
         "no source named 'nowhere': set LITESHIFT_SOURCE_NOWHERE"),
    ]


def test_bad_requests_are_refused_with_a_reason_and_leave_no_trace(
        pg_db, settings_env, scram_source, api_process, store):
    # Given the real API, a source with one table, and a failed job with one good table
    pg_db.execute("CREATE TABLE users (id int PRIMARY KEY)")
    scram, scram_db = scram_source
    store.create_job("failedjob1", {"target": "old", "source": "x", "tables": ["good", "bad"]})
    store.set_job_state("failedjob1", JobState.FAILED, error="1 table(s) failed: bad")
    store.update_table("failedjob1", "good", name="good", state=TableState.VERIFIED.value)
    store.update_table("failedjob1", "bad", name="bad", state=TableState.FAILED.value)
    api = api_process()
    client = redis.Redis.from_url(settings_env.redis_url)
    queued, jobs, files = (queue_length(client, settings_env.queue), store.job_ids(),
                           tree(settings_env.data_dir))

    # When each bad request is sent
    problems = []
    with api.client() as http:
        for what, body, status, words in catalogue(pg_db.url, scram, scram_db):
            if isinstance(body, bytes):
                response = http.post("/jobs", content=body,
                                     headers={"Content-Type": "application/json"})
            else:
                response = http.post("/jobs", json=body)
            problems += check(what, response, status, words)
        for what, path, body, status, words in [
            ("retry an unknown job", "/jobs/nosuchjob/retry", None, 404, "no job 'nosuchjob'"),
            ("retry a table that did not fail", "/jobs/failedjob1/retry", {"tables": ["good"]},
             409, "table(s) 'good' did not fail; only failed tables can be retried"),
            ("retry an unknown table", "/jobs/failedjob1/retry", {"tables": ["nope"]}, 409,
             "has no table(s) 'nope'"),
            ("cancel an unknown job", "/jobs/nosuchjob/cancel", None, 404, "no job"),
            ("resume an unknown job", "/jobs/nosuchjob/resume", None, 404,
             "no job 'nosuchjob' in Redis or on the data volume"),
            ("verify a job that is not done", "/jobs/failedjob1/verify", None, 409,
             "only a published file can be verified"),
            ("a job id with odd characters", "/jobs/a.b/retry", None, 422, "job_id"),
        ]:
            problems += check(what, http.post(path, json=body), status, words)
        for what, path, status, words in [
            ("report of a failed job", "/jobs/failedjob1/report", 404, "is failed"),
            ("download of a failed job", "/jobs/failedjob1/download", 404, "is failed"),
            ("status of an unknown job", "/jobs/nosuchjob", 404, "`liteshift jobs` lists"),
            ("absurd list limit", "/jobs?limit=100000", 422, "limit"),
        ]:
            problems += check(what, http.get(path), status, words)

    # Then every one was refused as expected, none with the password in it
    assert problems == []
    # and nothing was queued, no job recorded, nothing written to the volume
    assert queue_length(client, settings_env.queue) == queued == 0
    assert store.job_ids() == jobs == ["failedjob1"]
    assert tree(settings_env.data_dir) == files
    assert WRONG not in api.log_text()


def check(what: str, response: Any, status: int, words: str) -> list[str]:
    try:
        message = response.json().get("error", "")
    except (ValueError, AttributeError):
        message = response.text
    problems = []
    if response.status_code != status:
        problems.append(f"{what}: {response.status_code} (wanted {status}): {message}")
    elif words not in message:
        problems.append(f"{what}: message {message!r} lacks {words!r}")
    if WRONG in response.text or RIGHT in response.text:
        problems.append(f"{what}: the password is in the answer: {response.text}")
    return problems


# -- fuzzing -----------------------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))


async def fake_probe(settings: Any, url: str, schema: str) -> list[str]:
    return ["users", "posts"]


@pytest.fixture
def api_schema(settings_env, monkeypatch):
    """The app, with a task sender that only records and a probe that answers at once (the
    host check is off too: random host names would cost DNS look-ups). Nothing is queued."""
    monkeypatch.setattr(api_app, "check_reachable", lambda *args, **kwargs: None)
    app = create_app(settings_env, send=Recorder(), probe=fake_probe)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_fuzz_the_api_from_its_openapi_spec(api_schema):
    # Every operation in the spec gets up to 30 generated requests, valid and not: none may
    # answer 5xx (an unhandled error) or take more than 5 s (a hang). (schemathesis'
    # from_fixture does not run under pytest 9, so the strategies are driven here.)
    seen: dict[str, set[int]] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(max_examples=40, deadline=5000, database=None,
                             suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            response = case.call_and_validate(checks=[not_a_server_error])
            seen.setdefault(case.operation.label, set()).add(response.status_code)

        try:
            fuzz()
        except Unsatisfiable:  # nothing to break in an operation without parameters
            assert mode == GenerationMode.NEGATIVE
    assert set(seen) == {op.label for op in operations}
    assert all(code < 500 for codes in seen.values() for code in codes), seen
    print(seen)


# -- names SQLite cannot hold, from the source -------------------------------------------

def test_source_names_sqlite_cannot_hold_are_refused_and_leave_nothing(
        pg_db, settings_env, api_process, store, send, worker_proc, wait_for):
    # Given a source whose tables SQLite cannot hold apart (or at all)
    for statement in ('CREATE TABLE users (id int PRIMARY KEY, name text)',
                      'CREATE TABLE "Users" (id int PRIMARY KEY)',
                      'CREATE TABLE sqlite_stat9 (id int PRIMARY KEY)'):
        pg_db.execute(statement)
    api = api_process()
    files = tree(settings_env.data_dir)

    # When a job for all its tables is submitted through the API
    with api.client() as http:
        answer = http.post("/jobs", json={"source": pg_db.url, "target": "names"})

        # Then it is refused with the reason, and nothing is left: no job, no claim, no file
        assert answer.status_code == 422, answer.text
        assert "SQLite reserves names beginning with sqlite_" in answer.json()["error"]
        assert store.job_ids() == [] and tree(settings_env.data_dir) == files
        assert store.redis.get(store.keys.target("names")) is None

        picked = http.post("/jobs", json={"source": pg_db.url, "target": "names",
                                          "tables": ["users"],
                                          "options": {"column_types": {"users.nope": "text"}}})
        assert picked.status_code == 202, picked.text  # the column is checked when planned

    # And when the names reach a plan (submitted without a probe), the job fails saying
    # why, and frees its target
    worker = worker_proc()
    clash = control.submit_job(settings_env, store, send, source=pg_db.url, target="clash",
                               exclude=["sqlite_stat9"])
    for job_id, words in ((clash, "tables 'Users' and 'users' differ only in case"),
                          (picked.json()["job_id"], "column_types names 'users.nope', but "
                                                    "the tables this job copies have no such")):
        view = wait_for(store, job_id, ["failed", "done"], 60, workers=[worker])
        assert view["state"] == "failed" and words in view["error"], view["error"]
        assert "liteshift bug" not in view["error"]
        assert store.redis.get(store.keys.target(view["target"])) is None
        assert not (settings_env.job_dir(job_id) / "tables").exists()


def test_tables_with_a_rowid_column_copy_or_are_refused_clearly(
        pg_db, settings_env, store, send, worker_proc, wait_for):
    # Given tables with a column named rowid, keyless and keyed, and one whose columns take
    # every name of SQLite's rowid
    pg_db.execute("CREATE TABLE loose (rowid int, v text)")
    pg_db.execute("INSERT INTO loose SELECT 100 - i, 'v' || i FROM generate_series(1, 50) i")
    pg_db.execute("CREATE TABLE keyed (id int PRIMARY KEY, rowid int)")
    pg_db.execute("INSERT INTO keyed SELECT i, 7 FROM generate_series(1, 50) i")
    pg_db.execute('CREATE TABLE hidden (id int PRIMARY KEY, rowid int, _rowid_ int, oid int)')
    pg_db.execute("INSERT INTO hidden SELECT i, 1, 2, 3 FROM generate_series(1, 50) i")
    pg_db.execute('CREATE TABLE twins (id int PRIMARY KEY, "Name" text, name text)')
    worker = worker_proc()

    # When they are copied
    good = control.submit_job(settings_env, store, send, source=pg_db.url, target="rowids",
                              tables=["loose", "keyed"], options={"chunk_rows": 10})
    view = wait_for(store, good, ["done", "failed"], 90, workers=[worker])

    # Then the first two are copied whole
    assert view["state"] == "done", view
    db = sqlite3.connect(settings_env.data_dir / "rowids.db")
    assert db.execute("SELECT count(*), sum(rowid), count(DISTINCT v) FROM loose").fetchone() \
        == (50, sum(100 - i for i in range(1, 51)), 50)
    assert db.execute("SELECT count(*), sum(rowid) FROM keyed").fetchone() == (50, 350)
    db.close()
    # and a table SQLite cannot hold (no rowid name left, or two columns one to SQLite)
    # fails its plan saying why
    for table, words in (("hidden", "uses every name SQLite gives the rowid"),
                         ("twins", "columns 'Name' and 'name' differ only in case")):
        bad = control.submit_job(settings_env, store, send, source=pg_db.url,
                                 target=f"t_{table}", tables=[table],
                                 options={"chunk_rows": 10})
        failed = wait_for(store, bad, ["done", "failed"], 60, workers=[worker])
        assert failed["state"] == "failed" and words in failed["error"], failed["error"]


def test_source_checks_are_capped_and_the_api_stays_responsive(settings_env, api_process):
    # Given the API allowing two source checks at once, and a port that accepts connections
    # and never answers (a probe there waits for its connect timeout)
    api = api_process({"LITESHIFT_PROBE_CONCURRENCY": "2", "LITESHIFT_CONNECT_TIMEOUT_S": "4"})
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    body = {"source": f"postgresql://u:pw@127.0.0.1:{port}/db", "target": "silent"}

    # When eight submits to it arrive at once
    def submit(_: int) -> Any:
        with api.client() as http:
            return http.post("/jobs", json=body)

    try:
        with ThreadPoolExecutor(8) as pool:
            pending = [pool.submit(submit, i) for i in range(8)]
            time.sleep(1)
            with api.client() as http:  # meanwhile the API answers its health check
                health = http.get("/healthz", timeout=5)
            answers = [f.result() for f in pending]
    finally:
        silent.close()

    # Then those past the cap are refused at once with Retry-After, the others time out
    assert health.status_code == 200
    refused = [a for a in answers if a.status_code == 503]
    assert 1 <= len(refused) <= 6, [a.text for a in answers]
    assert all(a.headers.get("Retry-After") == "4" for a in refused)
    assert "LITESHIFT_PROBE_CONCURRENCY" in refused[0].json()["error"]
    assert all(a.status_code in (422, 503) for a in answers), [a.text for a in answers]
