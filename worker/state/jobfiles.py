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
import re
import shutil
import time
from pathlib import Path
from typing import Any

from worker.core import filemodes
from worker.core.errors import InputError

JOB_RECORD = "job.json"
OUTCOME = "outcome.json"
#: What a job id may be (control.new_job_id makes 16 hex digits): it names a directory on
#: the volume, so nothing that could lead out of the jobs' directory.
JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_job_id(job_id: str) -> str:
    """The id, if it can name a job's directory; anything else (`..`, a slash) refused
    before a path is made of it."""
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        raise InputError(f"job id {job_id!r} is not valid: 1 to 64 letters, digits, '_' "
                         "or '-' (`liteshift jobs` lists the jobs)")
    return job_id


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


def expired_unfinished(job_dir: Path, retention_s: int) -> bool:
    """Whether Redis dropped a job without an outcome.json on purpose: a failed job has none
    (it may be retried), so its keys expiring after the retention looks like a loss, except
    that none of its files changed for that long. (The margin covers files written just
    after the job failed.) Such a job comes back only when asked (`liteshift resume`)."""
    if not retention_s:
        return False
    return newest_change(job_dir) < time.time() - 0.9 * retention_s


def newest_change(job_dir: Path) -> float:
    """The time of the latest write to the job's directory, its files or its work files."""
    newest = job_dir.stat().st_mtime
    for folder in (job_dir, job_dir / "tables"):
        try:
            with os.scandir(folder) as entries:
                newest = max([newest, *(e.stat().st_mtime for e in entries)])
        except FileNotFoundError:
            continue
    return newest
