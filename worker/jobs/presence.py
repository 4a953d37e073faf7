"""A worker's word about itself: it warns at start when a compiled part is missing and keeps
a short-lived Redis entry saying so, which /healthz and `liteshift doctor` show: a worker
built without a compiler runs the plain-Python paths, much slower, and should say so."""

from __future__ import annotations

import os
import socket

from worker import native
from worker.core.config import Settings
from worker.core.logs import get_logger
from worker.state.store import StateStore

NAME = f"{socket.gethostname()}:{os.getpid()}"


def warn_if_slow() -> None:
    problems = native.problems()
    if problems:
        get_logger().warning("native_parts_missing", missing=sorted(problems), **problems)


def announce(settings: Settings, store: StateStore) -> None:
    """Refreshed by the reaper's loop; lives three of its turns, so a dead worker drops out."""
    problems = native.problems()
    store.announce_worker(NAME, {"pid": os.getpid(), "queue": settings.queue,
                                 "native": native.status(), "problems": problems},
                          ttl_s=3 * max(1.0, settings.lease_ttl_s / 2))


def withdraw(store: StateStore) -> None:
    store.forget_worker(NAME)
