"""Secrets never leak (DESIGN 2.7), and the API's access rules.

Jobs run for real against a PostgreSQL cluster that checks passwords, through the real API and
a real worker; then the password is searched for everywhere it could have gone: worker and API
logs, every API answer, every file on the volume (reports, manifests, job records, published
files), every Redis key and value, Celery's messages included.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis

from faults.support import LITESHIFT, REPO, free_port, stop_process

# URL-special characters, so both the raw and the %-encoded forms must be kept out
SECRET = "Zq7-Leak?Check#42&x"
FORMS = {SECRET, quote(SECRET, safe=""), quote(SECRET)}
ROWS = 5_000


@pytest.fixture
def secret_source(scram_postgres):
    """Tables `pub` (readable by the role) and `priv` (not: copying it fails)."""
    scram_postgres.role("ls_secret", SECRET)
    db = scram_postgres.database(owner="postgres")
    for table in ("pub", "priv"):
        scram_postgres.execute(f"CREATE TABLE {table} AS SELECT i AS id, 'v' || i AS s "
                               f"FROM generate_series(1, {ROWS}) i", database=db)
        scram_postgres.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)", database=db)
    scram_postgres.execute("GRANT SELECT ON pub TO ls_secret", database=db)
    yield scram_postgres.url("ls_secret", SECRET, db)
    scram_postgres.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def redis_dump(client: redis.Redis) -> list[tuple[str, bytes]]:
    """Every key of the test database with its value(s), whatever the type."""
    out: list[tuple[str, bytes]] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "hash":
            values = [b"%s=%s" % kv for kv in client.hgetall(key).items()]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [b"%s=%s" % kv for _, fields in client.xrange(key) for kv in fields.items()]
        else:
            values = []
        out += [(key.decode(), value) for value in [key, *values]]
    return out


def leaks(where: str, data: bytes | str) -> list[str]:
    raw = data.encode() if isinstance(data, str) else data
    return [f"{where}: contains {form!r}" for form in FORMS if form.encode() in raw]


def test_the_password_appears_nowhere(secret_source, settings_env, store, worker_proc,
                                      api_process, wait_for, monkeypatch, tmp_path):
    # Given the API and (later) a worker that know a named source with the same password
    monkeypatch.setenv("LITESHIFT_SOURCE_SECRETDB", secret_source)
    api = api_process()
    client = redis.Redis.from_url(settings_env.redis_url)
    found: list[str] = []
    answers: list[httpx.Response] = []
    with api.client() as http:
        # When jobs are submitted with the password in the URL: one to run to the end, one
        # with a table the role may not read; and one through the named source
        def submit(body: dict[str, Any]) -> str:
            response = http.post("/jobs", json=body)
            answers.append(response)
            assert response.status_code == 202, response.text
            return str(response.json()["job_id"])

        done = submit({"source": secret_source, "target": "sec_done", "tables": ["pub"]})
        # (Celery's message for it is waiting in Redis now: look before a worker takes it)
        found += [hit for key, value in redis_dump(client) for hit in leaks(key, value)]
        failing = submit({"source": secret_source, "target": "sec_fail"})
        named = submit({"source": "secretdb", "target": "sec_named", "tables": ["pub"]})
        worker = worker_proc()
        views = {job: wait_for(store, job, ["done", "failed"], timeout=60, workers=[worker])
                 for job in (done, failing, named)}
        verified = http.post(f"/jobs/{done}/verify", json={"source": True})
        answers.append(verified)
        wait_for_verification(http, done)

        # Then the jobs did what they should
        assert views[done]["state"] == "done", views[done]
        assert views[named]["state"] == "done", views[named]
        assert views[failing]["state"] == "failed", views[failing]
        priv = {t["name"]: t for t in views[failing]["tables"]}["priv"]
        assert "permission denied" in priv["error"]
        assert views[named]["source"].startswith("secretdb (postgresql://ls_secret:***@")

        # and the password is in no API answer
        for path in ["/jobs", *(f"/jobs/{job}" for job in (done, failing, named)),
                     f"/jobs/{done}/report", f"/jobs/{named}/report",
                     f"/jobs/{failing}/report", f"/jobs/{failing}/retry"]:
            answers.append(http.get(path) if "retry" not in path else http.post(path))
        # nor in the answer to a bad password or a broken URL carrying it
        answers.append(http.post("/jobs", json={"source": secret_source.replace(
            quote(SECRET, safe=""), quote(SECRET + "x", safe="")), "target": "sec_bad"}))
        answers.append(http.post("/jobs", json={"source": secret_source.replace(
            "127.0.0.1", "127.0.0.1:notaport"), "target": "sec_bad"}))
    assert answers[-2].status_code == 422 and "wrong user name or password" in answers[-2].text
    assert answers[-1].status_code == 422
    for response in answers:
        found += leaks(f"{response.request.method} {response.request.url.path}",
                       response.content)

    # nor in the worker's log or the API's
    found += leaks("worker log", worker.log_text())
    found += leaks("api log", api.log_text())
    # nor in any file on the volume: job records, manifests, outcomes, verification results,
    # reports, published databases (the named source's URL is only in the environment)
    files = [p for p in settings_env.data_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"job.json", "manifest.json", "outcome.json", "verification.json",
            "sec_done.report.json", "sec_done.db"} <= names, names
    for path in files:
        found += leaks(str(path.relative_to(settings_env.data_dir)), path.read_bytes())
    # nor anywhere in Redis: job and table hashes, event streams, Celery's queues and its
    # unacknowledged messages, kombu's bindings
    dump = redis_dump(client)
    assert any(key.startswith(settings_env.redis_prefix) for key, _ in dump)
    found += [hit for key, value in dump for hit in leaks(key, value)]
    assert found == []


def wait_for_verification(http: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = http.get(f"/jobs/{job_id}").json().get("verification") or {}
        if result.get("state") not in (None, "running"):
            assert result["state"] == "ok", result
            return result
        time.sleep(0.2)
    raise AssertionError("verification did not finish")


# -- the API token ------------------------------------------------------------------------

def test_with_a_token_every_endpoint_but_healthz_requires_it(settings_env, api_process,
                                                             store):
    # Given the API started with LITESHIFT_API_TOKEN
    token = "t0ken-" + "x" * 20
    api = api_process({"LITESHIFT_API_TOKEN": token})
    with api.client() as http:
        spec = http.get("/openapi.json", headers={"Authorization": f"Bearer {token}"}).json()
        operations = [(method.upper(), path.replace("{job_id}", "somejob"))
                      for path, item in spec["paths"].items() for method in item]
        assert len(operations) >= 9

        # Then each operation, and the docs, answer 401 without it or with a wrong one
        problems = []
        for method, path in [*operations, ("GET", "/openapi.json"), ("GET", "/docs")]:
            for headers in ({}, {"Authorization": "Bearer wrong"},
                            {"Authorization": f"Basic {token}"}, {"Authorization": token}):
                response = http.request(method, path, headers=headers)
                expected = 200 if path == "/healthz" else 401
                if response.status_code != expected:
                    problems.append(f"{method} {path} {headers}: {response.status_code}")
            # and with the token they get past the guard
            response = http.request(method, path,
                                    headers={"Authorization": f"Bearer {token}"})
            if response.status_code == 401:
                problems.append(f"{method} {path} refused the right token")
        assert problems == []
    assert token not in api.log_text()


def test_the_api_refuses_a_public_address_without_a_token(settings_env):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "LITESHIFT_API_TOKEN"}
    refused = subprocess.run([*LITESHIFT, "api", "--host", "0.0.0.0", "--port", str(port)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert "refusing to listen on 0.0.0.0 without LITESHIFT_API_TOKEN" in refused.stderr

    # with a token it starts
    proc = subprocess.Popen([*LITESHIFT, "api", "--host", "0.0.0.0", "--port", str(port)],
                            cwd=REPO, env={**env, "LITESHIFT_API_TOKEN": "tok-123456"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        for _ in range(100):
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("the API did not start with a token")
    finally:
        stop_process(proc)
