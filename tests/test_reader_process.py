"""Big tables are read in a child process (worker/sources/reader_process.py): the same chunks as
in-process, the source's errors as ours, and no reader outliving a worker killed -9.

(`LITESHIFT_READER_PROCESS_BYTES=0 ops/test.sh` runs the whole suite with every table read
this way.)"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from faults.support import (
    assert_exactly_once,
    children,
    make_narrow_tables,
    rows_done,
)

from worker import sources
from worker.core.errors import SourceRejected
from worker.jobs import control
from worker.sources import reader_process
from worker.sources.postgres import source as pg_source
from worker.sources.postgres.translate import translate
from worker.sources.reader_process import chunks_from_child
from worker.sources.standby import Standby
from worker.sources.url import parse_source_url
from worker.sqlite.chunks import make_chunks

FIXTURE = Path(__file__).with_name("pg_fidelity.sql")  # every type we convert


def plans_of(url: str) -> list:
    source = parse_source_url(url)
    with pg_source.connect(source) as conn:
        names = pg_source.list_tables(conn, "public")
        return translate(pg_source.reflect(source, conn, "public", names)).tables


def in_process(url: str, plan, after=None) -> list:
    reader = sources.for_kind("postgres")
    with reader.connect(parse_source_url(url)) as conn:
        rows = reader.stream_table(conn, schema="public", plan=plan, after=after)
        return list(make_chunks(rows, plan, chunk_rows=3, chunk_bytes=1 << 20))


def in_child(url: str, plan, after=None) -> list:
    return kept(chunks_from_child(source_url=url, schema="public", plan=plan, after=after,
                                  chunk_rows=3, chunk_bytes=1 << 20, connect_timeout_s=5))


def kept(chunks) -> list:
    """The chunks with their payloads copied: a child's payload is a view of a buffer that
    the next chunk reuses."""
    return [replace(c, payload=bytes(c.payload)) for c in chunks]


def test_a_child_reads_the_same_chunks_as_the_worker_would(pg_db):
    # Given every type the fidelity fixture has
    with pg_db.connect() as conn:
        conn.execute(FIXTURE.read_text(encoding="utf-8"))
    plans = plans_of(pg_db.url)
    assert len(plans) > 3

    # When each table is read in a child and in this process, from the start and resumed
    for plan in plans:
        here, there = in_process(pg_db.url, plan), in_child(pg_db.url, plan)

        # Then the chunks are equal: rows, checksums, sizes, last keys and lossy counts
        assert [vars(c) for c in there] == [vars(c) for c in here], plan.name
        if plan.key and len(here) > 1:
            after = here[0].last_key
            assert [vars(c) for c in in_child(pg_db.url, plan, after)] == \
                [vars(c) for c in in_process(pg_db.url, plan, after)], plan.name


def test_the_childs_source_errors_are_ours_and_name_no_password(pg_db):
    # Given a table that is dropped after planning, and a wrong password
    make_narrow_tables(pg_db, {"gone": 10})
    plan = plans_of(pg_db.url)[0]
    with pg_db.connect() as conn:
        conn.execute('DROP TABLE "gone"')

    # Then the child's errors come back as liteshift's, with what to do
    with pytest.raises(SourceRejected, match="does not exist"):
        in_child(pg_db.url, plan)
    wrong = pg_db.url.replace("postgres@", "nobody_here:Sekr1t-pw@")
    with pytest.raises(SourceRejected) as caught:
        in_child(wrong, plan)
    assert "Sekr1t-pw" not in str(caught.value)


def reader_children(pid: int) -> list[int]:
    return [c for c in children(pid)
            if b"worker.sources.reader_process" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_a_reader_dies_with_its_worker_and_the_copy_resumes_exactly_once(
        pg_db, settings_env, store, send, worker_proc, wait_for, wait_until, monkeypatch):
    # Given every table read in a child, and a worker copying a big table
    monkeypatch.setenv("LITESHIFT_READER_PROCESS_BYTES", "0")
    sizes = {"big": 600_000}
    make_narrow_tables(pg_db, sizes)
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="kid",
                                options={"chunk_rows": 5000})
    wait_until(lambda: rows_done(store, job_id) > 50_000, 60, "the copy to be under way")
    readers = reader_children(worker.proc.pid)
    assert readers, "no reader process under the worker"

    # When only the worker's process is killed -9 (not its group: the reader is orphaned)
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)

    # Then the reader exits by itself once its pipe is gone
    def gone() -> bool:
        return not any(Path(f"/proc/{r}").exists() and
                       "Z" not in Path(f"/proc/{r}/stat").read_text().split(")")[1][:3]
                       for r in readers)
    wait_until(gone, 30, "the orphaned reader to exit")

    # and a new worker finishes the job with every row exactly once
    worker = worker_proc()
    view = wait_for(store, job_id, ["done", "failed"], timeout=120, workers=[worker])
    assert view["state"] == "done", view
    assert_exactly_once(settings_env, store, job_id, "kid", sizes)


def test_a_reader_stopped_and_continued_mid_write_still_hands_over_whole_chunks(pg_db):
    # Given a table whose chunks are far bigger than a pipe's buffer
    make_narrow_tables(pg_db, {"paused": 400_000})
    plan = plans_of(pg_db.url)[0]
    expected = in_process(pg_db.url, plan)  # 3-row chunks: compare the sums, not the chunks
    chunks = chunks_from_child(source_url=pg_db.url, schema="public", plan=plan, after=None,
                               chunk_rows=50_000, chunk_bytes=1 << 24, connect_timeout_s=5)

    # When the reader is frozen and thawed again and again while it writes (SIGSTOP makes
    # pipe writes partial: Python's buffered stdout once corrupted the stream on it)
    first = kept([next(chunks)])[0]
    reader = reader_children(os.getpid())[0]
    done = threading.Event()

    def freeze_and_thaw() -> None:
        while not done.is_set():
            try:
                os.kill(reader, signal.SIGSTOP)
                time.sleep(0.02)
                os.kill(reader, signal.SIGCONT)
            except ProcessLookupError:
                return  # the reader finished
            time.sleep(0.03)

    pauser = threading.Thread(target=freeze_and_thaw, daemon=True)
    pauser.start()
    try:
        rest = kept(chunks)
    finally:
        done.set()
        pauser.join()

    # Then every chunk arrived whole: the same rows and checksum as read in this process
    got = [first, *rest]
    assert sum(len(c.rows) for c in got) == sum(len(c.rows) for c in expected) == 400_000
    assert sum(c.checksum for c in got) % 2**64 == sum(c.checksum for c in expected) % 2**64


def test_a_childs_chunk_kept_past_the_next_one_fails_loudly(pg_db):
    # Given a child's chunks, whose payloads share one buffer
    make_narrow_tables(pg_db, {"reused": 10})
    plan = plans_of(pg_db.url)[0]
    chunks = chunks_from_child(source_url=pg_db.url, schema="public", plan=plan, after=None,
                               chunk_rows=3, chunk_bytes=1 << 20, connect_timeout_s=5)
    first = next(chunks)
    assert first.rows

    # When the next one is read, Then the first one's rows can no longer be read at all
    next(chunks)
    with pytest.raises(ValueError, match="released"):
        _ = first.rows
    chunks.close()


@pytest.fixture
def keeping_one_ready(monkeypatch):
    standby = Standby(lambda: reader_process._spawn())
    monkeypatch.setattr(reader_process, "_standby", standby)
    monkeypatch.setattr(reader_process, "_keep_ready", False)
    yield reader_process
    monkeypatch.setattr(reader_process, "_keep_ready", False)
    standby.stop()


def test_a_reader_kept_ready_serves_the_next_table_only_unchanged(pg_db, keeping_one_ready,
                                                                   monkeypatch):
    # Given a worker process that keeps a reader ready
    make_narrow_tables(pg_db, {"ready": 100})
    plan = plans_of(pg_db.url)[0]
    started = []
    spawn = keeping_one_ready._spawn
    monkeypatch.setattr(keeping_one_ready, "_spawn", lambda: started.append(spawn()) or
                        started[-1])
    keeping_one_ready.keep_one_ready()

    # When a table is read, Then the ready reader reads it, and another is made ready
    assert sum(c.row_count for c in in_child(pg_db.url, plan)) == 100
    assert len(started) == 2 and started[0].poll() is not None
    assert keeping_one_ready._standby.kept.proc is started[1] and started[1].poll() is None

    # When the environment changed since it started, Then it is not used but replaced
    monkeypatch.setenv("LITESHIFT_CHUNK_ROWS", "7")
    assert sum(c.row_count for c in in_child(pg_db.url, plan)) == 100
    assert started[1].wait(timeout=5) == -signal.SIGKILL
    assert len(started) == 4 and keeping_one_ready._standby.kept.proc is started[3]


def test_a_reader_kept_ready_exits_quietly_when_its_worker_goes(keeping_one_ready):
    keeping_one_ready.keep_one_ready()
    ready = keeping_one_ready._standby.kept.proc
    ready.stdin.close()  # what the worker's exit does to its end of the pipe
    assert ready.wait(timeout=10) == 0
    assert ready.stdout.read() == b""
