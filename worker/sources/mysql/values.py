"""Server-side renderings: the SQL that makes MySQL/MariaDB write a value in the profile's
format, so no per-value Python runs for dates and times (docs/architecture.md, "Reading
the source").

The session pins time_zone '+00:00' (TIMESTAMP renders in UTC) and an empty sql_mode (zero
dates read back as stored). Every expression here is plain MySQL 8 and MariaDB 10.4+ SQL:
DATE_FORMAT, TIME_FORMAT, MICROSECOND, HEX, INSERT, LOWER.
"""

from __future__ import annotations

from collections.abc import Callable

from worker.core.profiles import ISO_PROFILES, ColumnContext
from worker.sources.mysql.catalog import MyColumn


def _fraction_when_nonzero(c: str, value: str, base: str, zone: str, fn: str) -> str:
    return (f"IF(MICROSECOND({value}) = 0, {fn}({value}, '{base}{zone}'), "
            f"{fn}({value}, '{base}.%f{zone}'))")


def datetime_sql(utc_default: bool | None) -> Callable[[str, MyColumn, ColumnContext], str]:
    """A datetime or timestamp in the profile's format, starting with its `YYYY-MM-DD` as
    stored: a zero date, a zero month or day, or a day past the month's end (kept by
    ALLOW_INVALID_DATES) is rendered as it is, and becomes NULL, counted, in the reader
    (converter off_calendar_null, worker/sources/mysql/converters.py).

    ecto: `YYYY-MM-DDTHH:MM:SS`, plus exactly six fraction digits unless the column has no
    fractional seconds (MyXQL's :naive_datetime is datetime, :naive_datetime_usec is
    datetime(6)), `Z` when UTC. rails, django: `YYYY-MM-DD HH:MM:SS` plus `.ffffff` only when
    non-zero, no zone. plain: ISO 8601 with `T`, `.ffffff` only when non-zero, `Z` when UTC.
    UTC: TIMESTAMP columns (the session renders them in UTC), DATETIME ones with the
    utc_timestamps option; `utc_default` True/False forces it (per-column overrides).
    """
    def select(c: str, col: MyColumn, ctx: ColumnContext) -> str:
        utc = utc_default
        if utc is None:
            utc = col.data_type == "timestamp" or ctx.utc_timestamps
        iso = ctx.profile in ISO_PROFILES
        base = "%Y-%m-%dT%H:%i:%s" if iso else "%Y-%m-%d %H:%i:%s"
        zone = "Z" if (utc and iso) else ""
        if ctx.profile == "ecto":
            fraction = "" if not col.fsp else ".%f"
            return f"DATE_FORMAT({c}, '{base}{fraction}{zone}')"
        return _fraction_when_nonzero(c, c, base, zone, "DATE_FORMAT")
    return select


def date_sql(c: str, col: MyColumn, ctx: ColumnContext) -> str:
    """`YYYY-MM-DD` as stored (off the calendar: NULL in the reader, as datetime_sql's)."""
    return f"DATE_FORMAT({c}, '%Y-%m-%d')"


def time_out_of_day(c: str) -> str:
    return f"({c} < '00:00:00' OR {c} >= '24:00:00')"


def time_flag(c: str, col: MyColumn, ctx: ColumnContext) -> str:
    return time_out_of_day(c)


def time_sql(c: str, col: MyColumn, ctx: ColumnContext) -> str:
    """ecto: `HH:MM:SS` for time(0), else `HH:MM:SS.ffffff`; others: fraction when non-zero;
    rails: on the date 2000-01-01, as ActiveRecord's SQLite adapter writes a time (so its
    `where(clock: t)` finds the row). Outside one day (MySQL's time is a duration up to
    ±838 h): MySQL's own text."""
    if ctx.profile == "ecto":
        rendered = f"TIME_FORMAT({c}, '%H:%i:%s{'.%f' if col.fsp else ''}')"
    else:
        rendered = _fraction_when_nonzero(c, c, "%H:%i:%s", "", "TIME_FORMAT")
        if ctx.profile == "rails":
            rendered = f"CONCAT('2000-01-01 ', {rendered})"
    return f"CASE WHEN {time_out_of_day(c)} THEN CAST({c} AS CHAR) ELSE {rendered} END"


def uuid_sql(c: str, col: MyColumn, ctx: ColumnContext) -> str:
    """binary(16) → 8-4-4-4-12 lowercase hex (MySQL 8's BIN_TO_UUID is not in MariaDB);
    django's UUIDField stores 32 hex digits without hyphens."""
    hexed = f"LOWER(HEX({c}))"
    if ctx.profile == "django":
        return hexed
    return f"INSERT(INSERT(INSERT(INSERT({hexed}, 21, 0, '-'), 17, 0, '-'), 13, 0, '-'), 9, 0, '-')"


def django_decimal_flag(c: str) -> str:
    """True where Django reads a value other than MySQL's: its SQLite converter rounds every
    decimal it reads to 15 significant digits (decimal.Context(prec=15)), and a decimal of at
    most 15 comes back exact from the nearest REAL. Significant digits: without sign, point,
    leading and trailing zeros (MySQL's decimals stay far inside a REAL's range)."""
    return f"LENGTH(TRIM(BOTH '0' FROM REPLACE(REPLACE(CAST({c} AS CHAR), '-', ''), '.', ''))) > 15"
