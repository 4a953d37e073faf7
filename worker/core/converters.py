"""Column converters: the few values the source cannot render in SQLite's terms.

Each takes one column of a batch and returns (converted values, how many were inexact). They
run column-wise (map over a list), never as a Python loop over rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from worker.core import datetime_text
from worker.sources.mysql.converters import MYSQL_CONVERTERS

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT_EXACT = float(2**53)  # every integer up to this is exact as a float

Converter = Callable[[list], tuple[list, int]]


def numeric_value(text: str | None) -> tuple[int | float | None, bool]:
    """Store a decimal as SQLite's NUMERIC affinity would store its text: an integral value
    that fits in 64 bits as INTEGER, anything else as REAL. Binding the result (not the text)
    means what we checksum is exactly what SQLite keeps; inexact values are counted."""
    if text is None:
        return None, False
    try:
        exact = Decimal(text)
    except InvalidOperation:
        return None, True
    if exact.is_nan():  # SQLite has no NaN: NULL, counted
        return None, True
    if exact.is_infinite():  # a REAL holds ±Infinity exactly
        return float(exact), False
    if exact == exact.to_integral_value():
        whole = int(exact)
        if INT64_MIN <= whole <= INT64_MAX:
            return whole, False
    approx = float(exact)
    lossy = Decimal(repr(approx)) != exact
    # SQLite stores a REAL with an integral value as INTEGER in a NUMERIC column (its
    # sqlite3VdbeIntegerAffinity: strictly inside the int64 range).
    if approx.is_integer() and INT64_MIN < approx < INT64_MAX:
        return int(approx), lossy
    return approx, lossy


def numeric_affinity(values: list) -> tuple[list, int]:
    pairs = list(map(numeric_value, values))
    return [v for v, _ in pairs], sum(lossy for _, lossy in pairs)


def _numeric_float(text: str | None) -> int | float | None:
    # The fast path of numeric_value for text PostgreSQL rendered, which also counts the
    # inexact values itself (worker/sources/postgres/values.py, numeric_flag): float() is C;
    # the exact path only for integral values past 2^53, which a float cannot hold.
    if text is None:
        return None
    approx = float(text)
    if approx.is_integer():
        # Strictly below 2^53: 9007199254740993 reads as the float 2^53, and only the exact
        # path keeps it.
        if -FLOAT_EXACT < approx < FLOAT_EXACT:
            return int(approx)
        return numeric_value(text)[0]
    return None if approx != approx else approx


def numeric_float(values: list) -> tuple[list, int]:
    return list(map(_numeric_float, values)), 0


def _numeric_text(text: str | None) -> tuple[str | int | float | None, bool]:
    # JSON bound into a NUMERIC-affinity column (rails' `json`): a bare number is stored as
    # a number, as SQLite would store its text; anything else (objects, strings) stays text.
    if text is None or text.lstrip()[:1] not in tuple("-0123456789"):
        return text, False
    value, _ = numeric_value(text)
    return value, True


def numeric_text(values: list) -> tuple[list, int]:
    pairs = list(map(_numeric_text, values))
    return [v for v, _ in pairs], sum(lossy for _, lossy in pairs)


def nan_to_null(values: list) -> tuple[list, int]:
    # NaN is the only float that is not equal to itself; SQLite would store it as NULL anyway.
    nans = sum(1 for v in values if v is not None and v != v)
    if not nans:
        return values, 0
    return [None if (v is not None and v != v) else v for v in values], nans


def uuid_text(values: list) -> tuple[list, int]:
    """uuid.UUID (psycopg's) as uuid_out writes it: lowercase, hyphenated."""
    return [None if v is None else str(v) for v in values], 0


def _json_array(value: list | None) -> str | None:
    # As to_json writes a text array: no spaces, non-ASCII as it is, control characters
    # escaped as escape_json escapes them (json's escapes are the same).
    return None if value is None else json.dumps(value, ensure_ascii=False,
                                                 separators=(",", ":"))


def json_text_array(values: list) -> tuple[list, int]:
    """A text array (psycopg's nested lists) as to_json(array)::text writes it."""
    return list(map(_json_array, values)), 0


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _u_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # a UTF-16 surrogate pair, as JSON writes characters past the BMP
        code -= 0x10000
        return f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}"
    return f"\\u{code:04x}"


def json_ascii(values: list) -> tuple[list, int]:
    """JSON text with every non-ASCII character escaped (\\u00e9), as Python's json.dumps
    writes it and so Django's JSONField on SQLite: its key lookups (`$."\\u00e9"`) and exact
    matches compare SQLite's JSON text, escapes included. Outside strings JSON has only ASCII,
    so the escapes land inside strings, the same value."""
    return [v if v is None or v.isascii() else _NON_ASCII.sub(_u_escape, v)
            for v in values], 0


# A JSON string token, or whitespace (outside strings: insignificant), or a character
# ActiveSupport escapes inside strings (its escape_html_entities_in_json default).
_JSON_TOKEN = re.compile(r'("(?:[^"\\]|\\.)*")|\s+')
_HTML_ESCAPES = re.compile("[<>&\u2028\u2029]")


def _compact(text: str) -> str:
    def token(match: re.Match[str]) -> str:
        string = match.group(1)
        if string is None:
            return ""
        return _HTML_ESCAPES.sub(lambda m: f"\\u{ord(m.group()):04x}", string)
    return _JSON_TOKEN.sub(token, text)


def rails_json(values: list) -> tuple[list, int]:
    """JSON text as ActiveSupport::JSON.encode writes it, which ActiveRecord's where(doc: h)
    compares on SQLite: no whitespace, and <, >, &, U+2028, U+2029 escaped in strings. Then
    as numeric_text: rails' json column has NUMERIC affinity (bare numbers, counted)."""
    return numeric_text([v if v is None else _compact(v) for v in values])


CONVERTERS: dict[str, Converter] = {
    "rails_json": rails_json,
    "json_ascii": json_ascii,
    "uuid_text": uuid_text,
    "json_text_array": json_text_array,
    "numeric_affinity": numeric_affinity,
    "numeric_float": numeric_float,
    "nan_to_null": nan_to_null,
    "numeric_text": numeric_text,
    **MYSQL_CONVERTERS,  # unsigned_text, negative_zero, set_json
}


def converter(name: str) -> Converter:
    """The converter a plan names: one of CONVERTERS, or a timestamp format
    (datetime_text.DatetimeFormat.name)."""
    if name in CONVERTERS:
        return CONVERTERS[name]
    fmt = datetime_text.DatetimeFormat.parse(name)
    if fmt is None:
        raise KeyError(f"unknown converter {name!r}")
    return lambda values: datetime_text.convert(values, fmt)
