"""When a snapshot holder counts its copying job as left without workers (the clock behind
LITESHIFT_SNAPSHOT_IDLE_TIMEOUT_S); tests/test_snapshot_pg.py runs the whole thing with real
workers killed -9."""

from __future__ import annotations

import pytest

from worker.jobs import snapshot_holder
from worker.jobs.snapshot_holder import Unattended

COPYING = {"id": "j", "state": "copying", "tables": ["t"]}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(snapshot_holder.time, "monotonic", lambda: now[0])
    return now


def test_expires_only_after_the_timeout_without_any_worker(clock):
    watch = Unattended(10, attended=lambda job: False)

    assert not watch.expired(COPYING)  # the clock starts
    clock[0] += 9
    assert not watch.expired(COPYING)
    clock[0] += snapshot_holder.IDLE_CHECK_S  # past the timeout, at the next look
    assert watch.expired(COPYING)


def test_a_worker_seen_restarts_the_clock(clock):
    attended = [False]
    watch = Unattended(10, attended=lambda job: attended[0])

    watch.expired(COPYING)
    clock[0] += 8
    attended[0] = True
    assert not watch.expired(COPYING)
    attended[0] = False
    clock[0] += 8
    assert not watch.expired(COPYING)  # 8 s since the worker was last seen
    clock[0] += 10
    assert watch.expired(COPYING)


def test_only_a_copying_job_is_timed(clock):
    watch = Unattended(1, attended=lambda job: False)

    for _ in range(3):
        clock[0] += 5
        assert not watch.expired({**COPYING, "state": "planning"})


def test_workers_are_looked_for_at_most_every_check_period(clock):
    looks: list[float] = []
    watch = Unattended(60, attended=lambda job: looks.append(clock[0]) or True)

    for _ in range(10):
        watch.expired(COPYING)
        clock[0] += snapshot_holder.IDLE_CHECK_S / 4

    assert len(looks) == 3
