"""LITESHIFT_LOG_FORMAT=json: every line the worker and the API write is one JSON object,
Celery's and uvicorn's included, and the per-chunk progress line keeps its fields."""

from __future__ import annotations

import json
import time

from faults.support import make_narrow_tables


def parsed(text: str, who: str) -> list[dict]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{who} line {number} is not JSON: {line!r}") from None
        assert isinstance(records[-1], dict), line
    return records


def test_every_line_of_the_worker_and_the_api_is_json(
        pg_db, settings_env, store, worker_proc, api_process, wait_for):
    # Given a worker and the API, both in JSON mode (settings_env sets it)
    make_narrow_tables(pg_db, {"things": 3000})
    worker = worker_proc()
    api = api_process()

    # When a job runs through the API, and both processes stop
    with api.client() as http:
        job_id = http.post("/jobs", json={"source": pg_db.url, "target": "logs",
                                          "options": {"chunk_rows": 1000}}).json()["job_id"]
        assert wait_for(store, job_id, ["done", "failed"], workers=[worker])["state"] == "done"
        assert http.get(f"/jobs/{job_id}").status_code == 200
    worker.stop()
    api.proc.terminate()
    api.proc.wait(timeout=20)
    time.sleep(0.1)

    # Then every line of each is a JSON object: Celery's banner, task lines and shutdown
    # notice, uvicorn's start and access lines, and liteshift's events
    worker_lines = parsed(worker.log_text(), "worker")
    api_lines = parsed(api.log_text(), "api")
    events = [r["event"] for r in worker_lines]
    assert f"{worker.name} ready." in events
    assert any(e.startswith("Task liteshift.copy_table[") and e.endswith("received")
               for e in events)
    assert any("Warm shutdown" in e for e in events)
    (starting,) = [r for r in worker_lines if r["event"] == "worker_starting"]
    assert starting["task_events"] is True  # Flower sees the tasks
    chunks = [r for r in worker_lines if r["event"] == "chunk_committed"]
    assert chunks
    assert {"rows_done", "rows_total", "rows_per_s", "last_key", "job_id", "table",
            "timestamp", "level"} <= set(chunks[-1])
    assert chunks[-1]["rows_done"] == 3000 and chunks[-1]["last_key"] == [3000]
    api_events = [r["event"] for r in api_lines]
    assert any(e.startswith("Uvicorn running on") for e in api_events)
    assert any('"POST /jobs HTTP/1.1" 202' in e for e in api_events)
    assert all(r["level"] and r["timestamp"] for r in worker_lines + api_lines)
