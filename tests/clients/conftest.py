"""The real-client tier's fixtures and its one scenario (reads_as_its_own), which Django and
ActiveRecord run alike: a fresh MariaDB database per test (PostgreSQL's, the
workers, Redis and the settings come from tests/conftest.py), and the comparison of what a
framework reads from the source, from liteshift's file, and from a file it wrote itself."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

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


class Source(NamedTuple):
    kind: str
    url: str


@pytest.fixture(params=["postgres", "mariadb"])
def source(request: pytest.FixtureRequest) -> Source:
    """The test's source database, once of each kind (a fresh one each time)."""
    fixture = "pg_db" if request.param == "postgres" else "my_database"
    value = request.getfixturevalue(fixture)
    return Source(request.param, value.url if request.param == "postgres" else value)


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


Client = Callable[[str, str], dict[str, Any]]


def client(name: str, command: Sequence[str], cwd: Path) -> Client:
    """`client(url, step)`: one step of a framework's scenario script against a database:
    `setup` (schema and rows) or `observe` (what the framework reads, as JSON)."""

    def run(url: str, step: str) -> dict[str, Any]:
        done = subprocess.run([*command, url, step], capture_output=True, text=True,
                              timeout=120, cwd=cwd)
        assert done.returncode == 0, f"{name} {step} on {url}:\n{done.stderr[-4000:]}"
        return json.loads(done.stdout) if step == "observe" else {}
    return run


def reads_as_its_own(framework: Client, *, name: str, profile: str, source: Source,
                     own: str, file_url: Callable[[Path], str],
                     copy_with_profile: Any) -> tuple[int, list[str], dict[str, Any]]:
    """The framework reads from liteshift's file what it reads from the source, except where
    it reads the same from its own SQLite file (`own`). Returns how many values were
    compared, those inherent differences, and the copy's report."""
    # Given the app's schema and rows in the source, and in a fresh SQLite file
    framework(source.url, "setup")
    framework(own, "setup")

    # When liteshift copies the source with the framework's profile
    copied, report = copy_with_profile(source.url, profile)

    # Then the framework reads from the file what it reads from the source, except where it
    # reads the same from its own file
    values, inherent, ours = compare(framework(source.url, "observe"),
                                     framework(file_url(copied), "observe"),
                                     framework(own, "observe"))
    print(f"\n{name} from {source.kind}: {values} values compared, {len(inherent)} inherent "
          "differences:\n  " + "\n  ".join(inherent))
    assert ours == [], "\n".join(ours)
    return values, inherent, report
