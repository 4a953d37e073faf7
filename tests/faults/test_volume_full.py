"""The data volume is too small, or fills up mid-copy (a real tmpfs as the data directory).

Pre-flight refuses a source that will not fit, naming the sizes. When space runs out anyway,
the table fails saying the volume is full and how much is needed; once space is freed, `retry`
finishes the job from its checkpoints; no partial file is ever published.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from faults.support import assert_exactly_once, make_narrow_tables, table_states
from worker.jobs import control


@pytest.fixture
def small_volume(settings_env):
    """`mount(size_mb)`: make the test's data directory a tmpfs of that size."""
    mounted: list[Path] = []

    def mount(size_mb: int) -> Path:
        path = settings_env.data_dir
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                               str(path)], capture_output=True, text=True)
        if done.returncode:
            pytest.fail(f"cannot mount a tmpfs on {path} ({done.stderr.strip()}): this test "
                        "needs root (or CAP_SYS_ADMIN) for `mount -t tmpfs`")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(volume: Path, leave_bytes: int) -> Path:
    """A ballast file that leaves about `leave_bytes` free on the volume."""
    ballast = volume / "ballast.bin"
    free = os.statvfs(volume).f_bavail * os.statvfs(volume).f_frsize
    with open(ballast, "wb") as handle:
        remaining = max(0, free - leave_bytes)
        block = b"\0" * (1 << 20)
        while remaining > 0:
            handle.write(block[:remaining])
            remaining -= min(remaining, len(block))
    return ballast


def test_preflight_refuses_a_source_bigger_than_the_volume(small_volume, pg_db, settings_env,
                                                          store, send, worker_proc, wait_for):
    # Given a 40 MB volume and a source of about 27 MB (the copy needs twice that, plus slack)
    volume = small_volume(40)
    make_narrow_tables(pg_db, {"big": 400_000})
    source_mb = pg_db.execute("SELECT pg_total_relation_size('big')")[0][0] / 1024 / 1024
    worker = worker_proc()

    # When a job is submitted
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="big")
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])

    # Then planning refuses it, naming what is needed and what is free, and writes nothing
    assert view["state"] == "failed"
    error = view["error"]
    assert "not enough space on the data volume:" in error and str(volume) not in error
    assert f"twice the source's {source_mb:,.0f} MB" in error
    assert "MB is free" in error and "free some space or use a larger volume" in error
    assert view["tables"] == []
    assert sorted(os.listdir(volume)) == [".liteshift"]
    assert not (settings_env.job_dir(job_id) / "tables").exists()


def test_volume_full_mid_copy_fails_the_table_then_retry_finishes(
        small_volume, pg_db, settings_env, store, send, worker_proc, wait_for, wait_until,
        publish_watch):
    # Given a 128 MB volume, enough for the plan, and a job copying a 300,000-row table
    volume = small_volume(128)
    sizes = {"vf": 300_000, "vg": 20_000}
    make_narrow_tables(pg_db, sizes)
    watch = publish_watch(volume, "full", sizes)
    worker = worker_proc()
    # (no snapshot: a retry of a failed one-moment job copies every table again under a new
    # snapshot; resuming from the checkpoints is what this test proves)
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="full",
                                options={"chunk_rows": 4000, "snapshot": False})
    wait_until(lambda: (table_states(store, job_id).get("vf") or {}).get("rows_done"), 60,
               "vf's first chunk")

    # When the volume fills up mid-copy (the worker paused while the ballast is written)
    os.killpg(worker.proc.pid, signal.SIGSTOP)
    try:
        ballast = fill(volume, leave_bytes=256 * 1024)
    finally:
        os.killpg(worker.proc.pid, signal.SIGCONT)
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])

    # Then the table fails saying the volume is full and how much it needs, and nothing is
    # published
    assert view["state"] == "failed", view
    failed = {t["name"]: t for t in view["tables"] if t["state"] == "failed"}
    assert "vf" in failed, view
    error = failed["vf"]["error"]
    assert "the data volume is full" in error
    assert "The job needs about" in error and "MB is free now" in error, error
    assert "liteshift retry" in error
    assert str(volume) not in error and str(volume) not in view["error"]
    assert not (volume / "full.db").exists()

    # When space is freed and the job is retried
    ballast.unlink()
    assert control.retry_job(store, send, job_id) == sorted(failed)
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])
    watch.stop()

    # Then it finishes from the checkpoints, every row once, and the file appeared complete
    assert view["state"] == "done", view
    assert table_states(store, job_id)["vf"]["attempts"] == 2
    assert_exactly_once(settings_env, store, job_id, "full", sizes)
    assert watch.problems == []
    assert set(watch.seen) <= {"full.db", "full.report.json", "full.report.json.tmp"}
