"""The followed file's own record of how far it is: committed with the changes it covers.

`_liteshift_follow` (one row): the last applied change's place `(txn, ordinal)` (see
worker/follow/changes.py), the position the source may release up to (`resume`), and the
fencing token of the follower that last wrote (a follower that lost its lease without
knowing it stops at its next commit). `_liteshift_follow_tables`: each table's row count
and checksum, kept up to date change by change, so cutover reports them without reading
the tables again. Both are dropped at cutover, just before the file is published.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from worker.core.errors import LeaseLost
from worker.follow.changes import START, Position

STATE = "_liteshift_follow"
TABLES = "_liteshift_follow_tables"
DDL = (f"CREATE TABLE IF NOT EXISTS {STATE} (id INTEGER PRIMARY KEY CHECK (id = 1), "
       "txn INTEGER NOT NULL, ordinal INTEGER NOT NULL, resume INTEGER NOT NULL, "
       "token INTEGER NOT NULL, changes INTEGER NOT NULL)",
       f"CREATE TABLE IF NOT EXISTS {TABLES} (name TEXT PRIMARY KEY, rows INTEGER NOT NULL, "
       "checksum TEXT NOT NULL)")


@dataclass
class Followed:
    position: Position
    resume: int
    token: int
    changes: int  # applied since the copy


def start(db: sqlite3.Connection, counts: dict[str, tuple[int, int]], *, resume: int) -> None:
    """Record the starting point in the built file (rows and checksum of each table as
    built; nothing applied); does nothing when it is already there."""
    with db:
        for statement in DDL:
            db.execute(statement)
        if db.execute(f"SELECT 1 FROM {STATE}").fetchone():
            return
        db.execute(f"INSERT INTO {STATE} VALUES (1, ?, ?, ?, 0, 0)", (*START, resume))
        db.executemany(f"INSERT INTO {TABLES} VALUES (?, ?, ?)",
                       [(name, rows, f"{checksum:016x}")
                        for name, (rows, checksum) in counts.items()])


def present(db: sqlite3.Connection) -> bool:
    return bool(db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (STATE,)).fetchone())


def read(db: sqlite3.Connection) -> Followed:
    txn, ordinal, resume, token, changes = db.execute(
        f"SELECT txn, ordinal, resume, token, changes FROM {STATE}").fetchone()
    return Followed((txn, ordinal), resume, token, changes)


def counts(db: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    return {name: (rows, int(checksum, 16))
            for name, rows, checksum in db.execute(f"SELECT name, rows, checksum FROM {TABLES}")}


def fence(db: sqlite3.Connection, token: int) -> None:
    """Inside the batch's transaction: refuse to commit for a follower whose lease was
    taken over (a newer token wrote here)."""
    (recorded,) = db.execute(f"SELECT token FROM {STATE}").fetchone()
    if recorded > token:
        raise LeaseLost("another follower took this job over")


def save(db: sqlite3.Connection, followed: Followed,
         tables: dict[str, tuple[int, int]]) -> None:
    """Inside the batch's transaction, with its changes."""
    db.execute(f"UPDATE {STATE} SET txn = ?, ordinal = ?, resume = ?, token = ?, changes = ?",
               (*followed.position, followed.resume, followed.token, followed.changes))
    db.executemany(f"UPDATE {TABLES} SET rows = ?, checksum = ? WHERE name = ?",
                   [(rows, f"{checksum:016x}", name)
                    for name, (rows, checksum) in tables.items()])


def finish(db: sqlite3.Connection) -> None:
    """Drop the follow's tables: the file becomes what an app reads."""
    with db:
        db.execute(f"DROP TABLE IF EXISTS {STATE}")
        db.execute(f"DROP TABLE IF EXISTS {TABLES}")
