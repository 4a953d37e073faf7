"""Column converters for MySQL values the server cannot render in SQLite's terms.

Same contract as worker/core/converters.py (where they are registered): one column of a batch in,
(converted values, how many were inexact or counted) out, column-wise, no row loop.
"""

from __future__ import annotations

import json

INT64_MAX = 2**63 - 1
DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def unsigned_text(values: list) -> tuple[list, int]:
    """bigint unsigned / bit(64): values past SQLite's 64-bit integers as exact text, in a
    column without declared type (BLOB affinity keeps the text as text). Counted."""
    big = sum(1 for v in values if v is not None and v > INT64_MAX)
    if not big:
        return values, 0
    return [str(v) if v is not None and v > INT64_MAX else v for v in values], big


def negative_zero(values: list) -> tuple[list, int]:
    """-0.0 becomes 0.0, as SQLite's REAL storage would make it (so the checksum of what we
    bind is the checksum of what SQLite returns). Counted."""
    # `v == 0` holds for both zeros; the sign shows only in the text.
    negative = sum(1 for v in values if v is not None and v == 0 and str(v)[0] == "-")
    if not negative:
        return values, 0
    return [0.0 if v is not None and v == 0 else v for v in values], negative


def _leap(year: int) -> bool:
    # MySQL's and MariaDB's calc_days_in_year: the year 0000 is not a leap year there.
    return year % 4 == 0 and (year % 100 != 0 or (year % 400 == 0 and year != 0))


def _off_calendar(text: str) -> bool:
    """`YYYY-MM-DD…` whose date is no calendar day: a zero date, a zero month or day, or a
    day past its month's end (kept by ALLOW_INVALID_DATES)."""
    digits = text[0:4] + text[5:7] + text[8:10]
    if len(digits) != 8 or not (digits.isascii() and digits.isdigit()):
        return False  # not the server's rendering of a date: left as it is
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:])
    if month == 0 or day == 0 or month > 12:
        return True
    last = 29 if month == 2 and _leap(year) else DAYS_IN_MONTH[month - 1]
    return day > last


def off_calendar_null(values: list) -> tuple[list, int]:
    """A date or datetime rendered by the server (worker/sources/mysql/values.py) whose date
    is no calendar day becomes NULL, counted. Checked here rather than in the SELECT: the
    server's MONTH/DAYOFMONTH/LAST_DAY per value, twice (the value and its flag), was most
    of its CPU for a table of datetimes (ops/bench/RESULTS.md)."""
    bad = sum(1 for v in values if v is not None and _off_calendar(v))
    if not bad:
        return values, 0
    return [None if v is not None and _off_calendar(v) else v for v in values], bad


def _set_json(value: str | None) -> str | None:
    if value is None:
        return None
    members = value.split(",") if value else []  # MySQL forbids commas in SET labels
    return json.dumps(members, ensure_ascii=False, separators=(",", ":"))


def set_json(values: list) -> tuple[list, int]:
    """A SET's `a,b` text as a JSON array `["a","b"]` (never MySQL's comma form)."""
    return list(map(_set_json, values)), 0


MYSQL_CONVERTERS = {
    "unsigned_text": unsigned_text,
    "negative_zero": negative_zero,
    "set_json": set_json,
    "off_calendar_null": off_calendar_null,
}
