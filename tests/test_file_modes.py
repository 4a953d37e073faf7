"""Every file a job leaves on the volume is its owner's only (0600, directories 0700), or
also its group's when LITESHIFT_FILE_GROUP names one (0640, 0750), whatever the umask lets
through: a real worker copies, publishes, verifies and serves a download."""

from __future__ import annotations

import grp
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from worker.core import filemodes
from worker.core.config import Settings
from worker.jobs import control


def modes(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and directory under root (not root itself): its mode and group."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            st = path.lstat()
            found[str(path.relative_to(root))] = (oct(stat.S_IMODE(st.st_mode)), st.st_gid)
    return found


def run_a_job(settings: Settings, store, send, pg_db, worker_proc, wait_for, wait_until,
              target: str) -> None:
    filemodes.configure(settings.file_group)  # as the API does at start (it writes job.json)
    pg_db.execute("CREATE TABLE secret (id int PRIMARY KEY, card text)")
    pg_db.execute("INSERT INTO secret SELECT i, 'card ' || i FROM generate_series(1, 200) i")
    worker = worker_proc()
    job_id = control.submit_job(settings, store, send, source=pg_db.url, target=target,
                                options={"chunk_rows": 50})
    assert wait_for(store, job_id, ["done", "failed"], workers=[worker])["state"] == "done"
    control.request_verify(store, send, job_id, against_source=False)
    wait_until(lambda: (settings.job_dir(job_id) / "verification.json").exists(), 30,
               "the verification", workers=[worker])
    with TestClient(create_app(settings, store=store, send=send, probe=lambda *a: [])) as api:
        assert api.get(f"/jobs/{job_id}/download").status_code == 200
    # an app reading the published file (SQLite's -wal/-shm, if it makes any, take its mode)
    with sqlite3.connect(settings.data_dir / f"{target}.db") as db:
        assert db.execute("SELECT count(*) FROM secret").fetchone() == (200,)


def test_files_are_the_owners_only(settings_env, store, send, pg_db, worker_proc, wait_for,
                                   wait_until):
    # Given a permissive umask (what the container gives), when a job runs to the end
    umask = os.umask(0o022)
    try:
        run_a_job(settings_env, store, send, pg_db, worker_proc, wait_for, wait_until, "modes")
    finally:
        os.umask(umask)
        filemodes.configure(None)

    # Then every file and directory it left is 0600 / 0700
    found = modes(settings_env.data_dir)
    for expected in ("modes.db", "modes.report.json", ".liteshift/secret.key"):
        assert expected in found, sorted(found)
    assert any(name.endswith("job.json") for name in found)
    assert any(name.endswith("manifest.json") for name in found)
    assert any(name.endswith("outcome.json") for name in found)
    assert any(name.endswith("verification.json") for name in found)
    assert any(name.startswith(".liteshift/downloads/") for name in found)
    wrong = {name: mode for name, (mode, _) in found.items()
             if mode != ("0o700" if (settings_env.data_dir / name).is_dir() else "0o600")}
    assert wrong == {}


def test_a_configured_group_may_read(settings_env, store, send, pg_db, worker_proc, wait_for,
                                     wait_until, monkeypatch: pytest.MonkeyPatch):
    # Given a group other than ours, named for the workers and the API
    other = next((g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getgid()), None)
    if other is None or os.geteuid() != 0:
        pytest.fail("this test needs root and a second group (see `getent group`)")
    monkeypatch.setenv("LITESHIFT_FILE_GROUP", str(other))
    settings = Settings()
    umask = os.umask(0o022)
    try:
        run_a_job(settings, store, send, pg_db, worker_proc, wait_for, wait_until, "grouped")
    finally:
        os.umask(umask)
        filemodes.configure(None)

    # Then files are 0640 and directories 0750, of that group
    found = modes(settings.data_dir)
    assert "grouped.db" in found and ".liteshift/secret.key" in found
    wrong = {name: (mode, gid) for name, (mode, gid) in found.items()
             if (mode, gid) != ("0o750" if (settings.data_dir / name).is_dir() else "0o640",
                                other)}
    assert wrong == {}
