"""The follow's lossy counts in the file (worker/follow/apply.py, position.py): what a batch
adds, what a TRUNCATE resets, committed with the batch or not at all. No service: a stub
plan and a conversion that calls a value lossy when it says so."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from worker.core.errors import LeaseLost
from worker.follow import position
from worker.follow.apply import Applier, Batch
from worker.follow.changes import WHOLE, Converted, Row, Truncate
from worker.sources.stub import StubSource, StubTable
from worker.sources.url import SourceURL

URL = SourceURL(kind="stub", scheme="stub", host="stub", port=0, database="stub", user="stub")


def _convert(table: str, rows: Sequence[list[str | None]]) -> Converted:
    """Values kept as they are; a price written as "lossy" is one the rules count."""
    lossy = sum(1 for row in rows if row[1] == "lossy")
    return Converted([(int(row[0] or 0), row[1]) for row in rows],
                     {"price": lossy} if lossy else {})


@pytest.fixture
def applier(tmp_path: Path) -> Applier:
    source = StubSource([StubTable("prices", [("id", "INTEGER"), ("price", "TEXT")], [],
                                   key=["id"])])
    with source.connect(URL) as conn:
        schema = source.reflect(URL, conn, "public", source.list_tables(conn, "public"))
    plan = source.translate(schema).tables[0]
    db = sqlite3.connect(tmp_path / "f.db")
    db.execute(plan.create_sql)
    position.start(db, {"prices": (0, 0)}, resume=0, lossy={"prices": {"price": 5}})
    return Applier(db, [plan])


def _insert(key: int, price: str) -> Row:
    return Row(table="prices", kind="insert", new=[str(key), price])


def _apply(applier: Applier, items: list[Row | Truncate], txn: int, token: int = 0) -> None:
    batch = Batch()
    for n, item in enumerate(items, 1):
        batch.add(item, (txn, n))
    batch.position, batch.resume = (txn, WHOLE), txn
    followed = position.read(applier.db)
    followed.token = token
    applier.apply(batch, _convert, followed)


def test_a_batch_adds_the_lossy_values_it_writes_to_the_copys(applier):
    _apply(applier, [_insert(1, "lossy"), _insert(2, "exact"), _insert(3, "lossy")], txn=1)
    _apply(applier, [Row(table="prices", kind="update", new=["1", "lossy"], old=["1", None])],
           txn=2)
    assert position.lossy(applier.db) == {"prices": {"price": 5 + 2 + 1}}


def test_a_truncate_starts_the_count_again_even_inside_a_batch(applier):
    _apply(applier, [_insert(1, "lossy"), Truncate(["prices"]), _insert(2, "lossy"),
                _insert(3, "exact")], txn=1)
    assert position.lossy(applier.db) == {"prices": {"price": 1}}


def test_a_batch_refused_at_commit_adds_nothing(applier):
    _apply(applier, [_insert(1, "lossy")], txn=1, token=5)
    with pytest.raises(LeaseLost):  # a follower whose lease was taken over
        _apply(applier, [_insert(2, "lossy")], txn=2, token=4)
    assert position.lossy(applier.db) == {"prices": {"price": 6}}
    assert position.read(applier.db).position == (1, WHOLE)
