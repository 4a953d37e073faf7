"""A job's own files on the volume, beside its manifest: what survives losing Redis.

    <data>/.liteshift/jobs/<id>/job.json       the submitted job (sealed source), at submit
    <data>/.liteshift/jobs/<id>/manifest.json  the plan (worker/state/manifest.py), once planned
    <data>/.liteshift/jobs/<id>/tables/*.db    work files with their checkpoints
    <data>/.liteshift/jobs/<id>/outcome.json   written once the job is done or cancelled

No database driver is imported here: the API writes job.json and outcome.json too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from worker.core import filemodes

JOB_RECORD = "job.json"
OUTCOME = "outcome.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file, fsync, rename: readers see the old file or the new one."""
    filemodes.make_dirs(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # one left by a crash has its own mode: made again
    with os.fdopen(filemodes.open_new(tmp), "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def write_job_record(job_dir: Path, record: dict[str, Any]) -> None:
    write_json_atomic(job_dir / JOB_RECORD, record)


def read_job_record(job_dir: Path) -> dict[str, Any] | None:
    return read_json(job_dir / JOB_RECORD)


def write_outcome(job_dir: Path, state: str, **fields: Any) -> None:
    write_json_atomic(job_dir / OUTCOME, {"state": state, **fields})


def read_outcome(job_dir: Path) -> dict[str, Any] | None:
    return read_json(job_dir / OUTCOME)


def remove_work_files(job_dir: Path, *, partial: bool = False) -> None:
    """The tables' work files; with `partial`, finalize's partial file too (its name is
    <target>.db.partial, with SQLite's files and the build record beside it)."""
    # A worker may still hold a file open: on POSIX it keeps writing to the unlinked inode
    # until its next chunk sees the job's state and stops; nothing reaches the volume's names.
    shutil.rmtree(job_dir / "tables", ignore_errors=True)
    if partial:
        for path in job_dir.glob("*.db.partial*"):
            path.unlink(missing_ok=True)


def job_dirs(state_dir: Path) -> list[Path]:
    root = state_dir / "jobs"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
