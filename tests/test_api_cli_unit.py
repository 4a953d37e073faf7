"""The API and the CLI against a real Redis (db 9), with a fake task sender and a fake probe.

No Celery worker and no PostgreSQL here: `send` records the tasks it was asked to queue, and
the probe runs a tiny script in place of `python -m worker.probe`. Each test owns one key
prefix in db 9 and deletes only that: other processes use the same db.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import commands as cli
from api.source_check import run_probe
from worker.core.config import Settings, get_settings
from worker.jobs.control import PLAN_TASK
from worker.state.store import JobState, StateStore, TableState

REDIS_URL = "redis://127.0.0.1:6379/9"
PASSWORD = "s3cretpw"
# Redis's port: the reachability check finds it open, and the fake probe answers for the
# database, so no database is needed.
SOURCE = f"postgresql://app:{PASSWORD}@127.0.0.1:6379/appdb"

FAKE_PROBE = textwrap.dedent("""
    import json, sys, time
    request = json.loads(sys.stdin.read())
    if any("postgresql" in arg for arg in sys.argv):
        print(json.dumps({"ok": False, "error": "the URL was passed on argv", "kind": "X"}))
    elif request["schema"] == "slow":
        time.sleep(30)
    elif request["schema"] == "crash":
        sys.exit("Traceback: boom " + request["source"])
    elif request["schema"] == "locked":
        print(json.dumps({"ok": False, "kind": "SourceRejected", "error":
                          "password authentication failed for user app (password "
                          + request["source"].split(":")[2].split("@")[0] + ")"}))
    else:
        print("some library chatter")
        print(json.dumps({"ok": True, "tables": ["users", "posts"]}))
""")


class RecordingSend:
    """Stands in for api.queue.TaskQueue.send."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))


@dataclass
class RedisSpace:
    """One test's corner of the shared Redis db: the keys under its own prefix."""

    client: redis.Redis
    prefix: str

    def keys(self) -> list[str]:
        return sorted(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))

    def clear(self) -> None:
        if keys := self.keys():
            self.client.unlink(*keys)


@pytest.fixture
def db() -> Any:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379: start it with "
                    "`redis-server --daemonize yes`")
    space = RedisSpace(client, f"lstest-api-{uuid.uuid4().hex[:10]}")
    space.clear()
    yield space
    space.clear()
    client.close()


@pytest.fixture
def settings(tmp_path: Path, db: RedisSpace) -> Settings:
    return Settings(redis_url=REDIS_URL, data_dir=tmp_path, redis_prefix=db.prefix,
                    api_token=None, probe_timeout_s=3, api_url="http://testserver")


@pytest.fixture
def sent() -> RecordingSend:
    return RecordingSend()


@pytest.fixture
def probe_script(tmp_path: Path) -> Path:
    path = tmp_path / "fake_probe.py"
    path.write_text(FAKE_PROBE)
    return path


def make_client(settings: Settings, sent: RecordingSend, probe_script: Path) -> TestClient:
    probe = functools.partial(run_probe, command=[sys.executable, str(probe_script)])
    return TestClient(create_app(settings, send=sent, probe=probe))


@pytest.fixture
def client(settings: Settings, sent: RecordingSend, probe_script: Path) -> TestClient:
    return make_client(settings, sent, probe_script)


def job_body(**changes: Any) -> dict[str, Any]:
    return {"source": SOURCE, "target": "app", **changes}


def submit(client: TestClient, **changes: Any) -> str:
    response = client.post("/jobs", json=job_body(**changes))
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


# -- POST /jobs --------------------------------------------------------------------------


def test_snapshot_false_opts_out_of_the_jobs_one_moment(client, sent, db):
    job_id = submit(client, options={"snapshot": False})
    assert client.get(f"/jobs/{job_id}").json()["options"] == {"snapshot": False,
                                                               "profile": "ecto"}
    refused = client.post("/jobs", json=job_body(options={"snapshot": "maybe"}))
    assert refused.status_code == 422


def test_submit_queues_planning_and_never_shows_the_password(client, sent, db):
    response = client.post("/jobs", json=job_body(tables=["users"], options={"chunk_rows": 10}))

    assert response.status_code == 202
    job_id = response.json()["job_id"]
    assert response.json() == {"job_id": job_id, "state": "queued"}
    assert sent.calls == [(PLAN_TASK, job_id)]
    view = client.get(f"/jobs/{job_id}")
    assert view.status_code == 200
    assert view.json()["source"] == "postgresql://app:***@127.0.0.1:6379/appdb"
    assert view.json()["options"] == {"chunk_rows": 10, "profile": "ecto"}
    assert "source_sealed" not in view.json()
    listing = client.get("/jobs")
    assert [job["id"] for job in listing.json()] == [job_id]
    for text in (view.text, listing.text):
        assert PASSWORD not in text
    assert not any(PASSWORD in value for key in db.keys() if db.client.type(key) == "hash"
                   for value in db.client.hvals(key))


BAD_BODIES = [
    (job_body(target="../x"), "target name '../x' is not allowed"),
    (job_body(target="a/b"), "target name 'a/b' is not allowed"),
    (job_body(colour="red"), "colour: unknown field"),
    (job_body(source="mysql+pymysql://u:pw@localhost/db"),
     "unsupported source URL scheme 'mysql+pymysql'"),
    (job_body(source="mysql://u:pw@localhost"), "names no database"),
    (job_body(source="http://example.com/db"), "unsupported source URL scheme 'http'"),
    (job_body(source="not a url"), "source must be a URL"),
    (job_body(source="postgresql://u:pw@localhost"), "names no database"),
    (job_body(options={"chunk_rows": -5}), "options.chunk_rows: Input should be greater"),
    (job_body(options={"chunk_bytes": 10}), "options.chunk_bytes:"),
    (job_body(options={"colour": 1}), "options.colour: unknown field"),
    (job_body(options={"profile": "cobol"}), "unknown profile 'cobol'"),
    # Django reads a decimal column only as a number: TEXT decimals break every read
    (job_body(options={"profile": "django", "exact_decimals": True}),
     "exact_decimals cannot be used with the django profile"),
    (job_body(tables=["nope"]), "unknown table(s) 'nope'"),
    (job_body(exclude=[""]), "exclude.0:"),
    (job_body(replace="maybe"), "replace:"),
    ({"source": SOURCE}, "target: required"),
    ([1, 2], "request body must be a JSON object"),
    # names SQLite cannot hold, or not apart (issue 20, finding 5)
    (job_body(tables=["users", "users"]), "tables names 'users' more than once"),
    (job_body(exclude=["posts", "posts"]), "exclude names 'posts' more than once"),
    (job_body(tables=["Users", "users"]), "tables 'Users' and 'users' differ only in case"),
    (job_body(tables=["sqlite_master"]), "SQLite reserves names beginning with sqlite_"),
    (job_body(tables=["SQLite_sequence"]), "SQLite reserves names beginning with sqlite_"),
    (job_body(tables=["_liteshift_checkpoint"]), "liteshift uses _liteshift_checkpoint"),
    # input silently ignored or coerced (finding 6)
    (job_body(tables=[]), "tables: [] names no table: omit it (or send null)"),
    (job_body(replace="yes"), "replace: Input should be a valid boolean"),
    (job_body(options={"chunk_rows": "5"}), "options.chunk_rows: Input should be a valid "
     "integer"),
    (job_body(options={"exact_decimals": "true"}), "options.exact_decimals:"),
    (job_body(options={"column_types": {"nope.id": "text"}}),
     "column_types names 'nope.id', but the job copies no such table"),
    (job_body(exclude=[f"t{i}" for i in range(10_001)]), "exclude lists 10,001 tables; at "
     "most 10,000"),
]


@pytest.mark.parametrize(("body", "expected"), BAD_BODIES)
def test_bad_requests_are_422_with_a_message_and_nothing_queued(client, sent, db, body,
                                                                 expected):
    response = client.post("/jobs", json=body)

    assert response.status_code == 422, response.text
    assert expected in response.json()["error"]
    assert list(response.json()) == ["error"]
    assert sent.calls == []
    assert db.keys() == []


def test_a_refusal_does_not_echo_a_long_list(client, sent, db):
    unknown = [f"ghost_{i:05d}" for i in range(5000)]

    response = client.post("/jobs", json=job_body(exclude=unknown))

    assert response.status_code == 422
    message = response.json()["error"]
    assert "unknown table(s) 'ghost_00000'" in message and "and 4990 more" in message
    assert len(message) < 1000
    assert sent.calls == [] and db.keys() == []


@pytest.mark.parametrize(("raw", "content_type", "expected"), [
    (b'{"source": ', "application/json", "request body is not valid JSON (Expecting value)"),
    (b"not json", "application/json", "request body is not valid JSON"),
    (b"", "application/json", "request body is missing: send a JSON object"),
    (b'{"source": "x"}', "application/x-www-form-urlencoded",
     "request body must be JSON: send it with Content-Type: application/json"),
])
def test_malformed_json_is_422_with_a_clear_message(client, db, raw, content_type, expected):
    response = client.post("/jobs", content=raw, headers={"content-type": content_type})

    assert response.status_code == 422
    assert expected in response.json()["error"]
    assert db.keys() == []


def test_probe_failure_is_422_without_the_password(client, sent, db):
    for schema, expected in (("locked", "password authentication failed"),
                             ("crash", "the source probe failed"),
                             ("slow", "source did not answer within 3 s")):
        response = client.post("/jobs", json=job_body(schema=schema))

        assert response.status_code == 422, response.text
        assert expected in response.json()["error"]
        assert PASSWORD not in response.text
    assert sent.calls == [] and db.keys() == []


def test_unreachable_source_is_422(client, db):
    response = client.post("/jobs", json=job_body(source="postgresql://u:pw@127.0.0.1:1/db"))

    assert response.status_code == 422
    assert "cannot connect to 127.0.0.1:1" in response.json()["error"]
    assert db.keys() == []


def test_existing_target_is_409_unless_replace(client, settings, sent, db):
    (settings.data_dir / "app.db").write_bytes(b"")

    refused = client.post("/jobs", json=job_body())
    assert refused.status_code == 409
    assert "already exists" in refused.json()["error"]
    assert db.keys() == []

    submit(client, replace=True)
    again = client.post("/jobs", json=job_body(replace=True))
    assert again.status_code == 409
    assert "already writing target 'app'" in again.json()["error"]
    assert len(sent.calls) == 1


def test_body_over_one_mib_is_413(client, db):
    response = client.post("/jobs", content=b"x" * (1024 * 1024 + 1),
                           headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert "larger than" in response.json()["error"]


# -- the other routes ----------------------------------------------------------------------


def test_unknown_job_is_404_everywhere(client):
    for method, path in (("GET", "/jobs/nope"), ("POST", "/jobs/nope/retry"),
                         ("POST", "/jobs/nope/cancel"), ("GET", "/jobs/nope/report"),
                         ("GET", "/jobs/nope/download")):
        response = client.request(method, path)
        assert response.status_code == 404, path
        assert "no job 'nope'" in response.json()["error"]
    assert client.get("/no/such/route").json() == {"error": "Not Found"}


def test_cancel_then_retry_conflicts(client):
    job_id = submit(client)

    assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
    again = client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["error"]
    retry = client.post(f"/jobs/{job_id}/retry", json={"tables": None})
    assert retry.status_code == 409
    assert "submit it again" in retry.json()["error"]


def test_retry_requeues_failed_tables(client, settings, sent):
    job_id = submit(client)
    store = StateStore.from_settings(settings)
    store.update_job(job_id, tables=["users", "posts"])
    store.set_table_state(job_id, "users", TableState.FAILED, name="users", error="boom")
    store.set_table_state(job_id, "posts", TableState.VERIFIED, name="posts")
    store.set_job_state(job_id, JobState.FAILED, error="1 table failed")

    response = client.post(f"/jobs/{job_id}/retry", json={"tables": ["users"]})

    assert response.status_code == 202
    assert response.json() == {"job_id": job_id, "retried": ["users"]}
    assert sent.calls[-1] == ("liteshift.copy_table", job_id, "users")


def test_report_and_download_once_done(client, settings):
    job_id = submit(client)
    assert "is queued" in client.get(f"/jobs/{job_id}/report").json()["error"]
    with sqlite3.connect(settings.data_dir / "app.db") as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users VALUES (1, 'ada')")
    conn.close()
    (settings.data_dir / "app.report.json").write_text(json.dumps({"job_id": job_id, "ok": 1}))
    StateStore.from_settings(settings).set_job_state(job_id, JobState.DONE)

    assert client.get(f"/jobs/{job_id}/report").json() == {"job_id": job_id, "ok": 1}
    response = client.get(f"/jobs/{job_id}/download")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.sqlite3"
    assert 'filename="app.db"' in response.headers["content-disposition"]
    copy = settings.data_dir / "copy.db"
    copy.write_bytes(response.content)
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT name FROM users").fetchall() == [("ada",)]
    conn.close()
    # One copy kept for resumed downloads, with its hash; no half-made copy left
    kept = sorted(p.name for p in (settings.state_dir / "downloads").glob("app-*"))
    assert [name.rsplit(".", 1)[1] for name in kept] == ["db", "sha256"]
    assert not list((settings.state_dir / "downloads").glob("making-*"))


def test_healthz(client, settings, sent, probe_script):
    assert client.get("/healthz").json() == {"redis": "ok", "workers": 0,
                                             "compiled_parts": "ok"}

    down = settings.model_copy(update={"redis_url": "redis://:pw@127.0.0.1:1/0"})
    response = make_client(down, sent, probe_script).get("/healthz")
    assert response.status_code == 503
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in response.json()["error"]


def test_a_worker_without_its_compiled_parts_shows_in_healthz_and_doctor(client, settings,
                                                                          capsys):
    # Given no worker, then one with every compiled part: doctor exits 1, then 0
    assert run_cli(["doctor"], settings, client) == 1
    assert "no worker is running" in capsys.readouterr().out
    store = StateStore.from_settings(settings)
    store.announce_worker("host:1", {"native": {"_pgcopy": True}, "problems": {}}, ttl_s=60)
    assert run_cli(["doctor"], settings, client) == 0
    assert client.get("/healthz").json()["compiled_parts"] == "ok"

    # When a second worker lacks a part
    store.announce_worker("host:2", {"native": {"_pgcopy": False},
                                     "problems": {"_pgcopy": "not built: install gcc"}},
                          ttl_s=60)

    # Then /healthz counts it (no names: it needs no token) and doctor names the part and fix
    health = client.get("/healthz").json()
    assert health["workers"] == 2 and "missing on 1 worker(s)" in health["compiled_parts"]
    assert run_cli(["doctor"], settings, client) == 1
    out = capsys.readouterr().out
    assert "host:1  ok" in out and "host:2  _pgcopy not built: install gcc" in out

    # And a stopped worker drops out
    store.forget_worker("host:2")
    assert client.get("/healthz").json()["compiled_parts"] == "ok"


def test_token_required_when_set(settings, sent, probe_script):
    client = make_client(settings.model_copy(update={"api_token": "t0ken"}), sent,
                         probe_script)

    assert client.get("/healthz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "t0ken"}):
        response = client.get("/jobs", headers=headers)
        assert response.status_code == 401
        assert "API token" in response.json()["error"]
    unauthenticated = client.post("/jobs", content=b"{bad")
    assert unauthenticated.status_code == 401  # refused before the body is even parsed
    assert client.get("/jobs", headers={"Authorization": "Bearer t0ken"}).status_code == 200


# -- CLI ---------------------------------------------------------------------------------


def run_cli(argv: list[str], settings: Settings, client: TestClient | None = None) -> int:
    return cli.main(argv, settings=settings, http=client)


def test_cli_submit_prints_only_the_job_id(client, settings, sent, capsys):
    code = run_cli(["submit", SOURCE, "--target", "app", "--table", "users",
                    "--chunk-rows", "500"], settings, client)

    out, err = capsys.readouterr()
    assert code == 0
    job_id = out.strip()
    assert out == f"{job_id}\n"
    assert sent.calls == [(PLAN_TASK, job_id)]
    assert f"liteshift watch {job_id}" in err


def test_cli_submit_reads_the_source_from_stdin(client, settings, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(SOURCE + "\n"))

    assert run_cli(["submit", "-", "--target", "app"], settings, client) == 0
    assert len(capsys.readouterr().out.strip()) == 16


def test_cli_refusal_is_one_line_exit_2(client, settings, capsys):
    code = run_cli(["submit", SOURCE, "--target", "../x"], settings, client)

    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("liteshift: error: target name '../x' is not allowed")
    assert "Traceback" not in err


def test_cli_column_type_without_equals_is_an_error(client, settings, sent, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli(["submit", SOURCE, "--target", "app", "--column-type", "users.born_at"],
                settings, client)

    assert stop.value.code == 2
    assert "expected TABLE.COLUMN=TYPE" in capsys.readouterr().err
    assert sent.calls == []


def test_cli_without_api_is_exit_1(settings, capsys):
    down = settings.model_copy(update={"api_url": "http://127.0.0.1:1"})

    assert run_cli(["jobs"], down) == 1
    assert "cannot reach the liteshift API at http://127.0.0.1:1: is `liteshift api` running?" \
        in capsys.readouterr().err


def test_cli_config_error_is_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("LITESHIFT_REDIS_URL", "http://nope")
    get_settings.cache_clear()
    try:
        assert cli.main(["jobs"]) == 2
    finally:
        get_settings.cache_clear()
    assert "liteshift: error: invalid configuration: LITESHIFT_REDIS_URL" in \
        capsys.readouterr().err


def test_cli_status_jobs_and_watch(client, settings, capsys):
    job_id = submit(client)
    store = StateStore.from_settings(settings)
    store.update_job(job_id, tables=["users"])
    store.update_table(job_id, "users", name="users", state="copying", rows_done=250,
                       rows_estimated=1000, rows_per_s=12345.0, eta_s=61, checksum="ab" * 10)
    capsys.readouterr()

    assert run_cli(["status", job_id], settings, client) == 0
    out = capsys.readouterr().out
    assert "users  copying  250/1,000  25.0%  12.3k   1m01s  abababababababab" in out
    assert run_cli(["jobs"], settings, client) == 0
    assert job_id in capsys.readouterr().out

    store.set_job_state(job_id, JobState.DONE)
    assert run_cli(["watch", job_id, "--interval", "0.1"], settings, client) == 0
    store.set_job_state(job_id, JobState.FAILED, error="users failed at key 7")
    assert run_cli(["watch", job_id], settings, client) == 1
    assert f"job {job_id} failed: users failed at key 7" in capsys.readouterr().err


def test_cli_retry_cancel_report(client, settings, capsys):
    job_id = submit(client)

    assert run_cli(["report", job_id], settings, client) == 2
    assert run_cli(["cancel", job_id], settings, client) == 0
    assert run_cli(["retry", job_id, "--table", "users"], settings, client) == 2
    assert "was cancelled" in capsys.readouterr().err


def test_cli_api_refuses_public_host_without_token(settings, monkeypatch, capsys):
    started: list[dict[str, Any]] = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: started.append(kw))

    assert run_cli(["api", "--host", "0.0.0.0"], settings) == 2
    assert "refusing to listen on 0.0.0.0 without LITESHIFT_API_TOKEN" in capsys.readouterr().err
    assert run_cli(["api", "--port", "8123"], settings) == 0
    assert started == [{"factory": True, "host": "127.0.0.1", "port": 8123,
                        "log_config": None}]


def test_cli_worker_execs_celery_with_extra_args(settings, monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr("os.execvp", lambda file, argv: calls.append(argv))

    assert run_cli(["worker", "--concurrency", "2", "-O", "fair"], settings) == 0

    assert calls == [[sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
                      "--loglevel", "INFO", "-Q", "liteshift", "--prefetch-multiplier", "1",
                      "--concurrency", "2", "-O", "fair"]]


def test_api_and_cli_load_no_driver_and_no_worker_tasks():
    import subprocess

    code = ("import sys, api.app, api.cli; print(sorted(m for m in sys.modules if "
            "m.split('.')[0] in ('psycopg', 'sqlalchemy') or m in ('worker.tasks', "
            "'worker.celery_app')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)

    assert result.stdout.strip() == "[]"


def test_a_report_of_many_tables_is_paged_and_the_cli_prints_it_whole(client, settings,
                                                                       capsys):
    # Given a done job whose report lists 250 tables, an index each, and a view
    job_id = submit(client)
    tables = [{"name": f"t{i:03d}", "rows": i} for i in range(250)]
    objects = [{"kind": "view", "name": "v"},
               *({"kind": "index", "name": f"ix{i}", "table": f"t{i:03d}"} for i in range(250)),
               {"kind": "table", "name": "t150"}, {"kind": "default", "name": "t201.id"}]
    report = {"job_id": job_id, "tables": tables, "objects": objects}
    (settings.data_dir / "app.report.json").write_text(json.dumps(report))
    StateStore.from_settings(settings).set_job_state(job_id, JobState.DONE)

    # When the API is asked for it, page after page
    first = client.get(f"/jobs/{job_id}/report").json()
    second = client.get(first["next"]).json()
    last = client.get(second["next"]).json()

    # Then each page holds its tables and their objects, the view on the first
    assert [len(p["tables"]) for p in (first, second, last)] == [100, 100, 50]
    assert first["tables_total"] == 250 and last["next"] is None
    assert first["objects"][:2] == [objects[0], objects[1]] and len(first["objects"]) == 101
    assert [o["name"] for o in second["objects"]][-1] == "t150"
    assert [o["name"] for o in last["objects"]] == [f"ix{i}" for i in range(200, 250)] + [
        "t201.id"]
    assert client.get(f"/jobs/{job_id}/report", params={"limit": 0}).status_code == 422

    # And `liteshift report` prints the report whole: each page's objects after the page's
    capsys.readouterr()
    assert run_cli(["report", job_id], settings, client) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tables"] == tables
    assert sorted(map(json.dumps, printed["objects"])) == sorted(map(json.dumps, objects))
