"""PostgreSQL fidelity: every type and schema object through the engine, checked value by value.

Real PostgreSQL (tests/pg_fidelity.sql builds the source), the plain engine functions without
Celery or Redis: reflect → translate → WorkFile + copy_rows (+ read-back verification) →
build_database → build_report, once per set of job options, shared by the tests of a module.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from worker.core.checksum import as_hex
from worker.core.errors import InputError
from worker.jobs.copying import verify_work_file
from worker.jobs.finalize import build_database, build_report
from worker.sources.postgres import source as pg_source
from worker.sources.postgres.keys import select_list
from worker.sources.postgres.translate import translate
from worker.sources.url import parse_source_url
from worker.sqlite.chunks import copy_rows
from worker.sqlite.workfile import WorkFile

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
FIXTURE = Path(__file__).with_name("pg_fidelity.sql")


@pytest.fixture(scope="module")
def source_url() -> Iterator[str]:
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is not reachable as {ADMIN_URL} ({exc}): start it with "
                    "`pg_ctlcluster 15 main start`", pytrace=False)
    name = f"lsfid_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(FIXTURE.read_text(encoding="utf-8"))
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Migrated:
    def __init__(self, path: Path, report: dict[str, Any]):
        self.path = path
        self.report = report
        self.db = sqlite3.connect(path)

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        return self.db.execute(sql, params).fetchall()

    def row(self, table: str, key: int) -> dict[str, Any]:
        cur = self.db.execute(f'SELECT * FROM "{table}" WHERE id = ?', (key,))
        return dict(zip([d[0] for d in cur.description], cur.fetchone()))

    def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        return {o["name"]: o for o in self.report["objects"] if o["kind"] == kind}

    def lossy(self, table: str) -> dict[str, int]:
        found = next(t for t in self.report["tables"] if t["name"] == table)
        return {c["name"]: c["lossy_values"] for c in found["columns"] if c["lossy_values"]}


def migrate(url: str, out: Path, options: dict[str, Any], schema: str = "public") -> Migrated:
    """The engine's steps, as plan_job, copy_table and finalize_job compose them."""
    source = parse_source_url(url)
    states = {}
    with pg_source.connect(source) as conn:
        names = pg_source.list_tables(conn, schema)
        plan = translate(pg_source.reflect(source, conn, schema, names), options)
        for table in plan.tables:
            work = WorkFile(out / "tables" / table.file, table)

            def rows(after: Any, table: Any = table) -> Iterator[tuple]:
                return pg_source.stream_rows(
                    conn, schema=schema, table=table.name, select_sql=select_list(table),
                    wire_types=table.wire_types, key=table.key, key_types=table.key_types,
                    after=after)
            # Two rows per chunk: every resume key is exercised on the way.
            final = copy_rows(plan=table, source=rows, work=work, token=1, chunk_rows=2,
                              chunk_bytes=1 << 20)
            verify_work_file(work, final)
            work.close()
            states[table.name] = {"checksum": as_hex(final.checksum), "lossy": final.lossy}
    checks = build_database(out / "out.db", plan.tables, out / "tables", plan.objects)
    job = {"id": "test", "target": "out", "source": "pg", "schema": schema, "options": options}
    return Migrated(out / "out.db", build_report(job, plan.tables, plan.objects, states, checks))


@pytest.fixture(scope="module")
def migrated(source_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    done: dict[str, Migrated] = {}

    def get(schema: str = "public", **options: Any) -> Migrated:
        key = repr((schema, sorted(options.items())))
        if key not in done:
            done[key] = migrate(source_url, tmp_path_factory.mktemp("out"), options, schema)
        return done[key]
    return get


def pg_rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        return conn.execute(sql).fetchall()


# -- values -------------------------------------------------------------------------------

ECTO_ROW_1 = {
    "id": 1, "i2": -32768, "i4": 2147483647, "i8": 9223372036854775807, "f4": 0.1,
    "f8": 3.141592653589793, "n": 12.5, "n2": 100, "m": 1234.56, "t": 'héllo "q"',
    "vc": "short", "c": "ab  ", "ci": "MiXed", "b": 1, "d": "2021-08-25",
    "tm": "10:58:59.123456", "tm0": "10:58:59", "ttz": "10:58:59+02",
    "ts": "2021-08-25T10:58:59.000000", "ts0": "2021-08-25T10:58:59",
    "tstz": "2021-08-25T10:58:59.123456Z", "iv": "P1Y2M3DT4H5M6.5S",
    "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": '{"a": [1, 2]}',
    "jb": '{"a": "x", "b": 1}', "bin": b"\xde\xad\xbe\xef", "ai": "[1,null,3]",
    "at": '["a b",null,"c"]', "a2": "[[1,2],[3,null]]",
    "atz": '["2021-08-25T10:58:59.000000Z", "2021-08-25T10:58:59.500000Z", null]',
    "h": '{"a": "1", "b": null}', "e": "happy", "dom": 5, "comp": '{"a":1,"b":"x"}',
    "r": "[1,10)", "mr": "{[1,3),[5,7)}", "ip": "192.168.0.1/24", "cid": "10.0.0.0/8",
    "mac": "08:00:2b:01:02:03", "bt": "1010", "vb": "101", "x": "<a>1</a>",
    "tv": "'a' 'cat' 'fat'", "pt": "(1,2)", "bx": "(1,1),(0,0)", "lsn": "16/B374D848",
}


def test_every_type_round_trips_in_the_ecto_format(migrated: Any) -> None:
    out = migrated()
    assert out.row("everything", 1) == ECTO_ROW_1
    edge = out.row("everything", 2)
    assert {k: v for k, v in edge.items() if v is not None} == {
        "id": 2, "f8": float("-inf"), "n2": 12345678901234568, "b": 0, "d": "infinity",
        "tm": "24:00:00.000000", "ts": "-infinity", "ts0": "0044-03-15 10:00:00 BC",
        "tstz": "infinity", "iv": "P-1D", "u": "00000000-0000-0000-0000-000000000000",
        "j": "5", "jb": "1.50", "ai": "[]", "atz": "[]"}
    third = out.row("everything", 3)
    assert (third["f8"], third["n"], third["d"], third["n2"]) == (
        0.0, 1.2345678901234567e19, "0044-03-15 BC", 1.5)
    assert set(out.row("everything", 4).values()) == {4, None}


def test_lossy_values_are_counted_per_column(migrated: Any) -> None:
    # NaN real → NULL; -0 → 0; NaN and 20-digit numerics; infinity and BC dates/timestamps.
    assert migrated().lossy("everything") == {
        "f4": 1, "f8": 1, "n": 2, "n2": 1, "d": 2, "ts": 1, "ts0": 1, "tstz": 1}


def _python_format(value: datetime, profile: str, *, utc: bool, usec: bool) -> str:
    """An independent rendering of TARGET_FORMATS.md, to check the server-side one."""
    value = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if profile in ("rails", "django"):
        return value.isoformat(sep=" ")  # fraction only when non-zero, no zone
    if profile == "ecto":
        text = value.strftime("%Y-%m-%dT%H:%M:%S") + (f".{value.microsecond:06d}" if usec
                                                      else "")
    else:
        text = value.isoformat(sep="T")
    return text + ("Z" if utc else "")


@pytest.mark.parametrize("profile", ["ecto", "rails", "django", "plain"])
def test_timestamps_match_the_profile_value_by_value(migrated: Any, source_url: str,
                                                     profile: str) -> None:
    out = migrated(profile=profile)
    source = pg_rows(source_url, "SELECT id, created_at FROM customers ORDER BY id")
    assert out.rows("SELECT id, created_at FROM customers ORDER BY id") == [
        (key, _python_format(value, profile, utc=True, usec=True)) for key, value in source]
    source = pg_rows(source_url, "SELECT id, ts, ts0, tstz FROM everything "
                                 "WHERE id IN (1, 3) ORDER BY id")
    got = out.rows("SELECT id, ts, ts0, tstz FROM everything WHERE id IN (1, 3) ORDER BY id")
    for (key, ts, ts0, tstz), row in zip(source, got):
        assert row == (key, ts and _python_format(ts, profile, utc=False, usec=True),
                       ts0 and _python_format(ts0, profile, utc=False, usec=False),
                       _python_format(tstz, profile, utc=True, usec=True))


def test_app_facing_formats_are_the_literal_strings_of_target_formats(migrated: Any) -> None:
    ecto = migrated(utc_timestamps=True)
    assert ecto.row("everything", 1)["ts0"] == "2021-08-25T10:58:59Z"
    assert ecto.row("everything", 1)["tstz"] == "2021-08-25T10:58:59.123456Z"
    rails = migrated(profile="rails").row("everything", 1)
    assert (rails["ts0"], rails["tstz"], rails["b"]) == (
        "2021-08-25 10:58:59", "2021-08-25 10:58:59.123456", 1)
    # a time on ActiveRecord's day, as its SQLite adapter writes one
    assert (rails["tm"], rails["tm0"]) == ("2000-01-01 10:58:59.123456", "2000-01-01 10:58:59")
    django = migrated(profile="django")
    assert django.row("everything", 1)["u"] == "a0eebc999c0b4ef8bb6d6bb9bd380a11"
    assert django.row("everything", 1)["iv"] == 37015506500000  # DurationField microseconds
    declared = {r[1]: r[2].lower() for r in django.rows("PRAGMA table_info(everything)")}
    assert (declared["b"], declared["ts"], declared["n2"], declared["u"], declared["jb"]) == (
        "bool", "datetime", "decimal", "char(32)", "text")
    ddl = django.rows("SELECT sql FROM sqlite_master WHERE name = 'everything'")[0][0]
    assert 'CHECK (JSON_VALID("jb") OR "jb" IS NULL)' in ddl
    plain = migrated(profile="plain").row("everything", 1)
    assert (plain["ts"], plain["tstz"]) == ("2021-08-25T10:58:59", "2021-08-25T10:58:59.123456Z")


def test_rails_json_numbers_follow_numeric_affinity_and_are_counted(migrated: Any) -> None:
    out = migrated(profile="rails")
    edge = out.row("everything", 2)
    assert (edge["j"], edge["jb"]) == (5, 1.5)
    assert out.lossy("everything")["jb"] == 1


def test_exact_decimals_and_column_overrides(migrated: Any) -> None:
    out = migrated(exact_decimals=True, column_types={
        "everything.ts0": "utc_datetime", "everything.tstz": "naive_datetime",
        "everything.h": "text", "everything.n2": "decimal"})
    assert [r[:3] for r in out.rows("SELECT n, m, n2 FROM everything ORDER BY id")] == [
        ("12.50", "1234.56", 100), ("NaN", None, 12345678901234568),
        ("12345678901234567890.1234", None, 1.5), (None, None, None)]
    row = out.row("everything", 1)
    assert (row["ts0"], row["tstz"], row["h"]) == (
        "2021-08-25T10:58:59Z", "2021-08-25T10:58:59.123456", '"a"=>"1", "b"=>NULL')
    columns = {c["name"]: c for c in out.report["tables"][2]["columns"]}
    assert (columns["n"]["rule"], columns["n"]["sqlite_type"]) == ("decimal_text", "TEXT")
    assert columns["ts0"]["rule"] == "utc_datetime"


def test_an_override_that_does_not_fit_the_column_is_refused(source_url: str,
                                                             tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not apply"):
        migrate(source_url, tmp_path, {"column_types": {"everything.i4": "utc_datetime"}})


# -- schema objects -------------------------------------------------------------------------

def test_views_answer_like_postgresql(migrated: Any, source_url: str) -> None:
    out = migrated()
    for query in ('SELECT * FROM big_orders ORDER BY id',
                  'SELECT * FROM "Happy Orders" ORDER BY id',
                  'SELECT * FROM big_order_names ORDER BY name',
                  'SELECT * FROM order_counts ORDER BY customer_id'):
        expected = [tuple(float(v) if isinstance(v, Decimal) else v for v in row)
                    for row in pg_rows(source_url, query)]
        assert out.rows(query) == expected, query
    daily = out.objects("view")["daily"]
    assert daily["fate"] == "skipped" and "TIMESTAMP_TRUNC" in daily["sql"]
    assert "no such function" in daily["reason"]


def test_indexes_constraints_and_keys_are_translated(migrated: Any) -> None:
    out = migrated()
    indexes = {r[0]: r[1] for r in out.rows(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert indexes["orders_live"].endswith('WHERE "deleted_at" IS NULL')
    assert indexes["orders_one_happy"].startswith("CREATE UNIQUE INDEX")
    assert '(LOWER("name"))' in indexes["customers_lower_name"]
    assert '("Weird Name" DESC, "select")' in indexes["Weird Index"]
    assert '("customer_id", "total" DESC)' in indexes["orders_multi"]
    fks = out.rows("PRAGMA foreign_key_list(line_notes)")
    assert [(r[2], r[3], r[4], r[6]) for r in fks] == [
        ("order_lines", "order_id", "order_id", "CASCADE"),
        ("order_lines", "line_no", "line_no", "CASCADE")]
    assert [(r[2], r[3], r[6]) for r in out.rows("PRAGMA foreign_key_list(orders)")] == [
        ("orders", "parent_id", "SET NULL"), ("customers", "customer_id", "CASCADE")]
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        out.db.execute("INSERT INTO orders (customer_id, total, qty) VALUES (1, 1, 0)")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        out.db.execute("INSERT INTO orders (customer_id, total, status) VALUES (1, 1, 'meh')")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        out.db.execute("UPDATE everything SET dom = 0 WHERE id = 1")  # the domain's CHECK


def test_new_rows_get_new_ids_defaults_and_generated_values(migrated: Any) -> None:
    out = migrated()
    out.db.execute("INSERT INTO customers (email, name) VALUES ('new@example.com', 'New')")
    key, created, weird, select = out.rows(
        'SELECT id, created_at, "Weird Name", "select" FROM customers WHERE name = \'New\'')[0]
    assert key == 101  # setval(100) in PostgreSQL: the sequence carries over
    assert len(created) == len("2021-08-25T10:58:59.123000Z") and created.endswith("000Z")
    assert (weird, select) == ("x y", 0)
    out.db.execute("INSERT INTO orders (customer_id, total, qty) VALUES (1, 2, 21)")
    assert out.rows("SELECT id, status, double_qty FROM orders WHERE qty = 21") == [
        (5, "ok", 42)]
    assert out.rows("SELECT double_qty, label FROM orders WHERE id = 1") == [(4, "ÜNÏ")]
    generated = out.objects("generated_column")
    assert generated["orders.double_qty"]["sql"] == 'GENERATED ALWAYS AS (("qty" * 2)) STORED'
    assert "copied as plain values" in generated["orders.label"]["note"]
    out.db.rollback()


def test_every_source_object_has_a_fate(migrated: Any) -> None:
    out = migrated()
    fates = {(o["kind"], o["name"]): o["fate"] for o in out.report["objects"]}
    assert fates[("default", "tokens.id")] == "skipped"
    assert fates[("materialized_view", "order_totals")] == "translated"
    assert fates[("materialized_view", "never_filled")] == "skipped"
    assert fates[("partitioned_table", "events")] == "translated"
    for skipped in [("trigger", "orders_touch on orders"), ("function", "touch()"),
                    ("aggregate", "my_sum(integer)"), ("extension", "hstore 1.8"),
                    ("sequence", "standalone_seq")]:
        assert fates[skipped] == "skipped", skipped
    assert all(o.get("reason") for o in out.report["objects"] if o["fate"] == "skipped")
    assert out.rows("SELECT customer_id, total, n FROM order_totals ORDER BY 1") == [
        (1, 30.1, 2), (2, 99.99, 1), (3, 11, 1)]
    assert out.rows("SELECT * FROM events ORDER BY id") == [
        (1, "2020-05-01", "a"), (2, "2021-05-01", "b"), (3, "2021-06-01", "c")]
    columns = out.report["tables"][0]["columns"]
    assert all({"rule", "lossy_values", "source_type", "sqlite_type"} <= set(c) for c in columns)
    assert all(t["checksum"] and t["verified"] for t in out.report["tables"])


def test_another_schema_keeps_quoted_names(migrated: Any) -> None:
    out = migrated(schema="sales")
    assert out.rows('SELECT * FROM "Order Items" ORDER BY id') == [(1, "one"), (2, "two")]
    assert out.rows('SELECT * FROM "Long Notes" ORDER BY id') == [(1, "one"), (2, "two")]
    out.db.execute('INSERT INTO "Order Items" DEFAULT VALUES')
    assert out.rows('SELECT id, "Note" FROM "Order Items" WHERE id > 2') == [(3, "none")]
    out.db.rollback()


# -- what apps store (issue 23) ---------------------------------------------------------------

@pytest.mark.parametrize("profile", ["ecto", "rails", "django", "plain"])
def test_inet_is_written_as_apps_write_it_and_cidr_keeps_its_mask(migrated: Any,
                                                                   profile: str) -> None:
    out = migrated(schema="apps", profile=profile)
    # An address whose mask is its full length without it (as Django's GenericIPAddressField
    # and every app store it); a network keeps its mask; cidr keeps its form.
    assert out.rows("SELECT ip, net FROM hosts ORDER BY id") == [
        ("10.0.0.1", "10.0.0.0/8"), ("2001:db8::1", "2001:db8::/32"),
        ("192.168.0.1/24", "192.168.0.0/24"), ("::ffff:10.0.0.1", "10.0.0.1/32"),
        (None, None)]
    out.db.execute("INSERT INTO hosts (id) VALUES (9)")  # a default, as the values are
    assert out.rows("SELECT gw FROM hosts WHERE id = 9") == [("10.0.0.1",)]
    out.db.rollback()


def test_django_counts_the_decimals_its_reader_rounds(migrated: Any) -> None:
    # Django reads a decimal through decimal.Context(prec=15): past 15 significant digits it
    # rounds even what REAL holds (1234567890.123456, 1234567890123456 as INTEGER).
    assert migrated(schema="apps", profile="django").lossy("hosts") == {"amount": 3}
    assert migrated(schema="apps", profile="ecto").lossy("hosts") == {"amount": 1}
