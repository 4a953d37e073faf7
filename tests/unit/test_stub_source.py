"""The stub source through the chunk loop: plan, copy, cut, resume. No service."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.core.checksum import rows_checksum
from worker.core.errors import SourceUnavailable
from worker.sources.stub import StubSource, StubTable
from worker.sources.url import SourceURL
from worker.sqlite.chunks import copy_rows
from worker.sqlite.workfile import Checkpoint, WorkFile

URL = SourceURL(kind="stub", scheme="stub", host="stub", port=0, database="stub", user="stub")


def test_a_stub_table_is_copied_in_key_order_and_resumed_after_a_cut(tmp_path: Path):
    # Given a table whose rows are stored out of order, and a connection cut after 250 rows
    rows = [(i, f"row {i}") for i in range(1, 601)]
    table = StubTable("items", [("id", "INTEGER"), ("body", "TEXT")], rows[::-1], key=["id"])
    source = StubSource([table], cut_after=250)
    with source.connect(URL) as conn:
        schema = source.reflect(URL, conn, "public", source.list_tables(conn, "public"))
    plan = source.translate(schema).tables[0]
    work = WorkFile(tmp_path / "tables" / plan.file, plan)
    try:
        def copy() -> Checkpoint:
            with source.connect(URL) as conn:
                return copy_rows(plan=plan, work=work, token=1, chunk_rows=100,
                                 chunk_bytes=1 << 20,
                                 source=lambda after: source.stream_table(
                                     conn, schema="public", plan=plan, after=after))

        # When the copy breaks, then runs again
        with pytest.raises(SourceUnavailable):
            copy()
        interrupted = work.checkpoint()
        final = copy()

        # Then whole chunks had committed before the cut, and the table holds every row
        # once, with the checksum of the rows in key order
        assert 0 < interrupted.rows < 250 and not interrupted.done
        assert final.done and final.rows == 600
        assert final.checksum == rows_checksum(rows)
        assert work.db.execute("SELECT id, body FROM items ORDER BY id").fetchall() == rows
    finally:
        work.close()
