"""MySQL/MariaDB → SQLite type mapping, as data: an ordered rule table, first match wins.

What a rule names (declared type, the SELECT that makes the server render the value,
converter, lossy flag, CHECK) and how a column is matched are worker/core/rules.py's; here
are MySQL's rules, rendering with worker/sources/mysql/values.py. Rows arrive as the
driver's Python values, so the rules name no wire type.

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

from collections.abc import Callable

from worker.core import rules
from worker.core.profiles import ColumnContext as Ctx
from worker.core.rules import Rule, is_type, override, typed
from worker.sources.mysql import values as render
from worker.sources.mysql.catalog import BINARY_TYPES, GEOMETRY_TYPES, INTEGER_TYPES, TEXT_TYPES
from worker.sources.mysql.catalog import MyColumn as Col

# Per-column overrides understood here (column_types), and the rule each selects:
# PostgreSQL's vocabulary where it applies, plus "uuid_text", "blob" and "wkt"/"wkb".
OVERRIDE_RULES = {"text": "override_text", "utc_datetime": "utc_datetime",
                  "naive_datetime": "naive_datetime", "decimal_text": "decimal_text",
                  "decimal": "decimal", "uuid_text": "uuid", "blob": "blob",
                  "wkt": "geometry_wkt", "wkb": "geometry"}

Sql = Callable[[str, Col, Ctx], str]  # (quoted column, column, context) -> SQL


def _nocase(declared: Callable[[Col, Ctx], str]) -> Callable[[Col, Ctx], str]:
    return lambda col, ctx: declared(col, ctx) + (" COLLATE NOCASE" if col.nocase else "")


def _as_is(c: str, col: Col, ctx: Ctx) -> str:
    return c


def _as_text(c: str, col: Col, ctx: Ctx) -> str:
    return f"CAST({c} AS CHAR)"


def _decimal_type(col: Col, ctx: Ctx) -> str:
    return rules.decimal_type(f"({col.precision},{col.scale})" if col.precision is not None else "",
                        ctx)


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
    return rules.labels_check(c, col.labels)


def _json_type(col: Col, ctx: Ctx) -> str:
    # ActiveRecord's mysql2 adapter sees MariaDB's JSON alias as the longtext it is, and
    # reads a String; a `json` column on SQLite would parse it into a Hash instead.
    if ctx.profile == "rails":
        return "json" if col.data_type == "json" else "text"
    return typed("TEXT", "json", "text")(col, ctx)


def _json_select(c: str, col: Col, ctx: Ctx) -> str:
    # MySQL 8's native JSON arrives with the binary charset in some drivers: cast to text.
    # MariaDB's JSON is longtext already.
    return f"CAST({c} AS CHAR)" if col.data_type == "json" else c


_TEXTUAL = TEXT_TYPES + ("enum", "set", "json", "date", "datetime", "timestamp", "time",
                         "year", "decimal", "float", "double") + INTEGER_TYPES
# Dates off the calendar become NULL, counted, in the reader: worker/sources/mysql/values.py
OFF_CALENDAR = "off_calendar_null"
_ZERO_NOTE = ("zero dates (0000-00-00), zero parts and invalid dates become NULL, counted")

RULES: tuple[Rule[Col], ...] = (
    # Per-column overrides and options first: a person's explicit choice wins.
    Rule("override_text", lambda col, ctx: ctx.override == "text" and col.data_type in
         _TEXTUAL, typed("TEXT"), _as_text, note="override: MySQL's own text form"),
    Rule("utc_datetime", override("utc_datetime", "datetime", "timestamp"),
         typed("TEXT", "datetime(6)", "datetime"), render.datetime_sql(True),
         converter=OFF_CALENDAR, lossy=True, note="override: UTC; " + _ZERO_NOTE),
    Rule("naive_datetime", override("naive_datetime", "datetime", "timestamp"),
         typed("TEXT", "datetime(6)", "datetime"), render.datetime_sql(False),
         converter=OFF_CALENDAR, lossy=True, note="override: without Z; " + _ZERO_NOTE),
    Rule("decimal_text", lambda col, ctx: col.data_type == "decimal" and (
            ctx.override == "decimal_text" or (ctx.override is None and ctx.exact_decimals)),
         typed("TEXT"), _as_text, note="exact decimal text (exact_decimals)"),
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
    Rule("uuid", _is_uuid, typed("TEXT", "varchar", "char(32)"), render.uuid_sql,
         note="binary(16) as a UUID: lowercase 36-char text (django: 32 hex digits)"),
    # MariaDB's own uuid type (10.7+; Django's UUIDField there): its text is hyphenated.
    Rule("uuid_native", is_type("uuid"), typed("TEXT", "varchar", "char(32)"),
         lambda c, col, ctx: (f"REPLACE(CAST({c} AS CHAR), '-', '')" if ctx.profile == "django"
                              else f"CAST({c} AS CHAR)"),
         note="lowercase 36-char text (django: 32 hex digits, as its UUIDField stores it)"),
    Rule("blob", lambda col, ctx: ctx.override == "blob" and col.data_type in BINARY_TYPES,
         typed("BLOB", "blob"), _as_is, note="override: the bytes"),
    Rule("geometry_wkt", _is_wkt, typed("TEXT"), lambda c, col, ctx: f"ST_AsText({c})",
         note="WKT text; the SRID is not kept"),
    Rule("geometry", lambda col, ctx: col.data_type in GEOMETRY_TYPES and ctx.override in (
            None, "wkb"), typed("BLOB", "blob"), lambda c, col, ctx: f"ST_AsBinary({c})",
         note="WKB (OGC well-known binary); the SRID is not kept"),
    # tinyint(1) before the integers: 0/1 is what ecto_sqlite3, Rails and Django read back.
    Rule("boolean", _is_bool, typed("INTEGER", "boolean", "bool"), _as_is,
         flag=lambda c, col, ctx: f"{c} NOT IN (0, 1)", lossy=True,
         note="tinyint(1) as a boolean, 0/1; other values kept as they are, counted"),
    Rule("unsigned", _is_big_unsigned, typed(""),
         lambda c, col, ctx: f"CAST({c} AS UNSIGNED)" if col.data_type == "bit" else c,
         converter="unsigned_text", lossy=True,
         note="declared without a type (BLOB affinity): integers up to 2^63-1, larger "
              "values as exact text, counted"),
    Rule("integer", is_type(*INTEGER_TYPES), typed("INTEGER"), _as_is),
    Rule("year", is_type("year"), typed("INTEGER"),
         lambda c, col, ctx: f"NULLIF({c} + 0, 0)", flag=lambda c, col, ctx: f"{c} = 0",
         lossy=True, note="the year as an integer; MySQL's zero year 0000 becomes NULL, "
                          "counted"),
    Rule("bit", is_type("bit"), typed("INTEGER"), lambda c, col, ctx: f"CAST({c} AS UNSIGNED)",
         note="the bits as an unsigned integer"),
    Rule("float", is_type("float", "double", "real"), typed("REAL", "float", "real"), _as_is,
         converter="negative_zero", lossy=True,
         note="float as MySQL prints it (shortest form), double exact; -0 becomes 0 (as "
              "SQLite's REAL would store it), counted"),
    Rule("timestamp", is_type("timestamp"), typed("TEXT", "datetime(6)", "datetime"),
         render.datetime_sql(None), converter=OFF_CALENDAR, lossy=True,
         note="ISO 8601 in UTC, with Z where the profile marks UTC; " + _ZERO_NOTE),
    Rule("datetime", is_type("datetime"), typed("TEXT", "datetime(6)", "datetime"),
         render.datetime_sql(None), converter=OFF_CALENDAR, lossy=True,
         note="ISO 8601 without zone (Z with utc_timestamps); " + _ZERO_NOTE),
    Rule("date", is_type("date"), typed("TEXT", "date", "date"), render.date_sql,
         converter=OFF_CALENDAR, lossy=True, note="YYYY-MM-DD; " + _ZERO_NOTE),
    Rule("time", is_type("time"), typed("TEXT", "time", "time"), render.time_sql,
         flag=render.time_flag, lossy=True,
         note="HH:MM:SS[.ffffff] as the profile writes it; values outside 0–24h keep "
              "MySQL's text (-01:02:03, 100:00:00), counted"),
    Rule("json", lambda col, ctx: ctx.override is None and col.json, _json_type, _json_select,
         converter=lambda col, ctx: (rules.json_converter(ctx.profile)
                                     if _json_type(col, ctx) != "text" else None),
         check=rules.django_json_check,
         note="JSON text as the server prints it; rails: MariaDB's JSON (longtext) as text, "
              "the String ActiveRecord reads there; django: non-ASCII escaped as json.dumps "
              "writes it"),
    Rule("enum", is_type("enum"), _nocase(typed("TEXT")), _as_is, check=_enum_check,
         note="label text, with a CHECK of the labels"),
    # CAST: the driver would hand over a Python set, which has no order.
    Rule("set", is_type("set"), typed("TEXT"), _as_text, converter="set_json",
         note="JSON array of the members, in the column's order"),
    Rule("binary", is_type(*BINARY_TYPES), typed("BLOB", "blob"), _as_is,
         note="the bytes (binary(n) with its zero padding, as stored)"),
    Rule("text", is_type(*TEXT_TYPES), _nocase(_varchar), _as_is,
         note="decoded by the server from the column's character set"),
    # Last: anything else keeps MySQL's canonical text, and the report says so.
    Rule("text_form", lambda col, ctx: True, typed("TEXT"), _as_text,
         note="no specific rule: MySQL's text form, reported"),
)


def rule_for(column: Col, ctx: Ctx | None = None) -> Rule[Col]:
    return rules.rule_for(RULES, column, ctx)
