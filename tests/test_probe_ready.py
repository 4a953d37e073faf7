"""The API keeps one source probe started ahead (api/source_check.py): it serves the next
submission only when nothing changed since it started, and is replaced after each use."""

from __future__ import annotations

import asyncio
import signal

import pytest
from faults.support import make_narrow_tables

from api import source_check as probe
from worker.core.config import Settings
from worker.sources.standby import Standby


@pytest.fixture
def keeping_one_ready(monkeypatch):
    standby = Standby(lambda: probe._spawn(probe.DEFAULT_COMMAND))
    monkeypatch.setattr(probe, "_standby", standby)
    started: list = []
    spawn = probe._spawn
    monkeypatch.setattr(probe, "_spawn",
                        lambda command: started.append(spawn(command)) or started[-1])
    yield started
    standby.stop()


def test_a_probe_kept_ready_answers_the_next_submission_only_unchanged(
        pg_db, tmp_path, keeping_one_ready, monkeypatch):
    # Given a source, and a probe started ahead
    make_narrow_tables(pg_db, {"one": 1})
    settings = Settings(data_dir=tmp_path, probe_timeout_s=30)
    started = keeping_one_ready
    probe.keep_one_ready()

    # When a submission probes the source, Then the ready probe answers and another is ready
    assert asyncio.run(probe.run_probe(settings, pg_db.url, "public")) == ["one"]
    assert len(started) == 2 and started[0].returncode == 0
    assert probe._standby.kept is not None and probe._standby.kept.proc is started[1]

    # When the environment changed since it started, Then it is not used but replaced
    monkeypatch.setenv("LITESHIFT_CHUNK_ROWS", "7")
    assert asyncio.run(probe.run_probe(settings, pg_db.url, "public")) == ["one"]
    assert started[1].returncode == -signal.SIGKILL
    assert len(started) == 4 and probe._standby.kept.proc is started[3]


def test_a_probe_kept_ready_exits_quietly_when_the_api_goes(keeping_one_ready):
    probe.keep_one_ready()
    ready = keeping_one_ready[0]
    ready.stdin.close()  # what the API's exit does to its end of the pipe
    assert ready.wait(timeout=30) == 0
    assert ready.stdout.read() == b"" and ready.stderr.read() == b""
