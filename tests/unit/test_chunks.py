"""The chunk loop's pure parts: chunks bounded by rows and by bytes, starting small, with a
checksum that adds up to the table's and the key of their last row; and the ETA's rate."""

from __future__ import annotations

import time
from itertools import islice

from worker.core.checksum import fold, rows_checksum
from worker.sources.stub import StubSource, StubTable
from worker.sources.url import SourceURL
from worker.sqlite.chunks import Chunk, RecentRate, _read_ahead, make_chunks, ramp

URL = SourceURL(kind="stub", scheme="stub", host="stub", port=0, database="stub", user="stub")


def plan_of(table: StubTable):
    source = StubSource([table])
    with source.connect(URL) as conn:
        schema = source.reflect(URL, conn, "public", [table.name])
    return source.translate(schema).tables[0]


def test_chunks_start_small_and_double_up_to_chunk_rows():
    assert list(islice(ramp(100_000), 7)) == [6250, 12500, 25000, 50000, 100000, 100000,
                                              100000]
    assert list(islice(ramp(10), 3)) == [1, 2, 4]


def test_chunks_hold_every_row_once_with_their_checksum_and_last_key():
    rows = [(i, f"row {i}") for i in range(1, 1001)]
    plan = plan_of(StubTable("items", [("id", "INTEGER"), ("body", "TEXT")], rows, key=["id"]))

    chunks = list(make_chunks(iter(rows), plan, chunk_rows=160, chunk_bytes=1 << 20))

    assert [c.row_count for c in chunks] == [10, 20, 40, 80, 160, 160, 160, 160, 160, 50]
    assert [row for c in chunks for row in c.rows] == rows
    total = 0
    for chunk in chunks:
        assert chunk.checksum == rows_checksum(chunk.rows)
        assert chunk.last_key == [chunk.rows[-1][0]]
        total = fold(total, chunk.checksum)
    assert total == rows_checksum(rows)


def test_wide_rows_end_a_chunk_at_its_byte_bound():
    rows = [(i, "x" * 10_000) for i in range(1, 101)]
    plan = plan_of(StubTable("blobs", [("id", "INTEGER"), ("body", "TEXT")], rows, key=["id"]))

    chunks = list(make_chunks(iter(rows), plan, chunk_rows=1000, chunk_bytes=50_000))

    assert sum(c.row_count for c in chunks) == 100
    assert all(c.size_bytes < 50_000 + 10_100 for c in chunks)  # at most one row past it
    assert max(c.row_count for c in chunks) <= 5


def test_the_rate_follows_the_recent_commits_from_the_second_one_on():
    rate = RecentRate()

    assert rate.add(1.0, 100) is None  # one commit: no pace yet
    assert rate.add(2.0, 300) == 200.0
    assert rate.add(13.0, 1400) == 100.0  # the first commit has left the window


def test_a_chunk_of_big_rows_is_read_ahead_of_nothing():
    # Given a producer of chunks: small ones, then one far past the byte bound
    events: list[str] = []

    def make():
        for size in (10, 10, 100, 10, 10):
            events.append(f"made {size}")
            yield Chunk(b"", 1, 0, size, None)

    # When the writer takes them, slowly
    taken = []
    for chunk in _read_ahead(make, alone_bytes=50):
        time.sleep(0.05)  # the producer, free to run ahead, would have made the next
        events.append(f"done {chunk.size_bytes}")
        taken.append(chunk.size_bytes)
        del chunk

    # Then nothing was read after the big one until the writer was done with it
    assert taken == [10, 10, 100, 10, 10]
    made, done = events.index("made 100"), events.index("done 100")
    assert not [e for e in events[made + 1:done] if e.startswith("made")], events
    assert events[done + 1] == "made 10", events
