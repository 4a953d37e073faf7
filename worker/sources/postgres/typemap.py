"""PostgreSQL → SQLite type mapping, as data: an ordered rule table, first match wins.

What a rule names (declared type, the SELECT that makes the server render the value, its
binary COPY wire type, converter, lossy flag, CHECK) and how a table is matched are
worker/core/rules.py's; here are PostgreSQL's rules. A lossy flag costs one boolean per row.

Every value a rule produces must be stored unchanged by SQLite under the declared type's
affinity (text in TEXT columns, integers in INTEGER, floats in REAL, and for NUMERIC-affinity
columns what the affinity would make of them): the checksum covers the values as bound, and
verification reads them back.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from worker import native
from worker.core import rules
from worker.core.datetime_text import DatetimeFormat
from worker.core.profiles import ISO_PROFILES
from worker.core.profiles import ColumnContext as Ctx
from worker.core.rules import Rule, is_type, override, typed
from worker.sources.postgres import values as render
from worker.sources.postgres.source import PgColumn

Sql = Callable[[str, PgColumn, Ctx], str]  # (quoted column, column, context) -> SQL


def _in_c() -> bool:
    """With worker/native/_pgcopy.c the reader converts decimals and timestamps and counts the
    inexact ones itself, for a fraction of what the server's expressions cost (the decimal
    flag, a timestamp's to_char and range flag: ops/bench/RESULTS.md). Without it the server
    renders them, as per-value Python would be slower still."""
    return native.extension("_pgcopy") is not None


def _cast_text(c: str, col: PgColumn, ctx: Ctx) -> str:
    return f"{c}::text"


def _to_json(c: str, col: PgColumn, ctx: Ctx) -> str:
    return f"to_json({c})::text"


def _decimal_type(col: PgColumn, ctx: Ctx) -> str:
    found = re.search(r"numeric\((\d+),(\d+)\)", col.type_sql)
    # money has two fraction digits and fits in 19 digits (its int8 of cents).
    size = "(19,2)" if col.typname == "money" else (
        f"({found.group(1)},{found.group(2)})" if found else "")
    return rules.decimal_type(size, ctx)


def _numeric_text(c: str, col: PgColumn, ctx: Ctx) -> str:
    return f"{c}::numeric::text" if col.typname == "money" else f"{c}::text"


def _decimal_converter(col: PgColumn, ctx: Ctx) -> str:
    # numeric_affinity counts what REAL cannot hold; django's flag counts more (a superset),
    # so under django the converter must not count too.
    return "numeric_affinity" if _in_c() and ctx.profile != "django" else "numeric_float"


def _decimal_flag(c: str, col: PgColumn, ctx: Ctx) -> str | None:
    if ctx.profile == "django":
        return render.django_decimal_flag(c, col, ctx)
    return None if _in_c() else render.numeric_flag(c, col, ctx)


def _varchar(col: PgColumn, ctx: Ctx) -> str:
    if ctx.profile in ("rails", "django") and col.typname == "varchar":
        return col.type_sql.replace("character varying", "varchar")
    return "TEXT"


def _utc(utc_default: bool | None, col: PgColumn, ctx: Ctx) -> bool:
    """utc_default None: decided by the column (timestamptz) and the utc_timestamps option."""
    if utc_default is None:
        return col.typname == "timestamptz" or ctx.utc_timestamps
    return utc_default


def _datetime(utc_default: bool | None) -> Sql:
    def select(c: str, col: PgColumn, ctx: Ctx) -> str:
        if _in_c():
            return c  # its binary microseconds; datetime_text / _pgcopy.c write the text
        return render.datetime_sql(c, col, ctx, utc=_utc(utc_default, col, ctx))
    return select


def _datetime_converter(utc_default: bool | None) -> Callable[[PgColumn, Ctx], str | None]:
    def converter(col: PgColumn, ctx: Ctx) -> str | None:
        if not _in_c():
            return None
        iso = ctx.profile in ISO_PROFILES
        fraction = ("nonzero" if ctx.profile != "ecto"
                    else "never" if render.precision(col) == 0 else "always")
        return DatetimeFormat(iso=iso, fraction=fraction,
                              zone=iso and _utc(utc_default, col, ctx),
                              tz=col.typname == "timestamptz").name
    return converter


def _datetime_wire(col: PgColumn, ctx: Ctx) -> str:
    return "int8" if _in_c() else "text"  # int8: the 8 bytes of microseconds, as they are


def _datetime_flag(kind: str) -> Callable[[str, PgColumn, Ctx], str | None]:
    return lambda c, col, ctx: None if _in_c() else render.out_of_range_flag(kind)(c, col, ctx)


def _text_array_in_c(col: PgColumn) -> bool:
    """Text arrays go raw to _pgcopy.c, which writes them as to_json would, for less than
    the server's to_json costs; other arrays the server renders."""
    return col.element in ("text", "varchar") and _in_c()


def _uuid_in_c(ctx: Ctx) -> bool:
    """uuids go raw to _pgcopy.c, which writes uuid_out's text for less than the server's
    cast costs; django's 32 hex digits the server renders."""
    return ctx.profile != "django" and _in_c()


def _array_wire(col: PgColumn, ctx: Ctx) -> str:
    return f"{col.element}[]" if _text_array_in_c(col) else "text"


def _array(c: str, col: PgColumn, ctx: Ctx) -> str:
    element = col.element
    if _text_array_in_c(col):
        return c
    if element not in ("timestamp", "timestamptz", "time"):
        return render.json_array_sql(c, None)
    elem = PgColumn(name="_ls_e", type_sql=col.type_sql.removesuffix("[]"), typname=element,
                    typtype="b", category="D", nullable=True, default=None, generated="",
                    identity="")
    if element == "time":
        inner = rule_for(elem, Ctx(profile=ctx.profile, utc_timestamps=ctx.utc_timestamps))
        return render.json_array_sql(c, inner.select("_ls_e", elem, ctx))
    # Rendered by the server even with _pgcopy.c, which reads no arrays.
    return render.json_array_sql(c, render.datetime_sql("_ls_e", elem, ctx,
                                                        utc=_utc(None, elem, ctx)))


def _enum_check(c: str, col: PgColumn, ctx: Ctx) -> str:
    return rules.labels_check(c, col.enum_labels)


_TEMPORAL_NOTE = ("infinity, -infinity, BC and year-10000+ values keep PostgreSQL's text "
                  "('infinity', '… BC') and are counted")
_GEOMETRIC = ("point", "line", "lseg", "box", "path", "polygon", "circle")

RULES: tuple[Rule[PgColumn], ...] = (
    # Per-column overrides first: a person's explicit choice wins over every type rule.
    Rule("override_text", override("text"), typed("TEXT"), _cast_text, "text",
         note="override: PostgreSQL's text form"),
    Rule("override_json", override("json"), typed("TEXT"), _to_json, "text",
         note="override: to_json() of the value"),
    Rule("utc_datetime", override("utc_datetime", "timestamp", "timestamptz"),
         typed("TEXT", "datetime(6)", "datetime"), _datetime(True), _datetime_wire,
         converter=_datetime_converter(True), flag=_datetime_flag("timestamp"), lossy=True,
         note="override: UTC, with Z where the profile marks UTC; " + _TEMPORAL_NOTE),
    Rule("naive_datetime", override("naive_datetime", "timestamp", "timestamptz"),
         typed("TEXT", "datetime(6)", "datetime"), _datetime(False), _datetime_wire,
         converter=_datetime_converter(False), flag=_datetime_flag("timestamp"), lossy=True,
         note="override: UTC wall time without Z; " + _TEMPORAL_NOTE),
    Rule("decimal_text", lambda col, ctx: col.typname in ("numeric", "money") and (
            ctx.override == "decimal_text" or (ctx.override is None and ctx.exact_decimals)),
         typed("TEXT"), _numeric_text, "text", note="exact decimal text (exact_decimals)"),
    Rule("decimal", lambda col, ctx: col.typname in ("numeric", "money") and (
            ctx.override in (None, "decimal")), _decimal_type, _numeric_text, "text",
         converter=_decimal_converter, flag=_decimal_flag, lossy=True,
         note="stored as SQLite's NUMERIC affinity would (INTEGER or REAL); values REAL "
              "cannot hold exactly (past 15 significant digits) and NaN (→ NULL) counted; "
              "django: every value past 15 significant digits, which its reader rounds"),
    # bool before the integers: 0/1 is what ecto_sqlite3, Rails and Django read back.
    Rule("boolean", is_type("bool"), typed("INTEGER", "boolean", "bool"),
         lambda c, col, ctx: f"{c}::int4::int8", "int8"),
    Rule("integer", is_type("int2", "int4", "int8", "oid", "xid", "cid"), typed("INTEGER"),
         lambda c, col, ctx: f"{c}::int8", "int8"),
    Rule("float", is_type("float4", "float8"), typed("REAL", "float", "real"),
         lambda c, col, ctx: render.float_sql(c, col), "float8", flag=render.float_flag,
         lossy=True, note="NaN becomes NULL (SQLite has no NaN) and -0 becomes 0, counted; "
                          "±Infinity kept"),
    Rule("timestamptz", is_type("timestamptz"), typed("TEXT", "datetime(6)", "datetime"),
         _datetime(None), _datetime_wire, converter=_datetime_converter(None),
         flag=_datetime_flag("timestamptz"), lossy=True,
         note="ISO 8601 in UTC in the profile's format; " + _TEMPORAL_NOTE),
    Rule("timestamp", is_type("timestamp"), typed("TEXT", "datetime(6)", "datetime"),
         _datetime(None), _datetime_wire, converter=_datetime_converter(None),
         flag=_datetime_flag("timestamp"), lossy=True,
         note="ISO 8601 without zone (Z with utc_timestamps); " + _TEMPORAL_NOTE),
    Rule("date", is_type("date"), typed("TEXT", "date", "date"), _cast_text, "text",
         flag=render.out_of_range_flag("date"), lossy=True,
         note="YYYY-MM-DD; " + _TEMPORAL_NOTE),
    Rule("time", is_type("time"), typed("TEXT", "time", "time"),
         lambda c, col, ctx: render.time_sql(c, col, ctx), "text",
         note="HH:MM:SS[.ffffff] as the profile writes it"),
    Rule("timetz", is_type("timetz"), typed("TEXT"), _cast_text, "text",
         note="PostgreSQL's text: HH:MM:SS[.ffffff]+HH[:MM] (no framework has a type for it)"),
    # Django's DurationField is a bigint of microseconds; before the general interval rule.
    Rule("interval_micros",
         lambda col, ctx: is_type("interval")(col, ctx) and ctx.profile == "django",
         typed("bigint"), lambda c, col, ctx: render.interval_micros_sql(c), "int8",
         flag=lambda c, col, ctx: f"COALESCE(extract(month FROM {c}) <> 0 "
                                  f"OR extract(year FROM {c}) <> 0, false)", lossy=True,
         note="microseconds (Django's DurationField); months (30 days) and years (365.25 "
              "days) have no exact length: such values counted"),
    Rule("interval", is_type("interval"), typed("TEXT"), _cast_text, "text",
         note="ISO 8601 duration (P1Y2M3DT4H5M6S)"),
    Rule("uuid", is_type("uuid"), typed("TEXT", "varchar", "char(32)"),
         lambda c, col, ctx: (c if _uuid_in_c(ctx) else f"replace({c}::text, '-', '')"
                              if ctx.profile == "django" else f"{c}::text"),
         lambda col, ctx: "uuid" if _uuid_in_c(ctx) else "text",
         converter=lambda col, ctx: "uuid_text" if _uuid_in_c(ctx) else None,
         note="lowercase text; django: 32 hex digits without hyphens"),
    Rule("json", is_type("json", "jsonb"), typed("TEXT", "json", "text"), _cast_text, "text",
         converter=lambda col, ctx: rules.json_converter(ctx.profile),
         check=rules.django_json_check,
         note="JSON text; rails' json column has NUMERIC affinity, so a bare number "
              "is stored as a number (counted); django: non-ASCII escaped as json.dumps "
              "writes it"),
    Rule("bytea", is_type("bytea"), typed("BLOB", "blob"), lambda c, col, ctx: c, "bytea"),
    # Arrays as JSON arrays (never PostgreSQL's {a,b}); to_json nests multi-dimensional ones.
    Rule("array", lambda col, ctx: ctx.override is None and col.category == "A",
         typed("TEXT"), _array, _array_wire,
         converter=lambda col, ctx: "json_text_array" if _text_array_in_c(col) else None,
         note="JSON array, NULL elements as null; 1-D timestamp/time arrays in the profile's "
              "format, other elements as to_json writes them"),
    Rule("hstore", is_type("hstore"), typed("TEXT"), _to_json, "text", note="JSON object"),
    # char(n) read raw: a text cast would strip the padding the value holds.
    Rule("bpchar", is_type("bpchar"), _varchar, lambda c, col, ctx: c, "bpchar",
         note="blank-padded as stored"),
    Rule("citext", is_type("citext"), typed("TEXT COLLATE NOCASE"), _cast_text, "text",
         note="COLLATE NOCASE keeps comparisons case-insensitive (ASCII letters only)"),
    Rule("text", lambda col, ctx: ctx.override is None and col.category == "S", _varchar,
         _cast_text, "text"),
    Rule("enum", lambda col, ctx: ctx.override is None and col.typtype == "e",
         typed("TEXT"), _cast_text, "text", check=_enum_check,
         note="label text, with a CHECK of the labels"),
    Rule("composite", lambda col, ctx: ctx.override is None and col.typtype == "c",
         typed("TEXT"), _to_json, "text", note="JSON object of the fields"),
    Rule("range", lambda col, ctx: ctx.override is None and col.typtype in ("r", "m"),
         typed("TEXT"), _cast_text, "text",
         note="PostgreSQL's range text: [lower,upper) (multirange: {[a,b),[c,d)})"),
    # inet::text always adds the netmask (10.0.0.1/32), which no app writes: abbrev() is
    # inet's output function, the address alone when its mask is the full length.
    Rule("inet", is_type("inet"), typed("TEXT"), lambda c, col, ctx: f"abbrev({c})", "text",
         note="address text; /32 and /128 dropped, a network keeps its mask"),
    Rule("network", is_type("cidr", "macaddr", "macaddr8"), typed("TEXT"), _cast_text,
         "text", note="address text"),
    Rule("bit", is_type("bit", "varbit"), typed("TEXT"), _cast_text, "text",
         note="text of 0 and 1"),
    Rule("xml", is_type("xml"), typed("TEXT"), _cast_text, "text", note="XML text"),
    Rule("tsvector", is_type("tsvector", "tsquery"), typed("TEXT"), _cast_text, "text",
         note="PostgreSQL's text form; SQLite has no full-text type (FTS5 is a table)"),
    Rule("geometric", is_type(*_GEOMETRIC), typed("TEXT"), _cast_text, "text",
         note="PostgreSQL's geometric text, e.g. (1,2)"),
    # Last: anything else keeps PostgreSQL's canonical text form, and the report says so.
    Rule("text_form", lambda col, ctx: True, typed("TEXT"), _cast_text, "text",
         note="no specific rule: PostgreSQL's text form, reported"),
)


# The rule each per-column override (profiles.OVERRIDES) selects.
OVERRIDE_RULES = {"text": "override_text", "json": "override_json",
                  "utc_datetime": "utc_datetime", "naive_datetime": "naive_datetime",
                  "decimal_text": "decimal_text", "decimal": "decimal"}


def rule_for(column: PgColumn, ctx: Ctx | None = None) -> Rule[PgColumn]:
    return rules.rule_for(RULES, column, ctx)
