"""The Celery application: broker settings chosen for at-least-once delivery.

Late acks + reject-on-worker-lost + prefetch 1: a task whose worker dies is delivered again;
leases and fencing tokens make the repeat harmless.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from worker.core.config import get_settings
from worker.core.logs import configure_logging
from worker.core.memory import fixed_mmap_threshold

settings = get_settings()
configure_logging(settings.log_format)
fixed_mmap_threshold()

app = Celery("liteshift", broker=settings.redis_url)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=settings.queue,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 3600},
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    imports=["worker.tasks"],
)


def send(name: str, *args: Any) -> None:
    app.send_task(name, args=list(args), queue=settings.queue)


@worker_ready.connect
def _start_reaper(**_: Any) -> None:
    from worker.jobs.presence import warn_if_slow
    from worker.jobs.reaper import start_reaper

    warn_if_slow()
    start_reaper(settings, send)


@worker_process_init.connect
def _keep_a_reader_ready(**_: Any) -> None:
    if settings.reader_process_bytes >= 0:  # big tables are read in child processes
        from worker.sources.reader_process import keep_one_ready

        keep_one_ready()


@worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    from worker.jobs.reaper import stop_reaper

    stop_reaper()
