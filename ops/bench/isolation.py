"""A benchmark run's own corner of the machine: a run id, a scratch folder, and the
environment that gives the worker code it imports (and the workers it starts) the run's own
Celery queue, Redis key prefix and data volume, so a run never touches other jobs' keys."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def isolated_run(kind: str, redis_url: str) -> tuple[str, Path]:
    """Set the environment up for a run named after `kind` and return its id and scratch
    folder. Call it before importing worker code: its settings are read from the
    environment once. The run's API listens on loopback, where no token is needed."""
    run_id = f"liteshift-{kind}-{os.getpid()}"
    scratch = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir="/tmp"))
    os.environ.update({
        "LITESHIFT_REDIS_URL": redis_url, "LITESHIFT_QUEUE": run_id,
        "LITESHIFT_REDIS_PREFIX": run_id, "LITESHIFT_DATA_DIR": str(scratch / "data"),
        "LITESHIFT_LOG_FORMAT": "json",
    })
    os.environ.pop("LITESHIFT_API_TOKEN", None)
    sys.path.insert(0, str(ROOT))
    return run_id, scratch
