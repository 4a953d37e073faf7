"""Chinook, end to end: real PostgreSQL, Redis and Celery worker; the published file checked
against the source table by table."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal

import chinook

from worker.core.checksum import as_hex, rows_checksum
from worker.jobs import control

CHINOOK_TABLES = {"artist", "album", "track", "genre", "media_type", "playlist",
                  "playlist_track", "customer", "employee", "invoice", "invoice_line"}


def load_chinook(db) -> None:
    chinook.load_chinook("pg", db.name,
                         {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "postgres"})


def test_chinook_is_copied_verified_and_published(pg_db, settings_env, store, send,
                                                  worker_proc, wait_for):
    # Given Chinook in PostgreSQL and one worker
    load_chinook(pg_db)
    worker = worker_proc()

    # When it is moved to SQLite
    job_id = control.submit_job(settings_env, store, send, source=pg_db.url, target="chinook")
    view = wait_for(store, job_id, ["done", "failed"], timeout=90, workers=[worker])

    # Then the job is done and the file is published with its report
    assert view["state"] == "done", view
    published = settings_env.data_dir / "chinook.db"
    report = json.loads((settings_env.data_dir / "chinook.report.json").read_text())
    db = sqlite3.connect(published)
    try:
        # every table, with the source's row count
        for table in CHINOOK_TABLES:
            source_count = pg_db.execute(f'SELECT count(*) FROM "{table}"')[0][0]
            assert db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == source_count
        assert db.execute("SELECT count(*) FROM playlist_track").fetchone()[0] == 8715

        _assert_values_equal(pg_db, db)
        _assert_schema_kept(pg_db, db)
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []

        # the report lists all 11 tables, and each checksum is the one of the file's rows
        by_name = {t["name"]: t for t in report["tables"]}
        assert set(by_name) == CHINOOK_TABLES
        for name, entry in by_name.items():
            columns = ", ".join(f'"{c["name"]}"' for c in entry["columns"])
            rows = db.execute(f'SELECT {columns} FROM "{name}"').fetchall()
            assert entry["rows"] == len(rows)
            assert entry["checksum"] == as_hex(rows_checksum(rows)), name
    finally:
        db.close()
    assert report["checks"] == {"integrity_check": "ok", "foreign_key_check": "ok"}

    # and Redis mirrors the same: every table verified, with the report's checksum
    tables = {t["name"]: t for t in view["tables"]}
    assert set(tables) == CHINOOK_TABLES
    for name, table in tables.items():
        assert table["state"] == "verified"
        assert table["checksum"] == by_name[name]["checksum"]
        assert table["attempts"] == 1


def _assert_values_equal(pg_db, db: sqlite3.Connection) -> None:
    # Track names and prices, all of them: numeric(10,2) becomes a REAL equal to the decimal.
    source = {r[0]: r[1:] for r in pg_db.execute(
        "SELECT track_id, name, unit_price, composer FROM track")}
    copied = {r[0]: r[1:] for r in db.execute(
        "SELECT track_id, name, unit_price, composer FROM track")}
    assert copied.keys() == source.keys()
    for key, (name, price, composer) in source.items():
        assert copied[key][0] == name
        assert Decimal(repr(copied[key][1])) == price
        assert copied[key][2] == composer
    assert db.execute("SELECT unit_price, typeof(unit_price) FROM track WHERE track_id = 1"
                      ).fetchone() == (0.99, "real")

    # invoice_date is `timestamp without time zone`: ISO 8601, six fraction digits, no zone.
    assert pg_db.execute(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'invoice' AND column_name = 'invoice_date'",
    ) == [("timestamp without time zone",)]
    source_dates = dict(pg_db.execute("SELECT invoice_id, invoice_date FROM invoice"))
    copied_dates = dict(db.execute("SELECT invoice_id, invoice_date FROM invoice"))
    assert copied_dates == {k: v.strftime("%Y-%m-%dT%H:%M:%S.%f") for k, v in source_dates.items()}
    assert copied_dates[1] == "2021-01-01T00:00:00.000000"
    source_totals = dict(pg_db.execute("SELECT invoice_id, total FROM invoice"))
    copied_totals = dict(db.execute("SELECT invoice_id, total FROM invoice"))
    assert {k: Decimal(repr(v)) for k, v in copied_totals.items()} == source_totals


def _assert_schema_kept(pg_db, db: sqlite3.Connection) -> None:
    # Foreign keys: as many as the source has, the self-reference and the composite key too.
    source_fks = pg_db.execute("SELECT count(*) FROM pg_constraint c JOIN pg_namespace n "
                               "ON n.oid = c.connamespace WHERE n.nspname = 'public' "
                               "AND c.contype = 'f'")[0][0]
    fks = {(table, row[2], row[3], row[4])  # (table, parent, from, to)
           for table in CHINOOK_TABLES
           for row in db.execute(f"PRAGMA foreign_key_list('{table}')")}
    assert len(fks) == source_fks == 11
    assert ("employee", "employee", "reports_to", "employee_id") in fks
    assert ("playlist_track", "playlist", "playlist_id", "playlist_id") in fks
    assert ("playlist_track", "track", "track_id", "track_id") in fks

    # Indexes: every source index that does not back the primary key, by name.
    source_indexes = {r[0] for r in pg_db.execute(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_namespace n ON n.oid = i.relnamespace "
        "WHERE n.nspname = 'public' AND NOT x.indisprimary")}
    indexes = {r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert len(source_indexes) == 11
    assert source_indexes <= indexes
    # the composite primary key survives as SQLite's own unique index
    assert db.execute("PRAGMA table_info(playlist_track)").fetchall()[0][5] == 1
