"""Output profiles and per-column overrides: who will read the SQLite file, and how.

A profile names the framework whose SQLite adapter reads the file (the README's "Profiles"
section says what each reads): `ecto` (default), `rails`, `django`, or `plain` (no
framework: canonical ISO 8601 text). Job options refine it:

- `exact_decimals` (bool): numeric/decimal/money columns are declared TEXT and keep every
  digit, instead of a DECIMAL column that SQLite's NUMERIC affinity stores as INTEGER or REAL.
- `utc_timestamps` (bool): `timestamp without time zone` columns hold UTC; the profiles that
  mark UTC (`ecto`, `plain`) write them with `Z`.
- `binary_uuids`, `geometry_wkt` (bool, MySQL sources): binary(16) columns as UUID text,
  geometry as WKT text instead of WKB.
- `column_types` ({"table.column": override}): wins over the others, for one column. The
  override vocabulary is OVERRIDES below.

This module is pure data and validation: the API imports it, so no database drivers here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.core.errors import InputError

PROFILES = ("ecto", "rails", "django", "plain")
# Profiles that write ISO 8601 with `T` and mark UTC with `Z`; the others (rails, django)
# write `YYYY-MM-DD HH:MM:SS` and never a zone.
ISO_PROFILES = ("ecto", "plain")

# Per-column overrides ("table.column": name). Each names a rule in a source's typemap that
# wins over the column's own type; a column type the override cannot apply to is refused at
# plan time with the reason.
OVERRIDES: dict[str, str] = {
    "utc_datetime": "timestamp/timestamptz written as UTC, with Z where the profile marks UTC",
    "naive_datetime": "timestamp/timestamptz written as UTC wall time, never with Z",
    "text": "any column: PostgreSQL's own text form, declared TEXT",
    "decimal_text": "numeric/money: the exact decimal as TEXT",
    "decimal": "numeric/money: a DECIMAL column (NUMERIC affinity), inexact values counted",
    "json": "any column: to_json() of the value, declared TEXT",
    # MySQL/MariaDB sources only (worker/sources/mysql/typemap.py)
    "uuid_text": "MySQL binary(16): a UUID, as 36-char lowercase text",
    "blob": "MySQL binary/blob: the bytes (wins over the binary_uuids option)",
    "wkt": "MySQL geometry: WKT text",
    "wkb": "MySQL geometry: WKB bytes (wins over the geometry_wkt option)",
}


@dataclass(frozen=True)
class ColumnContext:
    """Everything besides the source column that decides its rule and output."""
    profile: str = "ecto"
    exact_decimals: bool = False
    utc_timestamps: bool = False
    override: str | None = None
    binary_uuids: bool = False  # MySQL binary(16) columns hold UUIDs: 36-char lowercase text
    geometry_wkt: bool = False  # MySQL geometry as WKT text instead of WKB blobs


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse unknown profiles and overrides before a job is queued."""
    profile = options.get("profile", "ecto")
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    if profile == "django" and options.get("exact_decimals"):
        # Django's SQLite DecimalField converter takes a float or an int
        # (Context.create_decimal_from_float): TEXT makes every read raise TypeError.
        raise InputError(
            "exact_decimals cannot be used with the django profile: Django reads a decimal "
            "column on SQLite only as a number, and every read of a TEXT decimal fails. Drop "
            "exact_decimals (values past 15 significant digits are rounded, and counted in the "
            "report), or name the columns your models read as text with column_types "
            "{\"table.column\": \"decimal_text\"}")
    for column, override in (options.get("column_types") or {}).items():
        if not isinstance(column, str) or "." not in column:
            raise InputError(f"column_types key {column!r} must be 'table.column'")
        if override not in OVERRIDES:
            raise InputError(f"column_types[{column!r}] = {override!r} is not an override; "
                             f"choose one of {', '.join(OVERRIDES)}")


def context_for(options: Mapping[str, Any] | None, table: str, column: str) -> ColumnContext:
    options = options or {}
    overrides = options.get("column_types") or {}
    return ColumnContext(
        profile=options.get("profile") or "ecto",
        exact_decimals=bool(options.get("exact_decimals")),
        utc_timestamps=bool(options.get("utc_timestamps")),
        override=overrides.get(f"{table}.{column}"),
        binary_uuids=bool(options.get("binary_uuids")),
        geometry_wkt=bool(options.get("geometry_wkt")),
    )
