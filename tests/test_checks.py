"""worker/sqlite/checks.py: quick_check plus one scan per index instead of integrity_check,
with integrity_check(table) as the fallback and the last word."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from worker.core.errors import VerificationFailed
from worker.sqlite import checks
from worker.sqlite.check_runner import open_reader
from worker.sqlite.checks import _reads_only_the_index, run_checks

INDEXES = [
    'CREATE INDEX "by (user, time)" ON events (user_id, happened_at DESC)',
    "CREATE INDEX open_events ON events (kind COLLATE NOCASE) WHERE kind <> 'closed (old)'",
    "CREATE UNIQUE INDEX events_ref ON events (ref)",
    "CREATE INDEX events_lower_kind ON events ((lower(kind)))",
]


def build(path: Path, *indexes: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER, happened_at TEXT, "
               "kind TEXT, ref TEXT, code TEXT UNIQUE)")
    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                   [(i, i % 7, f"2024-01-{i % 28 + 1:02d}", ("open", "closed (old)", None)[i % 3],
                     f"r{i}", f"c{i}" if i % 5 else None) for i in range(1, 2001)])
    for sql in indexes:
        db.execute(sql)
    return db


def statements(db: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What run_checks ran, on `db` and on the readers it opened."""
    seen: list[str] = []
    db.set_trace_callback(seen.append)

    def traced_reader(path: Path, setup):
        reader = open_reader(path, setup)
        if reader is not None:
            reader.set_trace_callback(seen.append)
        return reader

    monkeypatch.setattr(checks, "open_reader", traced_reader)
    assert run_checks(db) == {"integrity_check": "ok", "foreign_key_check": "ok"}
    return seen


def test_a_sound_file_passes_with_one_scan_per_index(tmp_path, monkeypatch):
    # Composite, partial, UNIQUE, expression and CREATE TABLE's UNIQUE: none needs
    # integrity_check, and each is read through the index alone
    db = build(tmp_path / "t.db", *INDEXES)

    seen = statements(db, monkeypatch)

    assert any("quick_check" in s for s in seen)
    assert not [s for s in seen if "integrity_check" in s]
    assert len([s for s in seen if "INDEXED BY" in s and s.startswith("SELECT count(*)")]) == 5


def test_without_a_reader_the_building_connection_runs_every_piece(tmp_path, monkeypatch):
    # Given a file whose reader cannot be had (locked by someone else, or unusable)
    db = build(tmp_path / "t.db", *INDEXES)
    monkeypatch.setattr(checks, "open_reader", lambda path, setup: None)
    seen: list[str] = []
    db.set_trace_callback(seen.append)

    # Then every check runs on the building connection, and passes
    assert run_checks(db) == {"integrity_check": "ok", "foreign_key_check": "ok"}
    assert len([s for s in seen if "INDEXED BY" in s and s.startswith("SELECT count(*)")]) == 5


def test_a_query_that_would_read_the_table_is_not_taken_for_the_index(tmp_path):
    db = build(tmp_path / "t.db", INDEXES[0])
    index = 'INDEXED BY "by (user, time)"'
    assert _reads_only_the_index(db, "events", f"SELECT rowid, user_id FROM events {index}")
    assert not _reads_only_the_index(db, "events", f"SELECT rowid, ref FROM events {index}")


@pytest.mark.parametrize("index", INDEXES)
def test_an_index_that_disagrees_with_its_table_fails(tmp_path, index):
    # Given an index whose entries hold another column than its definition says: every page
    # well-formed (quick_check passes), every entry wrong
    path = tmp_path / "t.db"
    build(path, index).close()
    db = sqlite3.connect(path, isolation_level=None)
    name = db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                      ).fetchone()[0]
    db.execute("PRAGMA writable_schema = ON")
    db.execute("UPDATE sqlite_master SET sql = replace(replace(replace(sql, 'user_id', 'code'), "
               "'(kind', '(code'), '(ref)', '(code)') WHERE name = ?", (name,))
    db.close()
    db = sqlite3.connect(path, isolation_level=None)
    assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)]

    # Then the index's checksum differs, and integrity_check, run to confirm, fails the file
    with capture_logs() as logs, pytest.raises(
            VerificationFailed, match="integrity_check of table 'events' failed"):
        run_checks(db)
    assert [e["index"] for e in logs if e["event"] == "index_checksum_differs"] == [name]


def with_foreign_keys(path: Path, *, orphan: bool = False) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE);
        CREATE TABLE issues (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES users,
                             assignee_id INTEGER REFERENCES users (id),
                             author_email TEXT REFERENCES users (email));
        CREATE INDEX issues_author_id ON issues (author_id);
    """)
    db.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"u{i}") for i in range(1, 101)])
    db.executemany("INSERT INTO issues VALUES (?, ?, ?, ?)",
                   [(i, 1 + i * 37 % 100, None if i % 3 else 1 + i % 100, f"u{1 + i % 100}")
                    for i in range(1, 1001)])
    if orphan:
        db.execute("UPDATE issues SET assignee_id = 555 WHERE id = 9")
    return db


def test_rowid_foreign_keys_are_checked_in_key_order(tmp_path, monkeypatch):
    # Given two keys on the parent's rowid (one with an index, one without) and one on a
    # UNIQUE text column
    db = with_foreign_keys(tmp_path / "fk.db")
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, issue_id INTEGER REFERENCES issues)")
    db.execute("INSERT INTO notes VALUES (1, 5), (2, NULL)")

    seen = statements(db, monkeypatch)

    # Then notes' key is checked by its distinct values in order, and issues, whose email
    # key is not on a rowid, by the pragma
    ordered = [s for s in seen if "GROUP BY" in s and "NOT EXISTS" in s]
    assert any('FROM "notes"' in s for s in ordered)
    assert [s for s in seen if "foreign_key_check" in s] == ['PRAGMA foreign_key_check("issues")']


def test_an_orphan_of_a_rowid_key_fails_with_the_pragmas_rows(tmp_path):
    db = with_foreign_keys(tmp_path / "fk.db", orphan=True)
    db.execute("ALTER TABLE issues DROP COLUMN author_email")  # only rowid keys left

    with pytest.raises(VerificationFailed, match=r"issues rowid 9 → users"):
        run_checks(db)


def test_rowid_keys_alone_never_run_the_pragma(tmp_path, monkeypatch):
    db = with_foreign_keys(tmp_path / "fk.db")
    db.execute("ALTER TABLE issues DROP COLUMN author_email")

    seen = statements(db, monkeypatch)

    assert not [s for s in seen if "foreign_key_check" in s]
    assert len([s for s in seen if "GROUP BY" in s and "NOT EXISTS" in s]) == 2
