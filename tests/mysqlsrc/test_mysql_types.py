"""Every MySQL type and schema object issue 4 lists, through a real worker, value by value.

One database (SCHEMA below) is moved twice: with the default profile (ecto) and with the
rails profile plus the MySQL options (binary_uuids, geometry_wkt, exact_decimals); each
value in SQLite is compared with what the documented rule says it must be.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from worker.jobs import control

from .conftest import my_connect

SCHEMA = """
CREATE TABLE kinds (
  id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
  flag tinyint(1) NOT NULL DEFAULT 0,
  u8 tinyint unsigned, u32 int unsigned, u64 bigint unsigned,
  d65 decimal(65,30), d12 decimal(12,2) CHECK (d12 >= 0),
  f float, dbl double,
  b10 bit(10), b64 bit(64),
  yr year,
  dt datetime, dt6 datetime(6), ts timestamp(3) NULL DEFAULT NULL, dd date,
  tm time, tm6 time(6),
  e enum('small','medium','large'), st set('read','write','admin'),
  j json,
  bin4 binary(4), vb varbinary(10), bl blob,
  uid binary(16),
  geo geometry,
  lat varchar(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci,
  cs varchar(20) COLLATE utf8mb4_bin,
  gen int AS (u8 * 2) STORED,
  created_at datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  born date NOT NULL DEFAULT '0000-00-00'
);
INSERT INTO kinds (id, flag, u8, u32, u64, d65, d12, f, dbl, b10, b64, yr, dt, dt6, ts, dd,
  tm, tm6, e, st, j, bin4, vb, bl, uid, geo, lat, cs, created_at, born) VALUES
 (1, 1, 255, 4294967295, 18446744073709551615,
  12345678901234567890123456789012345.123456789012345678901234567890, 12.50, 3.14, 0.1,
  b'1010', b'1111111111111111111111111111111111111111111111111111111111111111', 2024,
  '2024-05-06 07:08:09', '2024-05-06 07:08:09.123456', '2024-05-06 07:08:09.500',
  '2024-05-06', '12:34:56', '100:00:00.5', 'medium', 'read,admin', '{"a": [1, 2]}',
  X'00010203', X'FF', X'DEADBEEF', UNHEX('0123456789ABCDEF0123456789ABCDEF'),
  ST_GeomFromText('POINT(1 2)'), 'café', 'Case', '2024-01-01 00:00:00', '1990-01-02'),
 (2, 2, 0, 0, 9223372036854775807, 0, 0.00, -0e0, -0e0, b'0', b'0', 0,
  '0000-00-00 00:00:00', '2024-00-10 10:00:00', '0000-00-00 00:00:00', '2024-01-00',
  '-01:02:03', '23:59:59.999999', 'small', '', '[]', X'00000000', X'', X'',
  NULL, NULL, 'naïve €', 'case', '2024-01-01 00:00:00', '0000-00-00'),
 (3, 0, NULL, NULL, 9223372036854775808, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '2024-01-01 00:00:00', '2000-01-01');
CREATE TABLE people (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email varchar(100) NOT NULL, name varchar(255), bio text, loc point NOT NULL,
  UNIQUE KEY email_uq (email), KEY name_prefix (name(10)), KEY idx_shared (name),
  FULLTEXT KEY bio_ft (bio), SPATIAL KEY loc_sp (loc)
);
INSERT INTO people (email, name, bio, loc) VALUES
 ('alice@example.com', 'Alice', 'likes sqlite', ST_GeomFromText('POINT(0 0)')),
 ('Bob@Example.com', 'Bob', NULL, ST_GeomFromText('POINT(1 1)')),
 ('carol@example.com', 'Carol', NULL, ST_GeomFromText('POINT(2 2)'));
DELETE FROM people WHERE id = 3;
CREATE TABLE parent (id int PRIMARY KEY, code varchar(10) NOT NULL UNIQUE);
CREATE TABLE child (
  id int PRIMARY KEY, parent_id int, parent_code varchar(10), KEY idx_shared (parent_code),
  CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES parent (id)
    ON DELETE CASCADE ON UPDATE RESTRICT,
  CONSTRAINT fk_code FOREIGN KEY (parent_code) REFERENCES parent (code) ON DELETE SET NULL
);
INSERT INTO parent VALUES (1, 'A'), (2, 'B');
INSERT INTO child VALUES (10, 1, 'A'), (11, 2, NULL);
CREATE VIEW child_codes AS SELECT c.id, p.code FROM child c JOIN parent p ON p.id = c.parent_id;
CREATE VIEW rows_found AS SELECT FOUND_ROWS() AS n;
CREATE TRIGGER child_upper BEFORE INSERT ON child FOR EACH ROW
  SET NEW.parent_code = UPPER(NEW.parent_code);
CREATE PROCEDURE noop() SELECT 1;
CREATE FUNCTION two() RETURNS int DETERMINISTIC RETURN 2
"""

UUID = "01234567-89ab-cdef-0123-456789abcdef"
WKB_POINT_1_2 = bytes.fromhex("0101000000000000000000F03F0000000000000040")


def _load(my_db) -> None:
    my_db.script(SCHEMA)
    # ALLOW_INVALID_DATES keeps 2024-02-30 as written (an old app's data); created_at is
    # set again or ON UPDATE would change it.
    conn = my_connect(my_db.name)
    try:
        cur = conn.cursor()
        cur.execute("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
        cur.execute("UPDATE kinds SET dd = '2024-02-30', created_at = created_at WHERE id = 2")
    finally:
        conn.close()


def _move(my_db, settings_env, store, send, worker, wait_for, target: str,
          options: dict | None = None) -> tuple[sqlite3.Connection, dict]:
    job_id = control.submit_job(settings_env, store, send, source=my_db.url, target=target,
                                options=options)
    view = wait_for(store, job_id, ["done", "failed"], timeout=90, workers=[worker])
    assert view["state"] == "done", view
    report = json.loads((settings_env.data_dir / f"{target}.report.json").read_text())
    return sqlite3.connect(settings_env.data_dir / f"{target}.db"), report


def _rows(db: sqlite3.Connection, columns: str) -> dict[int, tuple]:
    return {r[0]: r[1:] for r in db.execute(f"SELECT id, {columns} FROM kinds")}


def _lossy(report: dict, table: str) -> dict[str, int]:
    entry = next(t for t in report["tables"] if t["name"] == table)
    return {c["name"]: c["lossy_values"] for c in entry["columns"] if c["lossy_values"]}


def _objects(report: dict, kind: str) -> dict[str, dict]:
    return {o["name"]: o for o in report["objects"] if o["kind"] == kind}


@pytest.fixture
def moved(my_db, settings_env, store, send, worker_proc, wait_for):
    _load(my_db)
    worker = worker_proc()
    db, report = _move(my_db, settings_env, store, send, worker, wait_for, "kinds")
    yield db, report, (my_db, settings_env, store, send, worker, wait_for)
    db.close()


def test_mysql_values_follow_the_ecto_rules(moved):
    db, report, _ = moved
    # Given/When: moved with the default profile. Then, value by value:
    assert _rows(db, "flag, u8, u32, u64") == {
        1: (1, 255, 4294967295, "18446744073709551615"),
        2: (2, 0, 0, 9223372036854775807),
        3: (0, None, None, "9223372036854775808")}
    d65, d12 = zip(*_rows(db, "d65, d12").values())
    assert d65 == (1.2345678901234568e34, 0, None) and d12 == (12.5, 0, None)
    assert [r[0] for r in db.execute("SELECT typeof(d12) FROM kinds ORDER BY id")] == [
        "real", "integer", "null"]
    assert _rows(db, "f, dbl, b10, b64, yr") == {
        1: (3.14, 0.1, 10, "18446744073709551615", 2024), 2: (0.0, 0.0, 0, 0, None),
        3: (None, None, None, None, None)}
    assert _rows(db, "dt, dt6, ts, dd, born") == {
        1: ("2024-05-06T07:08:09", "2024-05-06T07:08:09.123456",
            "2024-05-06T07:08:09.500000Z", "2024-05-06", "1990-01-02"),
        2: (None, None, None, None, None), 3: (None, None, None, None, "2000-01-01")}
    assert _rows(db, "tm, tm6") == {1: ("12:34:56", "100:00:00.500000"),
                                    2: ("-01:02:03", "23:59:59.999999"), 3: (None, None)}
    assert _rows(db, "e, st, j") == {1: ("medium", '["read","admin"]', '{"a": [1, 2]}'),
                                     2: ("small", "[]", "[]"), 3: (None, None, None)}
    assert _rows(db, "bin4, vb, bl, uid, geo") == {
        1: (b"\x00\x01\x02\x03", b"\xff", b"\xde\xad\xbe\xef",
            bytes.fromhex(UUID.replace("-", "")), WKB_POINT_1_2),
        2: (b"\x00" * 4, b"", b"", None, None), 3: (None, None, None, None, None)}
    assert _rows(db, "lat, cs, gen, created_at") == {
        1: ("café", "Case", 510, "2024-01-01T00:00:00"),
        2: ("naïve €", "case", 0, "2024-01-01T00:00:00"),
        3: (None, None, None, "2024-01-01T00:00:00")}
    # and every inexact value is counted, per column
    assert _lossy(report, "kinds") == {
        "flag": 1, "u64": 2, "d65": 1, "b64": 1, "yr": 1, "dt": 1,
        "dt6": 1, "ts": 1, "dd": 1, "tm": 1, "tm6": 1, "born": 1}


def test_mysql_schema_objects_are_kept_or_reported(moved):
    db, report, _ = moved
    types = {r[1]: r[2] for r in db.execute("PRAGMA table_info(kinds)")}
    assert types["u64"] == "" and types["b64"] == ""  # BLOB affinity: exact text past 2^63
    assert types["d12"] == "DECIMAL(12,2)" and types["flag"] == "INTEGER"
    ddl = db.execute("SELECT sql FROM sqlite_master WHERE name = 'kinds'").fetchone()[0]
    assert '"lat" TEXT COLLATE NOCASE,' in ddl and '"cs" TEXT,' in ddl
    assert '"id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL' in ddl
    assert '"gen" INTEGER GENERATED ALWAYS AS ("u8" * 2) STORED' in ddl
    assert '"born" TEXT DEFAULT' not in ddl and '"born" TEXT' in ddl  # zero default: nullable
    with pytest.raises(sqlite3.IntegrityError):  # the enum's labels are a CHECK
        db.execute("UPDATE kinds SET e = 'huge' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError):  # the table CHECK
        db.execute("UPDATE kinds SET d12 = -1 WHERE id = 1")
    db.execute("INSERT INTO kinds (id, born) VALUES (99, NULL)")  # defaults in the same format
    created, flag = db.execute("SELECT created_at, flag FROM kinds WHERE id = 99").fetchone()
    assert len(created) == len("2024-01-01T00:00:00") and flag == 0
    db.rollback()
    assert _objects(report, "on_update")["kinds.created_at"]["fate"] == "skipped"
    assert _objects(report, "not_null")["kinds.born"]["fate"] == "skipped"
    assert db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'people'").fetchone() == (3,)

    # Case-insensitive collation: NOCASE keeps lookups and UNIQUE as MySQL had them
    assert db.execute("SELECT name FROM people WHERE email = 'ALICE@example.COM'").fetchone() \
        == ("Alice",)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO people (email, loc) VALUES ('BOB@example.com', x'00')")
    indexes = {r[0]: r[1] for r in db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert indexes["name_prefix"].endswith('("name")')  # the whole column
    assert {"email_uq", "people_idx_shared", "child_idx_shared", "code"} <= set(indexes)
    index_report = {**_objects(report, "index"), **_objects(report, "unique_index")}
    assert "prefix index name(10)" in index_report["name_prefix"]["note"]
    assert index_report["bio_ft"]["fate"] == "skipped" and "FTS5" in index_report["bio_ft"][
        "reason"]
    assert index_report["loc_sp"]["fate"] == "skipped"

    fks = {r[3]: (r[2], r[4], r[5], r[6]) for r in db.execute("PRAGMA foreign_key_list(child)")}
    # MySQL's RESTRICT is its default, the same check as NO ACTION (InnoDB has no deferral)
    assert fks == {"parent_id": ("parent", "id", "NO ACTION", "CASCADE"),
                   "parent_code": ("parent", "code", "NO ACTION", "SET NULL")}
    assert db.execute("SELECT * FROM child_codes ORDER BY id").fetchall() == [(10, "A"),
                                                                              (11, "B")]
    views = _objects(report, "view")
    assert views["child_codes"]["fate"] == "translated"
    assert views["rows_found"]["fate"] == "skipped"
    assert _objects(report, "trigger")["child_upper on child"]["fate"] == "skipped"
    assert {"procedure noop", "function two"} <= set(_objects(report, "routine"))
    assert _objects(report, "check_constraint")["d12"]["fate"] == "translated"
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_mysql_rails_profile_and_mysql_options(moved):
    _, _, (my_db, settings_env, store, send, worker, wait_for) = moved
    db, report = _move(my_db, settings_env, store, send, worker, wait_for, "kinds_rails", {
        "profile": "rails", "binary_uuids": True, "geometry_wkt": True, "exact_decimals": True,
        "column_types": {"kinds.bin4": "blob"}})
    try:
        assert _rows(db, "dt, dt6, ts, tm, tm6") == {
            1: ("2024-05-06 07:08:09", "2024-05-06 07:08:09.123456", "2024-05-06 07:08:09.500000",
                "2000-01-01 12:34:56", "100:00:00.500000"),
            2: (None, None, None, "-01:02:03", "2000-01-01 23:59:59.999999"),
            3: (None, None, None, None, None)}
        assert _rows(db, "uid, geo, d65, d12") == {
            1: (UUID, "POINT(1 2)", "12345678901234567890123456789012345."
                                    "123456789012345678901234567890", "12.50"),
            2: (None, None, "0.000000000000000000000000000000", "0.00"),
            3: (None, None, None, None)}
        types = {r[1]: r[2] for r in db.execute("PRAGMA table_info(kinds)")}
        assert types["dt6"] == "datetime(6)" and types["flag"] == "boolean"
        assert types["cs"] == "varchar(20)" and types["uid"] == "varchar"
    finally:
        db.close()


def test_mysql_row_breaking_a_constraint_fails_its_table_with_the_key(
        my_db, settings_env, store, send, worker_proc, wait_for):
    # Given a bigint unsigned key past 2^63-1 (no SQLite rowid can hold it) and a NOT NULL
    # datetime holding a zero date (which becomes NULL)
    my_db.script("""
        CREATE TABLE huge_ids (id bigint unsigned PRIMARY KEY, v int);
        INSERT INTO huge_ids VALUES (1, 1), (18446744073709551615, 2);
        CREATE TABLE seen (id int PRIMARY KEY, at datetime NOT NULL);
        INSERT INTO seen VALUES (1, '2024-01-01 00:00:00'), (2, '0000-00-00 00:00:00');
        CREATE TABLE fine (id int PRIMARY KEY)""")
    worker = worker_proc()

    # When the database is moved
    job_id = control.submit_job(settings_env, store, send, source=my_db.url, target="bad")
    view = wait_for(store, job_id, ["done", "failed"], timeout=90, workers=[worker])

    # Then both tables fail with the offending row's key, the other one is copied, and
    # nothing is published
    assert view["state"] == "failed", view
    tables = {t["name"]: t for t in view["tables"]}
    assert tables["fine"]["state"] == "verified"
    assert tables["huge_ids"]["state"] == "failed"
    assert tables["huge_ids"]["error_key"] == {"id": "18446744073709551615"}
    assert tables["seen"]["state"] == "failed"
    assert tables["seen"]["error_key"] == {"id": 2}
    assert "NOT NULL" in tables["seen"]["error"]
    assert not (settings_env.data_dir / "bad.db").exists()
