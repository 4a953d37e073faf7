"""PostgreSQL, the source: connect, reflect the schema, stream a table in key order.

The module is the PostgreSQL `Source` (worker/sources/base.py): sources.for_kind hands it out.

psycopg and SQLAlchemy errors are translated here, once, into liteshift's own; nothing above
this module catches a driver exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from worker.core import driver_errors
from worker.core.errors import SourceError, SourceRejected, SourceUnavailable
from worker.core.logs import get_logger
from worker.core.model import Plan, TablePlan
from worker.core.redact import redact
from worker.native import pgcopy
from worker.sources.ambient import NO_FILE
from worker.sources.base import Rows
from worker.sources.postgres import catalog as pg_catalog
from worker.sources.postgres.keys import after_clause, select_list
from worker.sources.url import SourceURL

KIND = "postgres"

# Values are rendered by the server where it can (docs/architecture.md, "Reading the
# source": no per-value Python on the hot path), so
# the session must pin the formats those renderings depend on.
SESSION_SETTINGS = (
    "SET TIME ZONE 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'iso_8601'",
    "SET extra_float_digits = 3",
    "SET statement_timeout = 0",
)

PERMANENT_SQLSTATES = {
    "28P01": "wrong user name or password",
    "28000": "the server refused this user",
    "3D000": "the database does not exist",
    "42P01": "a table does not exist (was it dropped?)",
    "42703": "a column does not exist (did the table change?)",
    "42501": "permission denied",
    "3F000": "the schema does not exist",
}


@dataclass
class PgColumn:
    name: str
    type_sql: str  # format_type(): "numeric(12,2)", "timestamp(0) without time zone", ...
    typname: str  # the base type's name: int4, numeric, _text, ...
    typtype: str  # b base, e enum, c composite, r range, m multirange, p pseudo
    category: str  # pg_type.typcategory: A array, S string, N numeric, ...
    nullable: bool
    default: str | None
    generated: str  # "" or "s" (stored generated column)
    identity: str  # "" or "a"/"d"
    element: str = ""  # an array's element type name
    enum_labels: list[str] = field(default_factory=list)
    domain: str = ""  # the domain's name when the column's type is a domain
    domain_checks: list[str] = field(default_factory=list)  # its CHECKs, VALUE for the value
    sequence: str | None = None  # the sequence a serial or identity column owns
    sequence_value: int | None = None  # its last value (None: never used, or not readable)

    @property
    def type_name(self) -> str:
        """The name the type rules match (worker/core/rules.py)."""
        return self.typname


@dataclass
class PgTable:
    name: str
    columns: list[PgColumn]
    primary_key: list[str]
    unique: list[dict[str, Any]]  # {"name", "columns"}
    indexes: list[dict[str, Any]]  # pg_catalog.indexes() dicts: keys, desc, where, ...
    foreign_keys: list[dict[str, Any]]  # SQLAlchemy's reflected FK dicts
    rows_estimated: int
    size_bytes: int
    kind: str = "r"  # pg_class.relkind: r table, p partitioned, m materialized view
    checks: list[dict[str, Any]] = field(default_factory=list)  # {"name", "expr", ...}


@dataclass
class PgSchema:
    schema: str
    tables: list[PgTable]
    others: list[dict[str, str]] = field(default_factory=list)  # triggers, functions, ...
    views: list[dict[str, str]] = field(default_factory=list)  # {"name", "sql"}


def translate_error(exc: BaseException, *, what: str) -> SourceError:
    """One place that turns a driver error into ours, with advice a person can act on."""
    return driver_errors.translate_error(exc, what=what, permanent=_permanent,
                                         transient=_transient,
                                         refused=lambda e: isinstance(e, psycopg.Error))


def _permanent(orig: BaseException, text: str) -> str | None:
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in PERMANENT_SQLSTATES:
        return f"{PERMANENT_SQLSTATES[sqlstate]} ({text})"
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return f"wrong user name or password ({text})"
    if "does not exist" in lowered and "role" in lowered:
        return f"the user does not exist ({text}); check the URL"
    if "no pg_hba.conf entry" in lowered:
        return (f"the server does not accept this user from here ({text}); ask its "
                "administrator to allow it in pg_hba.conf")
    if "does not exist" in lowered and "database" in lowered:
        return f"the database does not exist ({text}); check the URL"
    if "could not translate host name" in lowered or "name or service not known" in lowered:
        return f"unknown host ({text}); check the URL"
    if isinstance(orig, psycopg.errors.InvalidCatalogName):
        return f"the database does not exist ({text})"
    return None


def _transient(orig: BaseException) -> bool:
    operational, _ = driver_errors.sqlalchemy_errors()
    return isinstance(orig, (psycopg.OperationalError, *operational))


def connect_params(source: SourceURL, *, timeout_s: int) -> dict[str, Any]:
    """libpq's keywords for `source`, built from its parts alone (worker/sources/url.py).
    Whatever libpq would otherwise take from the service's home or environment is named:
    no password file, no client certificate, no Kerberos ticket. The host's addresses are
    checked against the operator's allow-list and libpq dials those (hostaddr), in order."""
    addresses = source.addresses()
    params: dict[str, Any] = {
        "host": ",".join([source.host] * len(addresses)),  # for TLS: the name, not the address
        "hostaddr": ",".join(addresses),
        "port": ",".join([str(source.port)] * len(addresses)),
        "dbname": source.database, "user": source.user,
        "password": source.password or "",  # given, even empty: PGPASSWORD is not read then
        "passfile": NO_FILE, "sslcertmode": "disable", "gssencmode": "disable",
        "require_auth": "!gss,!sspi",  # the service's Kerberos credentials are not ours to use
        "sslmode": source.param("sslmode") or "prefer",
        "connect_timeout": timeout_s, "application_name": "liteshift",
    }
    if source.param("sslrootcert"):
        params["sslrootcert"] = source.param("sslrootcert")
    return params


def connect_error(exc: psycopg.Error, source: SourceURL) -> SourceError:
    """What the caller is told when connecting fails: that the source refused the login, has
    no such database, or could not be reached. libpq's own text can tell which local files
    exist or what bytes a port answered with, so it goes to this process's log only."""
    what = f"connecting to {source.redacted}"
    text = str(exc).lower()
    get_logger().warning("source_connect_failed", source=source.redacted,
                         detail=redact(str(exc).strip()))
    if any(words in text for words in ("password authentication failed", "no password supplied",
                                       "no pg_hba.conf entry", "authentication failed for")) \
            or ("role" in text and "does not exist" in text):
        return SourceRejected(f"{what}: the source refused the login: wrong user name or "
                              "password, or this user may not connect from here")
    if 'database "' in text and "does not exist" in text:
        return SourceRejected(f"{what}: the database does not exist; check the URL")
    return SourceUnavailable(f"{what}: connection failed: the source could not be reached or "
                             "did not answer as a PostgreSQL server (details in the service's "
                             "log); check the host and the port")


@contextmanager
def connect(source: SourceURL, *, timeout_s: int = 10) -> Iterator[psycopg.Connection]:
    params = connect_params(source, timeout_s=timeout_s)
    try:
        conn = psycopg.connect(autocommit=True, **params)
    except psycopg.Error as exc:
        raise connect_error(exc, source) from None
    try:
        for statement in SESSION_SETTINGS:
            conn.execute(statement)
        yield conn
    finally:
        conn.close()


def list_tables(conn: psycopg.Connection, schema: str) -> list[str]:
    """Ordinary and partitioned tables (partitions themselves are read through their parent),
    and populated materialized views, which are copied as tables with their rows."""
    rows = conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND NOT c.relispartition
             AND (c.relkind IN ('r', 'p') OR (c.relkind = 'm' AND c.relispopulated))
           ORDER BY c.relname""", (schema,)).fetchall()
    return [r[0] for r in rows]


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() \
        is not None


_SIZES_SQL = """
SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid), c.relkind::text,
       pg_relation_size(c.oid), has_table_privilege(c.oid, 'SELECT')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = ANY(%s)
"""

def reflect(source: SourceURL, conn: psycopg.Connection, schema: str,
            names: Sequence[str]) -> PgSchema:
    """Read the named tables' structure: SQLAlchemy's inspector for keys and foreign keys,
    the catalog (worker/sources/postgres/catalog.py) for exact column types (the inspector
    folds domains and arrays), CHECKs, indexes with their expressions and predicates, views
    and the rest."""
    columns: dict[str, list[PgColumn]] = {name: [] for name in names}
    listed = list(names)
    try:
        for row in pg_catalog.columns(conn, schema, listed):
            columns[row[0]].append(PgColumn(*row[1:]))
        sizes = {name: (_rows_estimated(conn, schema, name, reltuples, kind, heap, readable),
                        size, kind)
                 for name, reltuples, size, kind, heap, readable
                 in conn.execute(_SIZES_SQL, (schema, listed)).fetchall()}
        checks = pg_catalog.checks(conn, schema, listed)
        indexes = pg_catalog.indexes(conn, schema, listed)
        views = pg_catalog.views(conn, schema)
        others = pg_catalog.others(conn, schema)
    except psycopg.Error as exc:
        raise translate_error(exc, what="reading the schema") from None
    keyed = _reflect_constraints(source, schema, names)
    tables = []
    for name in names:
        pk, unique, fks = keyed[name]
        rows, size, kind = sizes.get(name, (0, 0, "r"))
        tables.append(PgTable(name=name, columns=columns[name], primary_key=pk, unique=unique,
                              indexes=indexes.get(name, []), foreign_keys=fks,
                              rows_estimated=rows, size_bytes=size, kind=kind,
                              checks=checks.get(name, [])))
    return PgSchema(schema=schema, tables=tables, others=others, views=views)


def _rows_estimated(conn: psycopg.Connection, schema: str, name: str, reltuples: int,
                    kind: str, heap_bytes: int, readable: bool) -> int:
    """pg_class's row count from the last VACUUM or ANALYZE. A table never analyzed (a new
    one, or autovacuum off) has -1 there, and its progress would show no total and an ETA of
    0 all along: then ask the planner, which estimates from the table's current size. An
    empty heap is 0 rows without asking (the planner would guess 10 pages' worth); a table
    the user may not read is too (EXPLAIN would be refused; the copy says why)."""
    if reltuples >= 0:
        return reltuples
    if not readable or (heap_bytes == 0 and kind != "p"):  # partitioned: rows in partitions
        return 0
    query = sql.SQL("EXPLAIN (FORMAT JSON) SELECT * FROM {}.{}").format(
        sql.Identifier(schema), sql.Identifier(name))
    try:  # autocommit: a refused EXPLAIN leaves the connection usable
        row = conn.execute(query).fetchone()
    except psycopg.Error:
        return 0  # only progress needs it; the copy reports the real problem
    return int(row[0][0]["Plan"]["Plan Rows"]) if row else 0


def _reflect_constraints(source: SourceURL, schema: str, names: Sequence[str]) -> dict:
    from sqlalchemy import create_engine, inspect
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.pool import NullPool

    # No URL: SQLAlchemy's dialect passes connect_params through to psycopg as they are.
    engine = create_engine("postgresql+psycopg://", poolclass=NullPool,
                           connect_args=connect_params(source, timeout_s=10))
    try:
        inspector = inspect(engine)
        wanted = list(names)
        pks: dict = inspector.get_multi_pk_constraint(schema=schema, filter_names=wanted)
        uniques: dict = inspector.get_multi_unique_constraints(schema=schema, filter_names=wanted)
        fks: dict = inspector.get_multi_foreign_keys(schema=schema, filter_names=wanted)
    except sa_exc.SQLAlchemyError as exc:
        raise translate_error(exc, what="reading the schema") from None
    finally:
        engine.dispose()
    out = {}
    for name in names:
        key = (schema, name)
        out[name] = (
            list(pks.get(key, {}).get("constrained_columns") or []),
            [{"name": u["name"], "columns": u["column_names"]} for u in uniques.get(key, [])],
            list(fks.get(key, [])),
        )
    return out


def stream_table(conn: psycopg.Connection, *, schema: str, plan: TablePlan,
                 after: Sequence[Any] | None) -> Rows:
    """The table's rows in key order after `after`: read in C from libpq (LibpqCopy), as
    COPY messages the C codec encodes (CopyMessages), or as Python tuples when the plan
    needs a converter the C code lacks or the extension is missing."""
    # Text arrives as the connection's encoding: the C codec writes it as UTF-8 str.
    codec = pgcopy.codec_for(plan) if conn.info.encoding == "utf-8" else None
    where: dict[str, Any] = dict(schema=schema, table=plan.name, select_sql=select_list(plan),
                                 key=plan.key, key_types=plan.key_types, after=after)
    functions = pgcopy.libpq_functions(conn.pgconn) if codec else None
    if codec and functions:
        return pgcopy.LibpqCopy(lambda: binary_copy(conn, **where), codec, functions)
    rows = stream_rows(conn, wire_types=None if codec else plan.wire_types, **where)
    return pgcopy.CopyMessages(rows, codec) if codec else rows


def stream_rows(conn: psycopg.Connection, *, schema: str, table: str,
                select_sql: Sequence[str], wire_types: Sequence[str] | None,
                key: Sequence[str], key_types: Sequence[str],
                after: Sequence[Any] | None) -> Iterator[Any]:
    """The table's rows (binary_copy) as tuples; with wire_types None, the raw COPY data
    messages (pgcopy.CopyMessages)."""
    with binary_copy(conn, schema=schema, table=table, select_sql=select_sql, key=key,
                     key_types=key_types, after=after) as copy:
        if wire_types is None:
            yield from copy
        else:
            copy.set_types(list(wire_types))
            yield from copy.rows()


@contextmanager
def binary_copy(conn: psycopg.Connection, *, schema: str, table: str,
                select_sql: Sequence[str], key: Sequence[str], key_types: Sequence[str],
                after: Sequence[Any] | None) -> Iterator[psycopg.Copy]:
    """One binary COPY of the table in key order, starting after `after` (keyset resume),
    open for reading; driver errors raised inside come out as ours."""
    query = sql.SQL("SELECT {cols} FROM {schema}.{table}{where}{order}").format(
        cols=sql.SQL(", ").join(sql.SQL(s) for s in select_sql),
        schema=sql.Identifier(schema), table=sql.Identifier(table),
        where=(sql.SQL(" WHERE " + after_clause(key, key_types, after))
               if key and after is not None else sql.SQL("")),
        # The table's own columns, not the SELECT's outputs of the same name: a key read
        # raw and again as text (a timestamp) would be ambiguous, and a cast output (citext
        # as text) would sort otherwise than after_clause compares.
        order=(sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(
            sql.Identifier(schema, table, k) for k in key)) if key else sql.SQL("")),
    )
    copy_sql = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)
    try:
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            yield copy
    except psycopg.Error as exc:
        raise translate_error(exc, what=f"reading table {table!r}") from None


def translate(schema: PgSchema, options: Mapping[str, Any] | None = None) -> Plan:
    """The plan for copying `schema` (worker/sources/postgres/translate.py)."""
    # Planning only: a reader process or a probe does not import the type rules.
    from worker.sources.postgres import translate as planner

    return planner.translate(schema, options)
