"""The job manifest on the volume: what the job is and its plan, enough to rebuild Redis.

It holds the sealed source URL (never the cleartext) and every table's plan.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from worker.core.errors import TargetError
from worker.core.model import TablePlan
from worker.core.serverpaths import on_volume
from worker.state.jobfiles import write_json_atomic

MANIFEST = "manifest.json"


def write_manifest(job_dir: Path, job: dict[str, Any], tables: list[TablePlan],
                   objects: list[dict[str, Any]]) -> None:
    write_json_atomic(job_dir / MANIFEST, {
        "version": 1, "job": job, "tables": [t.to_dict() for t in tables], "objects": objects,
    })


def read_manifest(job_dir: Path) -> tuple[dict[str, Any], list[TablePlan], list[dict[str, Any]]]:
    path = job_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _missing(path) from None
    return data["job"], [TablePlan.from_dict(t) for t in data["tables"]], data["objects"]


def table_plan(job_dir: Path, name: str) -> TablePlan:
    """One table's plan. Each table's task asks: the manifest is parsed once per version of
    the file, not once per table (200 tables: 200 parses of all 200 plans)."""
    path = job_dir / MANIFEST
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _missing(path) from None
    tables = _tables_by_name(str(path), (st.st_ino, st.st_mtime_ns, st.st_size))
    if name not in tables:
        raise TargetError(f"table {name!r} is not in the job's plan")
    return TablePlan.from_dict(copy.deepcopy(tables[name]))


@functools.lru_cache(maxsize=8)
def _tables_by_name(path: str, version: tuple[int, int, int]) -> dict[str, dict[str, Any]]:
    # `version` (inode, mtime, size) changes with every write: write_json_atomic renames a
    # new file into place.
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {t["name"]: t for t in data["tables"]}


def _missing(path: Path) -> TargetError:
    return TargetError(f"the job's manifest {on_volume(path)} is missing: plan the job again "
                       "(`liteshift retry`)")
