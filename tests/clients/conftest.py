"""Fixtures for the real-client tier: a fresh MariaDB database per test (PostgreSQL's, the
workers, Redis and the settings come from tests/conftest.py), and the comparison of what a
framework reads from the source, from liteshift's file, and from a file it wrote itself."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mysql.connector
import pytest

from worker.jobs import control

MY_URL = "mysql://root@127.0.0.1:3306/{name}"


@pytest.fixture
def my_database() -> Iterator[str]:
    """A fresh utf8mb4 MariaDB database; its URL."""
    name = f"lsclient_{uuid.uuid4().hex[:12]}"
    try:
        conn = mysql.connector.connect(host="127.0.0.1", port=3306, user="root",
                                       autocommit=True, connection_timeout=5)
    except mysql.connector.Error as exc:
        pytest.fail(f"MariaDB is not reachable as root@127.0.0.1:3306 ({exc}): start it with "
                    "`start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`",
                    pytrace=False)
    conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                          "COLLATE utf8mb4_unicode_ci")
    try:
        yield MY_URL.format(name=name)
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture
def copy_with_profile(settings_env: Any, store: Any, send: Any, worker_proc: Any,
                      wait_for: Any) -> Callable[[str, str], tuple[Path, dict[str, Any]]]:
    """`copy(source_url, profile)`: liteshift's file of the source, through a real worker,
    and its report."""
    worker = worker_proc()

    def copy(source: str, profile: str) -> tuple[Path, dict[str, Any]]:
        target = f"app_{profile}"
        job_id = control.submit_job(settings_env, store, send, source=source, target=target,
                                    options={"profile": profile})
        view = wait_for(store, job_id, ["done", "failed"], timeout=120, workers=[worker])
        assert view["state"] == "done", json.dumps(view, indent=1, default=str)[:4000]
        report = json.loads((settings_env.data_dir / f"{target}.report.json").read_text())
        return settings_env.data_dir / f"{target}.db", report
    return copy


def flatten(observed: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """One entry per value: (rows, model, pk, field), (queries, name), (writes, name)."""
    flat: dict[tuple[str, ...], Any] = {}
    for model, rows in observed["rows"].items():
        for pk, row in rows.items():
            flat.update({("rows", model, pk, field): v for field, v in row.items()})
            flat[("rows", model, pk)] = "present"
    for part in ("queries", "writes"):
        flat.update({(part, name): v for name, v in observed[part].items()})
    return flat


def compare(source: Any, copied: Any, own: Any) -> tuple[int, list[str], list[str]]:
    """How many values were compared, the differences liteshift's file has that the
    framework's own SQLite file has too (inherent), and the others (ours)."""
    src, cp, fresh = flatten(source), flatten(copied), flatten(own)
    inherent, ours = [], []
    for key in sorted(set(src) | set(cp)):
        if src.get(key) == cp.get(key):
            continue
        line = f"{'/'.join(key)}: source {src.get(key)!r}, file {cp.get(key)!r}"
        if fresh.get(key, src.get(key)) != src.get(key):
            inherent.append(f"{line}, the framework's own file {fresh.get(key)!r}")
        else:
            ours.append(line)
    return len(src), inherent, ours
