"""Request bodies. Unknown fields are refused: a typo must not be silently ignored; and
strict: "yes" is not a boolean nor "5" a number, so a value is taken only as it was meant."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# PostgreSQL identifiers are at most 63 bytes; a little slack for multi-byte characters.
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    chunk_rows: int | None = Field(default=None, ge=1, le=1_000_000,
                                   description="rows per committed chunk (default: server's)")
    chunk_bytes: int | None = Field(default=None, ge=64 * 1024, le=1024 * 1024 * 1024,
                                    description="bytes per committed chunk (default: server's)")
    profile: str = Field(default="ecto", description="output profile: how values are "
                         "written, for the app that reads the file: ecto, rails, django, plain")
    # None (not False) as the default, so options a job did not set stay out of its record.
    exact_decimals: bool | None = Field(
        default=None, description="keep numeric/decimal columns exact, declared TEXT")
    utc_timestamps: bool | None = Field(
        default=None, description="timestamp without time zone columns hold UTC: write Z "
                                  "where the profile marks UTC (ecto, plain)")
    binary_uuids: bool | None = Field(
        default=None, description="MySQL sources: binary(16) columns hold UUIDs, written as "
                                  "36-char lowercase text (Ecto's binary_id_type: :string)")
    geometry_wkt: bool | None = Field(
        default=None, description="MySQL sources: geometry columns as WKT text, not WKB bytes")
    snapshot: bool | None = Field(
        default=None, description="false: read each table at its own moment instead of one "
        "snapshot of the whole source for the job (the default); the report says "
        "consistent: false")
    follow: bool | None = Field(
        default=None, description="after the copy, keep applying the source's changes to the "
        "built file until `cutover` publishes it (PostgreSQL sources)")
    column_types: dict[Name, str] | None = Field(
        default=None, description='per-column overrides, {"table.column": "utc_datetime" | '
        '"naive_datetime" | "text" | "json" | "decimal_text" | "decimal"}, and for MySQL '
        'sources "uuid_text" | "blob" | "wkt" | "wkb"; they win over profile and options')


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    source: str = Field(min_length=1, max_length=4096,
                        description="postgresql://user:password@host:5432/dbname[?sslmode=…] "
                        "or mysql://user:password@host:3306/dbname[?ssl-mode=…] (mariadb:// "
                        "too), or the name of a configured source")
    target: str = Field(description="name of the SQLite file to write: <data dir>/<target>.db")
    # `schema` is a BaseModel attribute, hence the alias.
    schema_: Name = Field(default="public", alias="schema",
                          description="PostgreSQL schema to copy; a MySQL source copies the URL's "
                          "database")
    tables: list[Name] | None = Field(default=None, description="copy only these tables")
    exclude: list[Name] = Field(default_factory=list, description="skip these tables")
    replace: bool = Field(default=False, description="replace an existing <target>.db "
                          "(the old file is kept beside it)")
    options: Options = Field(default_factory=Options)


class CutoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="how long the follow "
                             "may take to catch up with the source before cutover gives up "
                             "(the follow then goes on)")


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    source: bool = Field(default=False, description="re-read the source too and name the "
                         "first differing key per table")


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tables: list[Name] | None = Field(default=None,
                                      description="failed tables to retry (default: all)")
