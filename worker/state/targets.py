"""What a target name may be, and where a target's files live."""

from __future__ import annotations

import re
from pathlib import Path

from worker.core.errors import InputError

TARGET_RE = re.compile(r"[A-Za-z0-9_]{1,64}")


def check_target(name: str) -> str:
    """Accept only names that cannot escape the data directory or surprise a shell."""
    if not isinstance(name, str) or not TARGET_RE.fullmatch(name):
        raise InputError(
            f"target name {name!r} is not allowed: use 1 to 64 letters, digits or underscores "
            "(it becomes <data dir>/<target>.db)"
        )
    return name


def published_path(data_dir: Path, target: str) -> Path:
    return data_dir / f"{check_target(target)}.db"


def report_path(data_dir: Path, target: str) -> Path:
    return data_dir / f"{check_target(target)}.report.json"
