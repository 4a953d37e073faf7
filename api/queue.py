"""Send tasks to the workers by name, so the API never imports worker code or drivers."""

from __future__ import annotations

from typing import Any

from celery import Celery

from worker.core.config import Settings


class TaskQueue:
    """A Celery client that only publishes; the workers own the task definitions."""

    def __init__(self, settings: Settings):
        self.app = Celery("liteshift", broker=settings.broker_url)
        # Fail a publish fast when Redis is down instead of retrying for a long time while
        # an HTTP request waits; the caller turns the error into a 503.
        self.app.conf.broker_connection_retry_on_startup = True
        self.app.conf.task_publish_retry_policy = {"max_retries": 2, "interval_start": 0.2,
                                                   "interval_step": 0.5, "interval_max": 1}
        self.queue = settings.queue

    def send(self, name: str, *args: Any) -> Any:
        return self.app.send_task(name, args=list(args), queue=self.queue)
