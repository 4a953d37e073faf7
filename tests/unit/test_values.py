"""Values as written: timestamp text, the column converters, and the checksums over them."""

from __future__ import annotations

import sqlite3

import pytest

from worker.core import datetime_text
from worker.core.checksum import (
    MASK,
    as_hex,
    cursor_checksum,
    encode_rows,
    encoded_checksum,
    fold,
    rows_checksum,
)
from worker.core.converters import (
    converter,
    json_text_array,
    nan_to_null,
    numeric_affinity,
    numeric_float,
    numeric_text,
)
from worker.core.datetime_text import INFINITY, DatetimeFormat, render

ECTO_TZ = DatetimeFormat.parse("datetime:T:always:Z:tz")
RAILS = DatetimeFormat.parse("datetime:space:nonzero:-:-")
DAY_US = 86_400_000_000


def test_a_format_name_round_trips_and_gives_the_byte_the_c_code_reads():
    assert ECTO_TZ == DatetimeFormat(iso=True, fraction="always", zone=True, tz=True)
    assert ECTO_TZ.name == "datetime:T:always:Z:tz"
    assert ECTO_TZ.code == 0x80 | 1 | 0 << 1 | 1 << 3 | 1 << 4
    assert DatetimeFormat.parse("datetime:T:sometimes:Z:tz") is None
    assert DatetimeFormat.parse("numeric_float") is None


@pytest.mark.parametrize(("fmt", "micros", "text", "out_of_range"), [
    (ECTO_TZ, 0, "2000-01-01T00:00:00.000000Z", False),
    (ECTO_TZ, -1, "1999-12-31T23:59:59.999999Z", False),
    (RAILS, 1_500_000, "2000-01-01 00:00:01.500000", False),
    (RAILS, 0, "2000-01-01 00:00:00", False),
    (ECTO_TZ, INFINITY, "infinity", True),
    (ECTO_TZ, -(2**63), "-infinity", True),
    (ECTO_TZ, -730_485 * DAY_US + 500_000, "0001-01-01 00:00:00.5+00 BC", True),
])
def test_timestamps_are_iso_text_or_postgres_text_when_out_of_range(fmt, micros, text,
                                                                    out_of_range):
    assert render(micros, fmt) == (text, out_of_range)


def test_civil_dates_are_proleptic_gregorian_with_year_zero():
    assert datetime_text.civil(0) == (2000, 1, 1)
    assert datetime_text.civil(59) == (2000, 2, 29)
    assert datetime_text.civil(-730_120) == (0, 12, 31)


def test_a_named_timestamp_format_is_a_converter_that_counts_out_of_range_values():
    convert = converter("datetime:T:never:-:-")

    assert convert([0, None, INFINITY]) == (["2000-01-01T00:00:00", None, "infinity"], 1)
    with pytest.raises(KeyError):
        converter("no_such_converter")


def test_decimals_are_stored_as_numeric_affinity_would_and_inexact_ones_counted():
    values, inexact = numeric_affinity(["1.50", "2", None, "NaN", "9223372036854775807",
                                        "0.1", "1e400"])

    assert values[:6] == [1.5, 2, None, None, 9223372036854775807, 0.1]
    assert isinstance(values[1], int) and values[6] == float("inf")
    assert inexact == 2  # NaN (no such value in SQLite) and 1e400 (beyond a REAL)


def test_the_float_path_keeps_integers_past_two_to_the_53_exact():
    assert numeric_float(["1.5", "2.0", None, "9007199254740993"]) == \
        ([1.5, 2, None, 9007199254740993], 0)


def test_json_numbers_in_a_numeric_column_are_numbers_and_counted():
    assert numeric_text(['{"a":1}', "12", None, '"s"']) == (['{"a":1}', 12, None, '"s"'], 1)


def test_nan_becomes_null_and_text_arrays_json_as_postgres_writes_them():
    values, nans = nan_to_null([float("nan"), 1.0, None])
    assert values == [None, 1.0, None] and nans == 1
    assert json_text_array([["a", "é", None, 'q"'], None]) == \
        (['["a","é",null,"q\\""]', None], 0)


def test_a_table_checksum_is_the_same_in_any_order_and_in_any_chunking():
    rows = [(1, "a", 1.5, b"\x00", None), (2, "é", -0.0, b"", 2**62), (3, "", 0.0, None, -1)]
    whole = rows_checksum(rows)

    assert rows_checksum(rows[::-1]) == whole
    assert fold(rows_checksum(rows[:1]), rows_checksum(rows[1:])) == whole
    assert encoded_checksum(encode_rows(rows)) == whole
    assert rows_checksum(rows + rows[:1]) != whole  # a doubled row shows
    assert rows_checksum(rows[1:]) != whole  # a lost row shows
    assert 0 <= whole <= MASK and len(as_hex(whole)) == 16


def test_values_that_compare_equal_but_differ_in_type_checksum_differently():
    assert rows_checksum([(1,)]) != rows_checksum([(1.0,)])
    assert rows_checksum([("1",)]) != rows_checksum([(1,)])


def test_reading_sqlite_back_gives_the_checksum_of_what_was_written():
    rows = [(i, f"row {i}", i / 3, bytes([i % 256]) * (i % 7)) for i in range(1000)]
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (a INTEGER, b TEXT, c REAL, d BLOB)")
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)

    assert cursor_checksum(db.execute("SELECT * FROM t"), budget_bytes=4096) == \
        (1000, rows_checksum(rows))
