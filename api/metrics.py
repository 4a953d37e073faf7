"""GET /metrics in Prometheus' text format (prometheus_client), computed from Redis at each
scrape.

Workers are separate processes (and machines, with compose), so no counter can live in the
API's memory. Rather than each worker serving its own endpoint (Prometheus would have to
find every worker, and a worker that restarts loses its counts), what /metrics says comes
from the job state the workers already keep in Redis: jobs by state, each table's rows and
bytes, the follow's lag. The two histograms (chunk commit and finalize step durations) are
counted into Redis by the workers as they go (StateStore.observe). One scrape of any API
process sees the whole installation.

Per-table series carry a job label; to keep their number bounded they are given only for
jobs that are running, or that ended less than RECENT_S ago.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from worker.state.store import JobState, StateStore

#: How long a finished job's per-table series stay on /metrics after it ended
RECENT_S = 3600.0
#: Jobs counted by state: the newest this many (the list of jobs grows forever)
JOBS_COUNTED = 10_000


class StoreCollector(Collector):
    """Reads the job state in Redis at each scrape."""

    def __init__(self, store: StateStore):
        self.store = store

    def collect(self) -> Iterator[Metric]:
        ids = self.store.job_ids(JOBS_COUNTED)
        jobs = [{"id": job_id, **fields} for job_id, fields in zip(ids, self.store.jobs_fields(
            ids, "state", "target", "tables", "finished_at", "follow"))]
        yield self._jobs_by_state(jobs)
        now = time.time()
        shown = [j for j in jobs if j["state"] and not JobState(j["state"]).finished
                 or (j["finished_at"] or 0) > now - RECENT_S]
        yield from self._tables(shown)
        yield self._follow_lag(shown)
        yield self._histogram("liteshift_chunk_commit_seconds", "chunk_commit_seconds",
                              "Time to commit one chunk into its work file (write, read back, "
                              "fsync)", label=None)
        yield self._histogram("liteshift_finalize_step_seconds", "finalize_step_seconds",
                              "Time finalize spent in each step", label="step")

    def _jobs_by_state(self, jobs: list[dict[str, Any]]) -> Metric:
        gauge = GaugeMetricFamily("liteshift_jobs", "Jobs in each state", labels=["state"])
        counts = Counter(j["state"] for j in jobs if j["state"])
        for state in JobState:
            gauge.add_metric([state.value], counts.get(state.value, 0))
        return gauge

    def _tables(self, jobs: list[dict[str, Any]]) -> Iterator[Metric]:
        labels = ["job", "target", "table"]
        rows = CounterMetricFamily("liteshift_table_rows_copied",
                                   "Rows committed into the table's work file", labels=labels)
        size = CounterMetricFamily("liteshift_table_bytes_copied",
                                   "Bytes of rows committed (chunks copied again after a "
                                   "resume count again)", labels=labels)
        estimated = GaugeMetricFamily("liteshift_table_rows_estimated",
                                      "Rows the table is expected to hold", labels=labels)
        for job in jobs:
            for table in self.store.tables(job["id"], job["tables"] or []):
                values = [job["id"], str(job["target"]), str(table.get("name"))]
                rows.add_metric(values, float(table.get("rows_done") or 0))
                size.add_metric(values, float(table.get("bytes_done") or 0))
                estimated.add_metric(values, float(table.get("rows_estimated") or 0))
        yield from (rows, size, estimated)

    def _follow_lag(self, jobs: list[dict[str, Any]]) -> Metric:
        gauge = GaugeMetricFamily("liteshift_follow_lag_seconds",
                                  "How far a following job's file is behind its source",
                                  labels=["job", "target"])
        for job in jobs:
            lag = (job["follow"] or {}).get("lag_s") if job["state"] == "following" else None
            if isinstance(lag, (int, float)):
                gauge.add_metric([job["id"], str(job["target"])], float(lag))
        return gauge

    def _histogram(self, metric: str, name: str, help_text: str,
                   label: str | None) -> Metric:
        family = HistogramMetricFamily(metric, help_text, labels=[label] if label else None)
        for value, counted in sorted(self.store.histogram(name).items()):
            family.add_metric([value] if label else [], counted["buckets"],
                              sum_value=counted["sum"])
        return family


def registry_for(store: StateStore) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry
