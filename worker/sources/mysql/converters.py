"""Column converters for MySQL values the server cannot render in SQLite's terms.

Same contract as worker/core/converters.py (where they are registered): one column of a batch in,
(converted values, how many were inexact or counted) out, column-wise, no row loop.
"""

from __future__ import annotations

import json

INT64_MAX = 2**63 - 1


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
}
