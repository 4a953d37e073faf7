"""Ecto has no package here to run an app against the file, so its formats are pinned to
ecto_sqlite3's own codec (lib/ecto/adapters/sqlite3/codec.ex): what it writes, and what its
decoders accept. Each check below restates one of its rules in Python."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from worker.core.converters import json_text_array, numeric_value, uuid_text
from worker.core.datetime_text import DatetimeFormat, render

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

# Elixir's NaiveDateTime.from_iso8601 (naive_datetime_decode, utc_datetime_decode): `T` or a
# space, up to six fraction digits, an optional offset it ignores.
NAIVE_ISO = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:?\d\d)?")
# What ecto_sqlite3 writes itself (utc_datetime_encode/naive_datetime_encode, :iso8601, the
# default): NaiveDateTime.to_iso8601, with `Z` appended by DateTime for utc types.
WRITES = {
    ("utc_datetime_usec", "always", True): "2021-08-25T10:58:59.123456Z",
    ("utc_datetime", "never", True): "2021-08-25T10:58:59Z",
    ("naive_datetime_usec", "always", False): "2021-08-25T10:58:59.123456",
    ("naive_datetime", "never", False): "2021-08-25T10:58:59",
}


def _micros(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@pytest.mark.parametrize(("ecto_type", "fraction", "utc"), list(WRITES))
def test_timestamps_are_the_text_ecto_sqlite3_writes(ecto_type, fraction, utc):
    # ecto_sqlite3 compares timestamps as text: the same value must be the same string.
    value = datetime(2021, 8, 25, 10, 58, 59, 123456 if fraction == "always" else 0, tzinfo=UTC)
    fmt = DatetimeFormat(iso=True, fraction=fraction, zone=utc, tz=utc)
    text, out_of_range = render(_micros(value), fmt)
    assert (text, out_of_range) == (WRITES[(ecto_type, fraction, utc)], False)
    assert NAIVE_ISO.fullmatch(text)


@pytest.mark.parametrize("text", ["12.50", "0.1", "100.000", "-9999999999.99",
                                  "1234567890.123456", "9007199254740993",
                                  "12345678901234567890.1234", "0.0000000001"])
def test_decimals_read_back_by_decimal_decode_are_counted_when_they_differ(text):
    # decimal_decode: an integer through Decimal.new (exact), a float through
    # Decimal.from_float (its shortest round-trip digits, as Python's repr). The lossy count
    # must be exactly the values Ecto reads back different.
    stored, lossy = numeric_value(text)
    read = Decimal(stored) if isinstance(stored, int) else Decimal(repr(stored))
    assert lossy == (read != Decimal(text))


def test_booleans_uuids_and_json_are_what_the_codec_decodes():
    # bool_decode accepts 0/1 (what every rule writes for booleans); the default
    # binary_id_type :string reads a UUID as text unchanged (case matters: lowercase, as
    # Ecto.UUID casts); json_decode reads JSON text, so arrays are JSON, never {a,b}.
    assert uuid_text([uuid.UUID("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")]) == (
        ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"], 0)
    assert json_text_array([["a b", None, "é"]]) == (['["a b",null,"é"]'], 0)
