"""Chinook's MySQL variant, end to end: real MariaDB, Redis and Celery worker; the published
file checked against the source table by table."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal

import chinook

from worker.core.checksum import as_hex, rows_checksum
from worker.jobs import control

TABLES = {"Album", "Artist", "Customer", "Employee", "Genre", "Invoice", "InvoiceLine",
          "MediaType", "Playlist", "PlaylistTrack", "Track"}


def load_chinook(my_db) -> None:
    chinook.load_chinook("mysql", my_db.name, {"MYSQL_CLI": "mariadb -h127.0.0.1 -P3306 -uroot"})


def test_mysql_chinook_is_copied_verified_and_published(my_db, settings_env, store, send,
                                                        worker_proc, wait_for):
    # Given Chinook in MariaDB and one worker
    load_chinook(my_db)
    worker = worker_proc()

    # When it is moved to SQLite from a mysql:// URL
    job_id = control.submit_job(settings_env, store, send, source=my_db.url, target="chinook")
    view = wait_for(store, job_id, ["done", "failed"], timeout=90, workers=[worker])

    # Then the job is done and every table has the source's rows
    assert view["state"] == "done", view
    report = json.loads((settings_env.data_dir / "chinook.report.json").read_text())
    db = sqlite3.connect(settings_env.data_dir / "chinook.db")
    try:
        for table in TABLES:
            source_count = my_db.execute(f"SELECT count(*) FROM `{table}`")[0][0]
            assert db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == source_count
        assert db.execute('SELECT count(*) FROM "PlaylistTrack"').fetchone()[0] == 8715
        _assert_values_equal(my_db, db)
        _assert_schema_kept(my_db, db)
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        by_name = {t["name"]: t for t in report["tables"]}
        assert set(by_name) == TABLES
        for name, entry in by_name.items():
            columns = ", ".join(f'"{c["name"]}"' for c in entry["columns"])
            rows = db.execute(f'SELECT {columns} FROM "{name}"').fetchall()
            assert entry["checksum"] == as_hex(rows_checksum(rows)), name
    finally:
        db.close()
    assert report["checks"] == {"integrity_check": "ok", "foreign_key_check": "ok"}
    # MySQL has no schemas inside a database: the job names the database it copied
    assert report["schema"] == view["schema"] == my_db.name
    assert all(t["state"] == "verified" and t["attempts"] == 1 for t in view["tables"])


def _assert_values_equal(my_db, db: sqlite3.Connection) -> None:
    # Every track: names (utf8mb4 text, accents included) and decimal(10,2) prices
    source = {r[0]: r[1:] for r in my_db.execute(
        "SELECT TrackId, Name, Composer, UnitPrice, Milliseconds FROM Track")}
    copied = {r[0]: r[1:] for r in db.execute(
        'SELECT "TrackId", "Name", "Composer", "UnitPrice", "Milliseconds" FROM "Track"')}
    assert copied.keys() == source.keys()
    for key, (name, composer, price, ms) in source.items():
        assert copied[key][0] == name and copied[key][1] == composer and copied[key][3] == ms
        assert Decimal(repr(copied[key][2])) == price
    assert db.execute('SELECT "UnitPrice", typeof("UnitPrice") FROM "Track" '
                      'WHERE "TrackId" = 1').fetchone() == (0.99, "real")
    # InvoiceDate is a MySQL datetime (no fraction): Ecto's naive_datetime, no zone
    dates = dict(my_db.execute("SELECT InvoiceId, InvoiceDate FROM Invoice"))
    copied_dates = dict(db.execute('SELECT "InvoiceId", "InvoiceDate" FROM "Invoice"'))
    assert copied_dates == {k: v.strftime("%Y-%m-%dT%H:%M:%S") for k, v in dates.items()}
    # Text with non-ASCII characters survives unchanged
    names = dict(my_db.execute("SELECT CustomerId, FirstName FROM Customer"))
    assert dict(db.execute('SELECT "CustomerId", "FirstName" FROM "Customer"')) == names
    assert "François" in names.values()


def _assert_schema_kept(my_db, db: sqlite3.Connection) -> None:
    fks = {(table, row[2], row[3], row[4])  # (table, parent, from, to)
           for table in TABLES
           for row in db.execute(f"PRAGMA foreign_key_list('{table}')")}
    source_fks = my_db.execute(
        "SELECT count(*) FROM information_schema.REFERENTIAL_CONSTRAINTS "
        "WHERE CONSTRAINT_SCHEMA = DATABASE()")[0][0]
    assert len(fks) == source_fks == 11
    assert ("Employee", "Employee", "ReportsTo", "EmployeeId") in fks
    assert ("PlaylistTrack", "Track", "TrackId", "TrackId") in fks
    source_indexes = {r[0] for r in my_db.execute(
        "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME <> 'PRIMARY'")}
    indexes = {r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert source_indexes and source_indexes <= indexes
    # the composite primary key survives, and single integer keys are SQLite rowids
    assert [r[1] for r in db.execute("PRAGMA table_info('PlaylistTrack')") if r[5]] == [
        "PlaylistId", "TrackId"]
    assert db.execute("SELECT sql FROM sqlite_master WHERE name = 'Album'").fetchone()[0] \
        .find('"AlbumId" INTEGER PRIMARY KEY') > 0
