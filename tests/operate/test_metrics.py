"""GET /metrics after a real job: the counters hold that job's numbers."""

from __future__ import annotations

import json
import re

from faults.support import REPO, make_narrow_tables
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_after_a_job(pg_db, settings_env, store, worker_proc, api_process, wait_for):
    # Given a job of two tables run through the API, which needs a token
    make_narrow_tables(pg_db, {"orders": 12_000, "items": 3000})
    pg_db.execute("CREATE INDEX orders_n ON orders (n)")
    worker = worker_proc()
    api = api_process({"LITESHIFT_API_TOKEN": "metrics-token-0123456789"})
    auth = {"Authorization": "Bearer metrics-token-0123456789"}
    with api.client(headers=auth) as http:
        job_id = http.post("/jobs", json={"source": pg_db.url, "target": "measured",
                                          "options": {"chunk_rows": 1000}}).json()["job_id"]
        assert wait_for(store, job_id, ["done", "failed"], workers=[worker])["state"] == "done"

        # When Prometheus scrapes /metrics (with the token; without, it is refused)
        answer = http.get("/metrics")
        refused = http.get("/metrics", headers={"Authorization": ""})

    # Then it is Prometheus' text format with the job's numbers
    assert refused.status_code == 401
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = samples(answer.text)

    def value(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    assert value("liteshift_jobs", state="done") == 1
    assert value("liteshift_jobs", state="copying") == 0
    for table, rows in (("orders", 12_000), ("items", 3000)):
        labels = {"job": job_id, "target": "measured", "table": table}
        assert value("liteshift_table_rows_copied_total", **labels) == rows
        assert value("liteshift_table_rows_estimated", **labels) == rows
        # each row is at least its 8-byte key
        assert value("liteshift_table_bytes_copied_total", **labels) > rows * 8
    chunks = len(worker.events("chunk_committed"))
    assert chunks >= 15  # 12 + 3 chunks of at most 1000 rows
    assert value("liteshift_chunk_commit_seconds_count") == chunks
    assert value("liteshift_chunk_commit_seconds_bucket", le="+Inf") == chunks
    assert value("liteshift_chunk_commit_seconds_sum") > 0
    for step in ("merging", "indexing", "objects", "checking", "publishing"):
        assert value("liteshift_finalize_step_seconds_count", step=step) == 1, step

    # And every series the Grafana dashboard queries is one /metrics serves
    dashboard = json.loads((REPO / "ops/grafana/liteshift.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"liteshift_\w+", target["expr"])}
    served = {s[0] for s in found} | {f.name for f in text_string_to_metric_families(answer.text)}
    assert queried and queried <= served, queried - served
