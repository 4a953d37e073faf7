"""Source kinds → the functions that read them: `sources.for_kind(kind).connect(...)`.

Each kind has one module talking to its database (pg_source, mysql_source) and one turning
its reflected schema into the plan (translate, mysql_translate). Callers (plan, copying,
verify, probe) go through here and never name a driver module, so a new kind is one entry.
Modules are imported on first use: the API imports source_url but never a driver.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("postgres", "mysql")


@dataclass(frozen=True)
class Source:
    kind: str
    connect: Callable[..., Any]  # (SourceURL, *, timeout_s) -> context manager of a conn
    schema_exists: Callable[[Any, str], bool]
    list_tables: Callable[[Any, str], list[str]]
    reflect: Callable[..., Any]  # (SourceURL, conn, schema, names) -> reflected schema
    translate: Callable[..., Any]  # (reflected schema, options) -> translate.Plan
    # (conn, *, schema, plan, after) -> rows in key order, laid out as the plan says: tuples,
    # pgcopy.CopyMessages that chunks.make_chunks encodes without Python values, or a
    # pgcopy.LibpqCopy that reads whole chunks in C
    stream_table: Callable[..., Any]


def for_kind(kind: str) -> Source:
    if kind == "postgres":
        return _postgres()
    if kind == "mysql":
        return _mysql()
    raise ValueError(f"unknown source kind {kind!r}; known: {', '.join(KINDS)}")


def import_readers() -> None:
    """Import every kind's reading module and driver now (reader and probe processes kept
    started ahead, worker/sources/standby.py). A missing driver is left to be told with the
    request that needs it."""
    for kind in KINDS:
        with contextlib.suppress(ImportError):
            for_kind(kind)


def _postgres() -> Source:
    from worker.native import pgcopy
    from worker.sources.postgres import source as pg_source
    from worker.sources.postgres.translate import translate

    def stream_table(conn: Any, *, schema: str, plan: Any,
                     after: Sequence[Any] | None) -> Iterator[Any] | pgcopy.LibpqCopy:
        # Text arrives as the connection's encoding: the C codec writes it as UTF-8 str.
        codec = pgcopy.codec_for(plan) if conn.info.encoding == "utf-8" else None
        where = dict(schema=schema, table=plan.name, select_sql=plan.select_sql, key=plan.key,
                     key_types=plan.key_types, after=after)
        functions = pgcopy.libpq_functions(conn.pgconn) if codec else None
        if codec and functions:
            return pgcopy.LibpqCopy(lambda: pg_source.binary_copy(conn, **where), codec,
                                    functions)
        rows = pg_source.stream_rows(conn, wire_types=None if codec else plan.wire_types,
                                     **where)
        return pgcopy.CopyMessages(rows, codec) if codec else rows

    return Source(kind="postgres", connect=pg_source.connect,
                  schema_exists=pg_source.schema_exists, list_tables=pg_source.list_tables,
                  reflect=pg_source.reflect, translate=translate, stream_table=stream_table)


def _mysql() -> Source:
    from worker.sources.mysql import source as mysql_source

    def translate(*args: Any, **kwargs: Any) -> Any:
        # Planning only: a reader process or a probe does not import the type rules.
        from worker.sources.mysql.translate import translate

        return translate(*args, **kwargs)

    return Source(kind="mysql", connect=mysql_source.connect,
                  schema_exists=mysql_source.schema_exists,
                  list_tables=mysql_source.list_tables, reflect=mysql_source.reflect,
                  translate=translate, stream_table=mysql_source.stream_table)
