"""Finalize's progress in the job's Redis state, for `liteshift watch`, GET /jobs/{id} and
/metrics: the listener that worker/core/steps.py's reports go to."""

from __future__ import annotations

import time
from typing import Any

import redis

from worker.state.store import StateStore

PUBLISHING = "publishing"

#: A step's progress is written at most this often (its start and each new step always):
#: merging a thousand small tables must not cost a thousand Redis round trips.
WRITE_EVERY_S = 0.25


class StepRecorder:
    """Writes the job's `finalize` field at every report: {"step", "done", "total", "item",
    "steps": [{"step", "total", "seconds"}…]}, the last list holding the steps finished so
    far. A step's duration also goes to the finalize_step_seconds histogram."""

    def __init__(self, store: StateStore, job_id: str, log: Any):
        self.store, self.job_id, self.log = store, job_id, log
        self.steps: list[dict[str, Any]] = []
        self.current: str | None = None
        self.total = 0
        self.started = time.monotonic()
        self.written = 0.0

    def __call__(self, name: str, done: int, total: int, item: str | None) -> None:
        now = time.monotonic()
        if name != self.current:
            self._close(now)
            self.current, self.started = name, now
            self.log.info("finalize_step", step=name, total=total)
        elif now - self.written < WRITE_EVERY_S and done < total:
            self.total = total
            return
        self.total = total
        self.written = now
        self._write({"step": name, "done": done, "total": total, "item": item})

    def finish(self) -> None:
        """The last step is over: the field keeps only the finished steps."""
        self._close(time.monotonic())
        self._write({"step": None, "done": 0, "total": 0, "item": None})

    def _close(self, now: float) -> None:
        if self.current is None:
            return
        seconds = now - self.started
        self.steps.append({"step": self.current, "total": self.total,
                           "seconds": round(seconds, 3)})
        try:
            self.store.observe("finalize_step_seconds", seconds, label=self.current)
        except redis.RedisError as exc:
            self.log.warning("progress_mirror_failed", error=str(exc))
        self.current = None

    def _write(self, progress: dict[str, Any]) -> None:
        # Progress is a mirror: Redis being away costs it, never the build.
        try:
            self.store.set_finalize_progress(self.job_id, {**progress, "steps": self.steps})
        except redis.RedisError as exc:
            self.log.warning("progress_mirror_failed", error=str(exc))
