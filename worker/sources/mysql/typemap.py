"""MySQL/MariaDB → SQLite type mapping, as data: an ordered rule table, first match wins.

Same shape as worker/sources/postgres/typemap.py: each rule names, given the column and its context (profile,
job options, per-column override), the SQLite declared type, the SELECT expression that makes
the server render the value (worker/sources/mysql/values.py), an optional column converter (worker/core/converters.py),
an optional flag (SQL true where the value took a lossy fallback, counted per column), an
optional column CHECK, and whether it can lose information.

Every value a rule produces is an int, float, str, bytes or None that SQLite stores unchanged
under the declared type's affinity: the checksum covers the values as bound, and
verification reads them back.

Documented rules worth knowing (the report repeats each column's note):
- `tinyint(1)` is a boolean: INTEGER 0/1; other values are kept as they are and counted.
- `bigint unsigned` (not the rowid key) is declared without a type (BLOB affinity, so
  SQLite keeps what it is given): values up to 2^63-1 are integers, larger ones exact TEXT,
  counted. INTEGER or NUMERIC affinity would turn them into approximate REALs. A bigint
  unsigned single-column primary key is the rowid; a value past 2^63-1 fails the table.
- Zero dates (`0000-00-00`), zero parts (`2024-00-10`) and invalid dates kept by
  ALLOW_INVALID_DATES (`2024-02-30`) become NULL, counted per column. `year` 0000 too.
- `time` values outside 00:00:00–23:59:59.999999 (MySQL allows ±838 hours) keep MySQL's
  text (`-01:02:03`, `100:00:00`), counted.
- Case-insensitive collations (`*_ci`) become `COLLATE NOCASE` on TEXT columns: lookups and
  UNIQUE indexes stay case-insensitive for ASCII letters; accent- and non-ASCII-case folding
  (é = É, e = é under *_ai_ci) is MySQL's only, so SQLite's UNIQUE is never stricter than
  MySQL's was, but lookups that relied on it miss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.core.profiles import context_for
from worker.sources.mysql import values as render
from worker.sources.mysql.catalog import BINARY_TYPES, GEOMETRY_TYPES, INTEGER_TYPES, TEXT_TYPES
from worker.sources.mysql.catalog import MyColumn as Col


@dataclass(frozen=True)
class Ctx:
    """The column's context: profiles.ColumnContext plus the MySQL-only options."""
    profile: str = "ecto"
    exact_decimals: bool = False
    utc_timestamps: bool = False
    override: str | None = None
    binary_uuids: bool = False  # binary(16) columns hold UUIDs: 36-char lowercase text
    geometry_wkt: bool = False  # geometry as WKT text instead of WKB blobs


# Per-column overrides understood here (column_types): PostgreSQL's vocabulary where it
# applies, plus "uuid_text", "blob" and "wkt"/"wkb".
OVERRIDES = {"text", "utc_datetime", "naive_datetime", "decimal_text", "decimal",
             "uuid_text", "blob", "wkt", "wkb"}


def context(options: Mapping[str, Any] | None, table: str, column: str) -> Ctx:
    base = context_for(options, table, column)
    options = options or {}
    return Ctx(profile=base.profile, exact_decimals=base.exact_decimals,
               utc_timestamps=base.utc_timestamps, override=base.override,
               binary_uuids=bool(options.get("binary_uuids")),
               geometry_wkt=bool(options.get("geometry_wkt")))


Sql = Callable[[str, Col, Ctx], str]  # (quoted column, column, context) -> SQL


@dataclass(frozen=True)
class Rule:
    name: str
    matches: Callable[[Col, Ctx], bool]
    sqlite_type: Callable[[Col, Ctx], str]
    select: Sql
    converter: str | Callable[[Col, Ctx], str | None] | None = None
    flag: Sql | None = None
    check: Sql | None = None
    lossy: bool = False
    note: str = ""


def _is(*types: str) -> Callable[[Col, Ctx], bool]:
    return lambda col, ctx: ctx.override is None and col.data_type in types


def _override(name: str, *types: str) -> Callable[[Col, Ctx], bool]:
    return lambda col, ctx: ctx.override == name and (not types or col.data_type in types)


def _typed(ecto: str, rails: str | None = None, django: str | None = None,
           plain: str | None = None) -> Callable[[Col, Ctx], str]:
    """Declared type per profile: what each framework's own migrations would write."""
    names = {"ecto": ecto, "rails": rails or ecto, "django": django or ecto,
             "plain": plain or ecto}
    return lambda col, ctx: names[ctx.profile]


def _nocase(declared: Callable[[Col, Ctx], str]) -> Callable[[Col, Ctx], str]:
    return lambda col, ctx: declared(col, ctx) + (" COLLATE NOCASE" if col.nocase else "")


def _as_is(c: str, col: Col, ctx: Ctx) -> str:
    return c


def _as_text(c: str, col: Col, ctx: Ctx) -> str:
    return f"CAST({c} AS CHAR)"


def _decimal_type(col: Col, ctx: Ctx) -> str:
    size = f"({col.precision},{col.scale})" if col.precision is not None else ""
    if ctx.profile == "django":
        return "decimal"  # Django declares the type without its size on SQLite
    return {"rails": "decimal", "plain": "NUMERIC"}.get(ctx.profile, "DECIMAL") + size


def _varchar(col: Col, ctx: Ctx) -> str:
    if ctx.profile in ("rails", "django") and col.data_type in ("varchar", "char"):
        return f"{col.data_type}({col.length})"
    return "TEXT"


def _is_bool(col: Col, ctx: Ctx) -> bool:
    return ctx.override is None and col.type_sql.lower().startswith("tinyint(1)")


def _is_big_unsigned(col: Col, ctx: Ctx) -> bool:
    return ctx.override is None and (
        (col.data_type == "bigint" and col.unsigned) or
        (col.data_type == "bit" and (col.precision or 1) > 63))


def _is_uuid(col: Col, ctx: Ctx) -> bool:
    binary16 = col.data_type == "binary" and col.length == 16
    return binary16 and (ctx.override == "uuid_text" or (ctx.override is None and
                                                         ctx.binary_uuids))


def _is_wkt(col: Col, ctx: Ctx) -> bool:
    return col.data_type in GEOMETRY_TYPES and (
        ctx.override == "wkt" or (ctx.override is None and ctx.geometry_wkt))


def _enum_check(c: str, col: Col, ctx: Ctx) -> str:
    labels = ", ".join("'" + label.replace("'", "''") + "'" for label in col.labels)
    return f"{c} IN ({labels})"


def _django_json_check(c: str, col: Col, ctx: Ctx) -> str:
    return f"JSON_VALID({c}) OR {c} IS NULL" if ctx.profile == "django" else ""


def _json_select(c: str, col: Col, ctx: Ctx) -> str:
    # MySQL 8's native JSON arrives with the binary charset in some drivers: cast to text.
    # MariaDB's JSON is longtext already.
    return f"CAST({c} AS CHAR)" if col.data_type == "json" else c


_TEXTUAL = TEXT_TYPES + ("enum", "set", "json", "date", "datetime", "timestamp", "time",
                         "year", "decimal", "float", "double") + INTEGER_TYPES
_ZERO_NOTE = ("zero dates (0000-00-00), zero parts and invalid dates become NULL, counted")

RULES: tuple[Rule, ...] = (
    # Per-column overrides and options first: a person's explicit choice wins.
    Rule("override_text", lambda col, ctx: ctx.override == "text" and col.data_type in
         _TEXTUAL, _typed("TEXT"), _as_text, note="override: MySQL's own text form"),
    Rule("utc_datetime", _override("utc_datetime", "datetime", "timestamp"),
         _typed("TEXT", "datetime(6)", "datetime"), render.datetime_sql(True),
         flag=render.bad_date_flag, lossy=True, note="override: UTC; " + _ZERO_NOTE),
    Rule("naive_datetime", _override("naive_datetime", "datetime", "timestamp"),
         _typed("TEXT", "datetime(6)", "datetime"), render.datetime_sql(False),
         flag=render.bad_date_flag, lossy=True, note="override: without Z; " + _ZERO_NOTE),
    Rule("decimal_text", lambda col, ctx: col.data_type == "decimal" and (
            ctx.override == "decimal_text" or (ctx.override is None and ctx.exact_decimals)),
         _typed("TEXT"), _as_text, note="exact decimal text (exact_decimals)"),
    Rule("decimal", lambda col, ctx: col.data_type == "decimal" and ctx.override in (
            None, "decimal"), _decimal_type, _as_text,
         # django's flag counts a superset of what numeric_affinity counts: one or the other
         converter=lambda col, ctx: "numeric_float" if ctx.profile == "django"
         else "numeric_affinity",
         flag=lambda c, col, ctx: render.django_decimal_flag(c) if ctx.profile == "django"
         else "", lossy=True,
         note="stored as SQLite's NUMERIC affinity would (INTEGER or REAL); values REAL "
              "cannot hold exactly (past 15 significant digits) counted; django: every "
              "value past 15 significant digits, which its reader rounds"),
    Rule("uuid", _is_uuid, _typed("TEXT", "varchar", "char(32)"), render.uuid_sql,
         note="binary(16) as a UUID: lowercase 36-char text (django: 32 hex digits)"),
    # MariaDB's own uuid type (10.7+; Django's UUIDField there): its text is hyphenated.
    Rule("uuid_native", _is("uuid"), _typed("TEXT", "varchar", "char(32)"),
         lambda c, col, ctx: (f"REPLACE(CAST({c} AS CHAR), '-', '')" if ctx.profile == "django"
                              else f"CAST({c} AS CHAR)"),
         note="lowercase 36-char text (django: 32 hex digits, as its UUIDField stores it)"),
    Rule("blob", lambda col, ctx: ctx.override == "blob" and col.data_type in BINARY_TYPES,
         _typed("BLOB", "blob"), _as_is, note="override: the bytes"),
    Rule("geometry_wkt", _is_wkt, _typed("TEXT"), lambda c, col, ctx: f"ST_AsText({c})",
         note="WKT text; the SRID is not kept"),
    Rule("geometry", lambda col, ctx: col.data_type in GEOMETRY_TYPES and ctx.override in (
            None, "wkb"), _typed("BLOB", "blob"), lambda c, col, ctx: f"ST_AsBinary({c})",
         note="WKB (OGC well-known binary); the SRID is not kept"),
    # tinyint(1) before the integers: 0/1 is what ecto_sqlite3, Rails and Django read back.
    Rule("boolean", _is_bool, _typed("INTEGER", "boolean", "bool"), _as_is,
         flag=lambda c, col, ctx: f"{c} NOT IN (0, 1)", lossy=True,
         note="tinyint(1) as a boolean, 0/1; other values kept as they are, counted"),
    Rule("unsigned", _is_big_unsigned, _typed(""),
         lambda c, col, ctx: f"CAST({c} AS UNSIGNED)" if col.data_type == "bit" else c,
         converter="unsigned_text", lossy=True,
         note="declared without a type (BLOB affinity): integers up to 2^63-1, larger "
              "values as exact text, counted"),
    Rule("integer", _is(*INTEGER_TYPES), _typed("INTEGER"), _as_is),
    Rule("year", _is("year"), _typed("INTEGER"),
         lambda c, col, ctx: f"NULLIF({c} + 0, 0)", flag=lambda c, col, ctx: f"{c} = 0",
         lossy=True, note="the year as an integer; MySQL's zero year 0000 becomes NULL, "
                          "counted"),
    Rule("bit", _is("bit"), _typed("INTEGER"), lambda c, col, ctx: f"CAST({c} AS UNSIGNED)",
         note="the bits as an unsigned integer"),
    Rule("float", _is("float", "double", "real"), _typed("REAL", "float", "real"), _as_is,
         converter="negative_zero", lossy=True,
         note="float as MySQL prints it (shortest form), double exact; -0 becomes 0 (as "
              "SQLite's REAL would store it), counted"),
    Rule("timestamp", _is("timestamp"), _typed("TEXT", "datetime(6)", "datetime"),
         render.datetime_sql(None), flag=render.bad_date_flag, lossy=True,
         note="ISO 8601 in UTC, with Z where the profile marks UTC; " + _ZERO_NOTE),
    Rule("datetime", _is("datetime"), _typed("TEXT", "datetime(6)", "datetime"),
         render.datetime_sql(None), flag=render.bad_date_flag, lossy=True,
         note="ISO 8601 without zone (Z with utc_timestamps); " + _ZERO_NOTE),
    Rule("date", _is("date"), _typed("TEXT", "date", "date"), render.date_sql,
         flag=render.bad_date_flag, lossy=True, note="YYYY-MM-DD; " + _ZERO_NOTE),
    Rule("time", _is("time"), _typed("TEXT", "time", "time"), render.time_sql,
         flag=render.time_flag, lossy=True,
         note="HH:MM:SS[.ffffff] as the profile writes it; values outside 0–24h keep "
              "MySQL's text (-01:02:03, 100:00:00), counted"),
    Rule("json", lambda col, ctx: ctx.override is None and col.json,
         _typed("TEXT", "json", "text"), _json_select,
         converter=lambda col, ctx: "numeric_text" if ctx.profile == "rails" else None,
         check=_django_json_check, note="JSON text as the server prints it"),
    Rule("enum", _is("enum"), _nocase(_typed("TEXT")), _as_is, check=_enum_check,
         note="label text, with a CHECK of the labels"),
    # CAST: the driver would hand over a Python set, which has no order.
    Rule("set", _is("set"), _typed("TEXT"), _as_text, converter="set_json",
         note="JSON array of the members, in the column's order"),
    Rule("binary", _is(*BINARY_TYPES), _typed("BLOB", "blob"), _as_is,
         note="the bytes (binary(n) with its zero padding, as stored)"),
    Rule("text", _is(*TEXT_TYPES), _nocase(_varchar), _as_is,
         note="decoded by the server from the column's character set"),
    # Last: anything else keeps MySQL's canonical text, and the report says so.
    Rule("text_form", lambda col, ctx: True, _typed("TEXT"), _as_text,
         note="no specific rule: MySQL's text form, reported"),
)


def rule_for(column: Col, ctx: Ctx | None = None) -> Rule:
    ctx = ctx or Ctx()
    return next(rule for rule in RULES if rule.matches(column, ctx))


def converter_for(rule: Rule, column: Col, ctx: Ctx) -> str | None:
    if callable(rule.converter):
        return rule.converter(column, ctx)
    return rule.converter


def rule_names() -> list[str]:
    return [rule.name for rule in RULES]
