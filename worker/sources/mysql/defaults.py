"""Column defaults, MySQL → SQLite, written as the column's rule writes its values.

A literal is re-rendered the way the rule renders data (a datetime default in the profile's
format, a SET default as a JSON array, a boolean as 0/1), so new rows compare with copied
ones. CURRENT_TIMESTAMP becomes SQLite's clock in the same format. `ON UPDATE
CURRENT_TIMESTAMP` has no SQLite counterpart: reported, the app must set the value.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

from worker.core.ddl import now_sql
from worker.core.identifiers import string_literal as _text
from worker.core.profiles import ISO_PROFILES, ColumnContext
from worker.core.scratch import Scratch
from worker.core.transpile import ExpressionError
from worker.sources.mysql import expr as mysql_expr
from worker.sources.mysql.catalog import MyColumn

_NOW = re.compile(r"^(current_timestamp|now|localtimestamp|localtime)(\(\d*\))?$",
                  re.IGNORECASE)
_TODAY = re.compile(r"^(curdate\(\)|current_date(\(\))?)$", re.IGNORECASE)
_NUMBER_RULES = {"integer", "unsigned", "boolean", "decimal", "float", "year", "bit"}
_TEXT_RULES = {"text", "enum", "override_text", "text_form", "json", "decimal_text"}
_TEMPORAL_RULES = {"datetime", "timestamp", "utc_datetime", "naive_datetime"}


def on_update(col: MyColumn) -> str | None:
    found = re.search(r"on update (\S+)", col.extra)
    return found.group(1) if found else None


def default_sql(col: MyColumn, rule: str, ctx: ColumnContext,
                scratch: Scratch) -> tuple[str | None, str]:
    """(SQLite DEFAULT expression or None, the reason when None)."""
    expr = (col.default or "").strip()
    if _NOW.match(expr):
        return now_default(col, rule, ctx), ""
    if _TODAY.match(expr):
        return "CURRENT_DATE", ""
    try:
        value = mysql_expr.literal_value(expr)
    except ExpressionError:
        return _expression_default(expr, scratch)
    return _literal_default(value, col, rule, ctx)


def _expression_default(expr: str, scratch: Scratch) -> tuple[str | None, str]:
    if re.match(r"^\(?\s*uuid(_short)?\(\)", expr, re.IGNORECASE):
        return None, "SQLite has no UUID generator: the app must supply the value"
    try:
        sql = mysql_expr.to_sqlite(expr)
    except ExpressionError as exc:
        return None, str(exc)
    problem = scratch.error(f"SELECT ({sql})")
    if problem:
        return None, f"SQLite cannot evaluate {sql}: {problem}"
    return f"({sql})", ""


def _literal_default(value: str | int | float, col: MyColumn, rule: str,
                     ctx: ColumnContext) -> tuple[str | None, str]:
    if rule in _NUMBER_RULES:
        try:
            number = float(value) if rule in ("decimal", "float") else int(value)
        except (TypeError, ValueError):
            return None, f"{value!r} is not a number"
        if rule == "year" and number == 0:
            return None, "zero year 0000: NULL, as the data"
        return repr(number) if isinstance(number, float) else str(number), ""
    if rule in _TEXT_RULES:
        return _text(str(value)), ""
    if rule == "set":
        return _text(json.dumps(str(value).split(",") if value else [],
                                ensure_ascii=False, separators=(",", ":"))), ""
    if rule in _TEMPORAL_RULES or rule == "date":
        return _temporal(str(value), col, rule, ctx)
    if rule == "time":
        return _text(_time(str(value), col, ctx)), ""
    return None, f"a literal default for the {rule} rule is not rewritten: set it in the app"


def _time(text: str, col: MyColumn, ctx: ColumnContext) -> str:
    """A time literal as values.time_sql renders the column's values (`12:00:00.000000` is
    `12:00:00` where the profile writes a fraction only when non-zero)."""
    found = re.fullmatch(r"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?", text.strip())
    if found is None or int(found.group(1)) > 23:
        return text  # outside one day: MySQL's own text, as the data
    clock, micros = text.strip()[:8], int((found.group(4) or "0").ljust(6, "0"))
    if ctx.profile == "ecto":
        return clock + (f".{micros:06d}" if col.fsp else "")
    clock += f".{micros:06d}" if micros else ""
    return "2000-01-01 " + clock if ctx.profile == "rails" else clock


def _temporal(text: str, col: MyColumn, rule: str, ctx: ColumnContext) -> tuple[str | None, str]:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None, f"{text!r} is a zero or invalid date: NULL, as the data"
    if rule == "date":
        return _text(value.strftime("%Y-%m-%d")), ""
    utc = rule in ("timestamp", "utc_datetime") or (rule == "datetime" and
                                                     ctx.utc_timestamps)
    iso = ctx.profile in ISO_PROFILES
    base = value.strftime("%Y-%m-%dT%H:%M:%S" if iso else "%Y-%m-%d %H:%M:%S")
    fraction = f".{value.microsecond:06d}"
    if ctx.profile == "ecto":
        base += fraction if col.fsp else ""
    elif value.microsecond:
        base += fraction
    return _text(base + ("Z" if utc and iso else "")), ""


def now_default(col: MyColumn, rule: str, ctx: ColumnContext) -> str:
    """The current time as the column's rule writes times, so new rows compare with old."""
    if rule == "date":
        return "CURRENT_DATE"
    if rule not in _TEMPORAL_RULES:
        return "CURRENT_TIMESTAMP"
    utc = rule in ("timestamp", "utc_datetime") or (rule == "datetime" and ctx.utc_timestamps)
    return now_sql(ctx.profile, utc=utc, fraction=bool(col.fsp))
