"""One table the source user may not read: it fails alone, is retried alone, and the source
password shows up nowhere: not in logs, Redis, queue messages or files on the volume."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker.jobs import control
from worker.state.manifest import read_manifest

PASSWORD = "Sup3rSecret-pw"


@pytest.fixture
def limited_role(pg_db) -> Iterator[str]:
    """A login role with a password, allowed to read tables `a` and `b` but not `c`."""
    role = f"ls_user_{uuid.uuid4().hex[:8]}"
    pg_db.execute(f"""
        CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}';
        CREATE TABLE a (id bigint PRIMARY KEY, label text);
        CREATE TABLE b (id bigint PRIMARY KEY, a_id bigint REFERENCES a (id), note text);
        CREATE TABLE c (code text PRIMARY KEY, amount numeric(10,2));
        INSERT INTO a SELECT i, 'a' || i FROM generate_series(1, 50) i;
        INSERT INTO b SELECT i, i % 50 + 1, 'b' || i FROM generate_series(1, 200) i;
        INSERT INTO c SELECT 'k' || i, i * 1.25 FROM generate_series(1, 30) i;
        GRANT SELECT ON a, b TO {role};
        REVOKE ALL ON c FROM {role};""")
    yield role
    pg_db.execute(f"DROP OWNED BY {role}")  # its grants, so the role can go
    pg_db.execute(f"DROP ROLE {role}")


class RedisMonitor:
    """Every command Redis receives while it runs (MONITOR), as the server prints them."""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.lines: list[str] = []
        self._started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.client.monitor() as monitor:
            self._started.set()
            while not self._stop.is_set():
                self.lines.append(str(monitor.connection.read_response()))

    def __enter__(self) -> RedisMonitor:
        self._thread.start()
        assert self._started.wait(5), "MONITOR did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.client.ping()  # one more command wakes the reader up
        self._thread.join(timeout=5)
        self.client.close()


def readable_forms(text: str) -> Iterator[str]:
    """The text, and every base64 run in it decoded: Celery message bodies (the task
    arguments) are base64 in Redis."""
    yield text
    for run in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
        try:
            yield base64.b64decode(run + "=" * (-len(run) % 4)).decode("utf-8", "replace")
        except ValueError:
            continue


def redis_values(store) -> Iterator[str]:
    """Every key under the test's prefix, with its values, whatever its type."""
    client = store.redis
    for key in client.scan_iter(match=f"{store.keys.prefix}:*"):
        kind = client.type(key)
        yield key
        if kind == "string":
            # A lease or lock can expire between SCAN and GET.
            yield client.get(key) or ""
        elif kind == "hash":
            yield json.dumps(client.hgetall(key))
        elif kind == "stream":
            yield json.dumps(client.xrange(key))
        elif kind == "zset":
            yield json.dumps(client.zrange(key, 0, -1))
        elif kind == "set":
            yield json.dumps(sorted(client.smembers(key)))
        elif kind == "list":
            yield json.dumps(client.lrange(key, 0, -1))
        else:
            pytest.fail(f"unexpected Redis type {kind} for {key}")


def test_a_table_without_permission_fails_alone_and_is_retried_alone(
        pg_db, limited_role, settings_env, store, send, worker_proc, wait_for):
    # Given a source user that may read tables a and b, but not c
    source = f"postgresql://{limited_role}:{PASSWORD}@127.0.0.1/{pg_db.name}"
    worker = worker_proc()

    with RedisMonitor(settings_env.redis_url) as monitor:
        # When the job runs
        job_id = control.submit_job(settings_env, store, send, source=source, target="app")
        failed = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])

        # Then c failed with the reason, a and b are verified, and the job failed naming c
        tables = {t["name"]: t for t in failed["tables"]}
        assert failed["state"] == "failed", failed
        assert "c" in failed["error"]
        assert tables["c"]["state"] == "failed"
        assert "permission denied" in tables["c"]["error"].lower()
        assert (tables["a"]["state"], tables["b"]["state"]) == ("verified", "verified")

        # When c may be read, and only c is retried
        pg_db.execute(f"GRANT SELECT ON c TO {limited_role}")
        assert control.retry_job(store, send, job_id, tables=["c"]) == ["c"]
        done = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])

    # Then the job is done, a and b were not copied again, and the file has all three
    # (the three small tables were copied as a group sharing one work file, and c retried
    # alone in it)
    tables = {t["name"]: t for t in done["tables"]}
    assert done["state"] == "done", done
    assert {name: t["attempts"] for name, t in tables.items()} == {"a": 1, "b": 1, "c": 2}
    _, plans, _ = read_manifest(settings_env.job_dir(job_id))
    assert len({plan.file for plan in plans}) == 1
    assert all(t["state"] == "verified" for t in tables.values())
    db = sqlite3.connect(settings_env.data_dir / "app.db")
    try:
        assert [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in "abc"] == \
               [50, 200, 30]
    finally:
        db.close()

    # and the password is nowhere: the worker log, job views, Redis keys and values (and
    # every command Redis received, Celery's messages among them), files on the volume
    assert done["source"] == f"postgresql://{limited_role}:***@127.0.0.1/{pg_db.name}"
    assert PASSWORD not in worker.log_text()
    assert PASSWORD not in json.dumps([failed, done])
    leaks = [value for value in redis_values(store) if PASSWORD in value]
    assert leaks == []
    decoded = [form for line in monitor.lines for form in readable_forms(line)]
    assert any(f'"{job_id}"' in form and "liteshift.plan_job" in line
               for line in monitor.lines for form in readable_forms(line)), \
        "the plan_job message was not seen: the monitor saw nothing useful"
    assert [form for form in decoded if PASSWORD in form] == []
    files = [path for path in Path(settings_env.data_dir).rglob("*") if path.is_file()]
    assert {"app.db", "app.report.json", "manifest.json"} <= {path.name for path in files}
    assert [path for path in files if PASSWORD.encode() in path.read_bytes()] == []
