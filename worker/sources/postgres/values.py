"""Server-side renderings: the SQL that makes PostgreSQL write a value in the profile's format.

Rendering on the server keeps per-value Python off the hot path (docs/architecture.md,
"Reading the source"). Each function takes the quoted column (or any SQL expression), the
column, and its context, and returns one SQL expression. The session pins TimeZone=UTC and
DateStyle=ISO (worker/sources/postgres/source.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from worker.core.profiles import ISO_PROFILES, ColumnContext
from worker.sources.postgres.source import PgColumn


def precision(col: PgColumn) -> int | None:
    found = re.search(r"\((\d+)", col.type_sql)
    return int(found.group(1)) if found else None


def in_range(c: str, kind: str) -> str:
    """True where the value has an ISO 8601 form every reader parses: finite, AD, 4 digits."""
    return (f"(isfinite({c}) AND {c} >= '0001-01-01'::{kind} "
            f"AND {c} < '10000-01-01'::{kind})")


def out_of_range_flag(kind: str) -> Callable[[str, PgColumn, ColumnContext], str]:
    """Flag for rules that write an out-of-range value as PostgreSQL's own text."""
    return lambda c, col, ctx: f"COALESCE(NOT {in_range(c, kind)}, false)"


def datetime_sql(c: str, col: PgColumn, ctx: ColumnContext, *, utc: bool) -> str:
    """A timestamp or timestamptz in the profile's format, in UTC.

    ecto: `YYYY-MM-DDTHH:MM:SS` plus exactly six fraction digits unless the column is
    timestamp(0) (Ecto's :*_datetime vs :*_datetime_usec), `Z` when UTC.
    rails, django: `YYYY-MM-DD HH:MM:SS` plus `.ffffff` only when non-zero, no zone.
    plain: ISO 8601 with `T`, `.ffffff` only when non-zero, `Z` when UTC.
    Infinite, BC and year-10000+ values keep PostgreSQL's text and are counted (flag).
    """
    kind = "timestamptz" if col.typname == "timestamptz" else "timestamp"
    value = f"({c} AT TIME ZONE 'UTC')" if kind == "timestamptz" else c
    iso = ctx.profile in ISO_PROFILES
    base = 'YYYY-MM-DD"T"HH24:MI:SS' if iso else "YYYY-MM-DD HH24:MI:SS"
    zone = '"Z"' if (utc and iso) else ""
    if ctx.profile == "ecto":
        fraction = "" if precision(col) == 0 else ".US"
        render = f"to_char({value}, '{base}{fraction}{zone}')"
    else:
        render = (f"CASE WHEN date_trunc('second', {value}) = {value} "
                  f"THEN to_char({value}, '{base}{zone}') "
                  f"ELSE to_char({value}, '{base}.US{zone}') END")
    return f"CASE WHEN {in_range(c, kind)} THEN {render} ELSE {c}::text END"


def time_sql(c: str, col: PgColumn, ctx: ColumnContext) -> str:
    """ecto: `HH:MM:SS` for time(0), else `HH:MM:SS.ffffff`; others: fraction when non-zero;
    rails: on the date 2000-01-01, as ActiveRecord's SQLite adapter writes a time (so its
    `where(clock: t)` finds the row)."""
    if ctx.profile == "ecto":
        fraction = "" if precision(col) == 0 else ".US"
        return f"to_char({c}, 'HH24:MI:SS{fraction}')"
    day = '"2000-01-01 "' if ctx.profile == "rails" else ""
    return (f"CASE WHEN extract(microseconds FROM {c})::int8 % 1000000 = 0 "
            f"THEN to_char({c}, '{day}HH24:MI:SS') ELSE to_char({c}, '{day}HH24:MI:SS.US') END")


def json_array_sql(c: str, element_sql: str | None) -> str:
    """An array as a JSON array (never PostgreSQL's `{a,b}`), NULL elements as null.

    With `element_sql` (an expression over `_ls_e`), one-dimensional arrays render each
    element that way (timestamps in the profile's format); other arrays use to_json, which
    nests multi-dimensional arrays and writes elements as JSON does (ISO 8601 with offset).
    """
    if element_sql is None:
        return f"to_json({c})::text"
    return (f"CASE WHEN {c} IS NULL THEN NULL "
            f"WHEN array_ndims({c}) IS DISTINCT FROM 1 THEN to_json({c})::text "
            f"ELSE (SELECT json_agg({element_sql} ORDER BY _ls_o) "
            f"FROM unnest({c}) WITH ORDINALITY AS _ls_u(_ls_e, _ls_o))::text END")


def interval_micros_sql(c: str) -> str:
    """Django's DurationField on SQLite: a bigint of microseconds."""
    return f"(extract(epoch FROM {c}) * 1000000)::int8"


def float_sql(c: str, col: PgColumn) -> str:
    """NaN becomes NULL (SQLite has none); -0.0 becomes 0.0, as SQLite's REAL storage would
    (`+ 0.0` does it in IEEE arithmetic). real (float4) keeps its shortest decimal form."""
    value = f"{c}::text::float8" if col.typname == "float4" else f"{c}::float8"
    return f"CASE WHEN {c} = 'NaN' THEN NULL ELSE {value} + 0.0 END"


def float_flag(c: str, col: PgColumn, ctx: ColumnContext) -> str:
    return f"COALESCE({c} = 'NaN' OR ({c} = 0 AND {c}::text LIKE '-%'), false)"


def numeric_flag(c: str, col: PgColumn, ctx: ColumnContext) -> str:
    """True where a decimal is stored inexactly: converters.numeric_float writes an integral
    value within int64 as INTEGER, anything else as the nearest REAL, which is exact when its
    shortest text (extra_float_digits = 3, as Python's repr) reads back equal. NaN is lost;
    values float8 cannot hold (and which would make the cast fail) are counted first."""
    n = f"{c}::numeric" if col.typname == "money" else c
    return (f"COALESCE(CASE WHEN {n} = 'NaN' THEN true "
            f"WHEN {n} IN ('Infinity', '-Infinity') THEN false "
            f"WHEN {n} = trunc({n}) AND {n} BETWEEN -9223372036854775808 "
            f"AND 9223372036854775807 THEN false "
            f"WHEN abs({n}) > 1.7976931348623157e308 OR ({n} <> 0 AND abs({n}) < "
            f"2.4703282292062328e-324) THEN true "
            f"ELSE {n}::float8::text::numeric <> {n} END, false)")


def django_decimal_flag(c: str, col: PgColumn, ctx: ColumnContext) -> str:
    """True where Django reads a value other than the source's. Its SQLite converter reads
    every decimal through decimal.Context(prec=15).create_decimal_from_float, so a value past
    15 significant digits is rounded even where REAL holds it; one of at most 15 digits comes
    back exact from the nearest REAL, unless it is NaN, infinite or outside float8's normal
    range. Significant digits: the digits without sign, point, leading and trailing zeros."""
    n = f"{c}::numeric" if col.typname == "money" else c
    digits = f"length(trim(both '0' from replace(abs({n})::text, '.', '')))"
    return (f"COALESCE(CASE WHEN {n} IN ('NaN', 'Infinity', '-Infinity') THEN true "
            f"WHEN abs({n}) > 1.7976931348623157e308 OR ({n} <> 0 AND abs({n}) < "
            f"2.2250738585072014e-308) THEN true ELSE {digits} > 15 END, false)")
