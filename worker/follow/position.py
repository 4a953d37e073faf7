"""The followed file's own record of how far it is: committed with the changes it covers.

`_liteshift_follow` (one row): the last applied change's place `(txn, ordinal)` (see
worker/follow/changes.py), the position the source may release up to (`resume`), and the
fencing token of the follower that last wrote (a follower that lost its lease without
knowing it stops at its next commit). `_liteshift_follow_tables`: each table's row count
and checksum, kept up to date change by change, so cutover reports them without reading
the tables again, and its lossy counts (JSON, per column: values the type rules could not
store exactly, the copy's and then every applied row's), committed with the batch that
wrote the values so a follower killed and resumed counts each once. Both are dropped at
cutover, just before the file is published.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

from worker.core.errors import LeaseLost
from worker.follow.changes import START, Position, add_lossy

STATE = "_liteshift_follow"
TABLES = "_liteshift_follow_tables"
DDL = (f"CREATE TABLE IF NOT EXISTS {STATE} (id INTEGER PRIMARY KEY CHECK (id = 1), "
       "txn INTEGER NOT NULL, ordinal INTEGER NOT NULL, resume INTEGER NOT NULL, "
       "token INTEGER NOT NULL, changes INTEGER NOT NULL)",
       f"CREATE TABLE IF NOT EXISTS {TABLES} (name TEXT PRIMARY KEY, rows INTEGER NOT NULL, "
       "checksum TEXT NOT NULL, lossy TEXT NOT NULL DEFAULT '{}')")


@dataclass
class Followed:
    position: Position
    resume: int
    token: int
    changes: int  # applied since the copy


def start(db: sqlite3.Connection, counts: dict[str, tuple[int, int]], *, resume: int,
          lossy: dict[str, dict[str, int]] | None = None) -> None:
    """Record the starting point in the built file (rows, checksum and lossy counts of each
    table as copied; nothing applied); does nothing when it is already there."""
    lossy = lossy or {}
    with db:
        for statement in DDL:
            db.execute(statement)
        if db.execute(f"SELECT 1 FROM {STATE}").fetchone():
            return
        db.execute(f"INSERT INTO {STATE} VALUES (1, ?, ?, ?, 0, 0)", (*START, resume))
        db.executemany(f"INSERT INTO {TABLES} VALUES (?, ?, ?, ?)",
                       [(name, rows, f"{checksum:016x}", json.dumps(lossy.get(name) or {}))
                        for name, (rows, checksum) in counts.items()])


def upgrade(db: sqlite3.Connection) -> None:
    """A file a follower from before the lossy counts started: give it the column."""
    columns = {r[1] for r in db.execute(f"PRAGMA table_info({TABLES})")}
    if columns and "lossy" not in columns:
        with db:
            db.execute(f"ALTER TABLE {TABLES} ADD COLUMN lossy TEXT NOT NULL DEFAULT '{{}}'")


def present(db: sqlite3.Connection) -> bool:
    return bool(db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (STATE,)).fetchone())


def read(db: sqlite3.Connection) -> Followed:
    txn, ordinal, resume, token, changes = db.execute(
        f"SELECT txn, ordinal, resume, token, changes FROM {STATE}").fetchone()
    return Followed((txn, ordinal), resume, token, changes)


def counts(db: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    return {name: (rows, int(checksum, 16))
            for name, rows, checksum in db.execute(f"SELECT name, rows, checksum FROM {TABLES}")}


def lossy(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Each table's lossy counts per column: the copy's and the applied changes'."""
    return {name: json.loads(counted) for name, counted in
            db.execute(f"SELECT name, lossy FROM {TABLES}")}


def fence(db: sqlite3.Connection, token: int) -> None:
    """Inside the batch's transaction: refuse to commit for a follower whose lease was
    taken over (a newer token wrote here)."""
    (recorded,) = db.execute(f"SELECT token FROM {STATE}").fetchone()
    if recorded > token:
        raise LeaseLost("another follower took this job over")


def save(db: sqlite3.Connection, followed: Followed, tables: dict[str, tuple[int, int]],
         lossy: dict[str, dict[str, int]], *, emptied: Collection[str] = ()) -> None:
    """Inside the batch's transaction, with its changes; `lossy` is what the batch's rows
    add to each table's counts, after the tables it `emptied` (truncated) start at zero."""
    db.executemany(f"UPDATE {TABLES} SET lossy = '{{}}' WHERE name = ?",
                   [(name,) for name in emptied])
    db.execute(f"UPDATE {STATE} SET txn = ?, ordinal = ?, resume = ?, token = ?, changes = ?",
               (*followed.position, followed.resume, followed.token, followed.changes))
    db.executemany(f"UPDATE {TABLES} SET rows = ?, checksum = ? WHERE name = ?",
                   [(rows, f"{checksum:016x}", name)
                    for name, (rows, checksum) in tables.items()])
    for name, added in lossy.items():
        if not added:
            continue
        (counted,) = db.execute(f"SELECT lossy FROM {TABLES} WHERE name = ?", (name,)).fetchone()
        db.execute(f"UPDATE {TABLES} SET lossy = ? WHERE name = ?",
                   (json.dumps(add_lossy(json.loads(counted), added)), name))


def finish(db: sqlite3.Connection) -> None:
    """Drop the follow's tables: the file becomes what an app reads."""
    with db:
        db.execute(f"DROP TABLE IF EXISTS {STATE}")
        db.execute(f"DROP TABLE IF EXISTS {TABLES}")
