"""The Celery application: broker settings chosen for at-least-once delivery.

Late acks + reject-on-worker-lost + prefetch 1: a task whose worker dies is delivered again;
leases and fencing tokens make the repeat harmless. Task events are on, so Flower (and
`celery events`) see every task.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from celery.apps import worker as celery_worker
from celery.signals import (
    celeryd_after_setup,
    setup_logging,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from worker.core import filemodes, serverpaths
from worker.core.config import get_settings
from worker.core.logs import configure_logging, get_logger, json_lines
from worker.core.memory import fixed_mmap_threshold
from worker.sources.ambient import drop_driver_env

settings = get_settings()
configure_logging(settings.log_format)
filemodes.configure(settings.file_group)
serverpaths.configure(settings.data_dir)
drop_driver_env()  # worker/sources/ambient.py: the service's credentials are not the jobs'
fixed_mmap_threshold()

app = Celery("liteshift", broker=settings.broker_url)
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
    # For Flower and `celery events`: a worker that sends none shows no tasks there.
    worker_send_task_events=True,
    task_send_sent_event=True,
    imports=["worker.tasks"],
)


@setup_logging.connect
def _one_log_format(loglevel: int | None = None, **_: Any) -> None:
    """Connected, this signal keeps Celery from installing handlers of its own: its lines go
    through liteshift's (worker/core/logs.py) in the same format as liteshift's events."""
    configure_logging(settings.log_format, level=loglevel or logging.INFO)


@celeryd_after_setup.connect
def _banner_as_a_log_line(sender: str, instance: Any, **_: Any) -> None:
    """Celery prints a multi-line banner on stdout; in JSON mode it becomes one event."""
    if not json_lines(settings.log_format):
        return
    instance.quiet = True
    celery_worker.safe_say = _say_as_json
    pool = instance.pool_cls if isinstance(instance.pool_cls, str) else \
        instance.pool_cls.__module__.rsplit(".", 1)[-1]
    get_logger().info("worker_starting", hostname=str(sender), pool=pool,
                      concurrency=instance.concurrency, broker=app.connection().as_uri(),
                      queues=sorted(app.amqp.queues), task_events=bool(instance.task_events))


def _say_as_json(msg: str, f: Any = None) -> None:
    """Celery's shutdown notices, written from its signal handlers with a bare os.write
    (logging's locks are not safe there): the same, as one JSON line on stderr."""
    line = {"event": msg.strip(), "level": "warning", "logger": "celery.apps.worker",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    with contextlib.suppress(OSError):
        os.write(sys.__stderr__.fileno() if sys.__stderr__ else 2,
                 (json.dumps(line) + "\n").encode())


def send(name: str, *args: Any) -> None:
    app.send_task(name, args=list(args), queue=settings.queue)


@worker_ready.connect
def _start_reaper(**_: Any) -> None:
    from worker.jobs.presence import warn_if_slow
    from worker.jobs.reaper import start_reaper

    warn_if_slow()
    start_reaper(settings, send)


@worker_process_init.connect
def _keep_a_snapshot_holder_ready(**_: Any) -> None:
    from worker.jobs.snapshot_holder import keep_one_ready

    keep_one_ready()


@worker_process_init.connect
def _keep_a_reader_ready(**_: Any) -> None:
    if settings.reader_process_bytes >= 0:  # big tables are read in child processes
        from worker.sources.reader_process import keep_one_ready

        keep_one_ready()


@worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    from worker.jobs.reaper import stop_reaper

    stop_reaper()
