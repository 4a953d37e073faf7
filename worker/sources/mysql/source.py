"""MySQL and MariaDB, the source: connect, reflect the schema, stream a table in key order.

The module is the MySQL `Source` (worker/sources/base.py): sources.for_kind hands it out.

The driver is mysql-connector-python with its C extension, the fastest of the drivers that
report a result cut short (ops/bench/MYSQL_DRIVERS.md: MariaDB's own connector is faster but
ends an unbuffered result silently when the server kills the query or the connection). It
talks to MySQL 8 and MariaDB. Its errors, and SQLAlchemy's, are translated here, once, into
liteshift's own; nothing above this module catches a driver exception.

Every query this module sends is plain text with literals rendered here (keyset values
included): no parameters means the text protocol, so a value always arrives in the same
form, whether a table is read from its start or resumed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from operator import itemgetter
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import unquote, urlsplit

import mysql.connector
from _mysql_connector import MySQLInterfaceError
from mysql.connector import errors as my_errors

from worker.core import driver_errors
from worker.core.errors import SourceError
from worker.core.logs import get_logger
from worker.core.model import Plan, TablePlan
from worker.sources.mysql import catalog, keys
from worker.sources.mysql.catalog import MySchema, MyTable
from worker.sources.url import SourceURL

KIND = "mysql"

# Values are rendered by the server (worker/sources/mysql/typemap.py), so the session pins
# what renderings depend on: UTC for TIMESTAMP, utf8mb4 results whatever the column's
# charset (the server converts latin1 & co. correctly, cp1252 quirks included), an empty
# sql_mode so zero dates read back as they are stored (the rules turn them into NULL,
# counted) and expressions in the catalog come back with backticks (no ANSI_QUOTES), and long
# timeouts so a slow writer never has the server drop a streaming result.
SESSION_SETTINGS = (
    "SET NAMES utf8mb4",
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION sql_mode = ''",
    "SET SESSION net_write_timeout = 3600",
    "SET SESSION net_read_timeout = 3600",
)
FLAVOR_SETTINGS = {
    "mariadb": ("SET SESSION max_statement_time = 0",),
    # MySQL 8 caches information_schema.TABLES (AUTO_INCREMENT, row estimates) for a day.
    "mysql": ("SET SESSION max_execution_time = 0",
              "SET SESSION information_schema_stats_expiry = 0"),
}

PERMANENT_ERRNOS = {
    1044: "access to the database denied",
    1045: "wrong user name or password",
    1049: "the database does not exist",
    1142: "permission denied on a table",
    1143: "permission denied on a column",
    1146: "a table does not exist (was it dropped?)",
    1054: "a column does not exist (did the table change?)",
    1227: "a privilege is missing",
    1251: "the server wants an authentication method this client does not have",
    1698: "access denied for this user",
    2005: "unknown host; check the URL",
}
# Connection refused, lost, killed, server shutting down, too many connections, deadlock,
# statement timeouts: worth a retry from the last committed chunk.
TRANSIENT_ERRNOS = {1040, 1053, 1205, 1213, 1317, 1927, 2002, 2003, 2006, 2013, 2026, 2055,
                    3024, 1969, 4031}
FETCH_ROWS = 2_000  # rows per fetch when rows are narrow
FETCH_BYTES = 8 * 1024 * 1024  # about this much per fetch when rows hold blobs or long text


def translate_error(exc: BaseException, *, what: str) -> SourceError:
    """One place that turns a driver error into ours, with advice a person can act on."""
    return driver_errors.translate_error(exc, what=what, permanent=_permanent,
                                         transient=_transient, refused=_refused)


def _permanent(orig: BaseException, text: str) -> str | None:
    errno = getattr(orig, "errno", None)
    return f"{PERMANENT_ERRNOS[errno]} ({text})" if errno in PERMANENT_ERRNOS else None


def _transient(orig: BaseException) -> bool:
    operational, _ = driver_errors.sqlalchemy_errors()
    return getattr(orig, "errno", None) in TRANSIENT_ERRNOS or isinstance(
        orig, (my_errors.OperationalError, my_errors.InterfaceError, *operational))


def _refused(orig: BaseException) -> bool:
    _, any_error = driver_errors.sqlalchemy_errors()
    return isinstance(orig, (my_errors.Error, *any_error))


class Connection:
    """A driver connection and what the session learnt about its server."""

    def __init__(self, raw: Any, database: str, flavor: str):
        self.raw = raw
        self.database = database
        self.flavor = flavor

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql, tuple(params)) if params else cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []
        finally:
            cursor.close()


def _credentials(source: SourceURL) -> dict[str, Any]:
    parts = urlsplit(source.url)
    return {"user": unquote(parts.username or "") or None,
            "password": unquote(parts.password or "") if parts.password is not None else None,
            "host": source.host or "localhost", "port": source.port,
            "database": source.database}


# utf8mb4_general_ci exists in MySQL 8 and MariaDB alike; the driver's default
# (utf8mb4_0900_ai_ci) is unknown to MariaDB.
DRIVER_OPTIONS = {"charset": "utf8mb4", "collation": "utf8mb4_general_ci", "use_pure": False,
                  "autocommit": True}


@contextmanager
def connect(source: SourceURL, *, timeout_s: int = 10) -> Iterator[Connection]:
    try:
        raw = mysql.connector.connect(**_credentials(source), connection_timeout=timeout_s,
                                      **DRIVER_OPTIONS)
    except my_errors.Error as exc:
        raise translate_error(exc, what=f"connecting to {source.redacted}") from None
    try:
        try:
            conn = Connection(raw, source.database, "mysql")
            version = conn.query("SELECT VERSION()")[0][0]
            conn.flavor = "mariadb" if "mariadb" in str(version).lower() else "mysql"
            for statement in SESSION_SETTINGS + FLAVOR_SETTINGS[conn.flavor]:
                conn.query(statement)
        except my_errors.Error as exc:
            raise translate_error(exc, what=f"setting up the session on {source.redacted}") \
                from None
        if type(raw).__name__ != "CMySQLConnection":
            get_logger().warning("mysql_driver_slow", reason="mysql-connector's C extension "
                                 "did not load: reading with its pure-Python protocol (3-5x "
                                 "slower); install a version whose wheel fits this system")
        yield conn
    finally:
        try:
            raw.close()
        except my_errors.Error:
            pass  # the connection was already cut (KILL, network): nothing to close


def schema_exists(conn: Connection, schema: str) -> bool:
    """MySQL has no schemas inside a database: the URL's database is the one copied, and the
    job's schema must be left at its default or name that same database."""
    return schema in ("public", conn.database)


def list_tables(conn: Connection, schema: str) -> list[str]:
    """Base tables of the URL's database (views are translated, not copied)."""
    try:
        rows = conn.query("SELECT TABLE_NAME FROM information_schema.TABLES "
                          "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' "
                          "ORDER BY TABLE_NAME", (conn.database,))
    except my_errors.Error as exc:
        raise translate_error(exc, what="listing tables") from None
    return [r[0] for r in rows]


def reflect(source: SourceURL, conn: Connection, schema: str,
            names: Sequence[str]) -> MySchema:
    """Read the named tables' structure: information_schema for columns, indexes, CHECKs and
    the rest (worker/sources/mysql/catalog.py), SQLAlchemy's inspector for primary and foreign
    keys."""
    db, flavor = conn.database, conn.flavor
    try:
        columns = catalog.columns(conn.query, db, flavor)
        sizes = catalog.tables(conn.query, db)
        indexes = catalog.indexes(conn.query, db, flavor)
        checks = catalog.checks(conn.query, db, flavor)
        views = catalog.views(conn.query, db)
        others = catalog.others(conn.query, db)
    except my_errors.Error as exc:
        raise translate_error(exc, what="reading the schema") from None
    constraints = _reflect_constraints(source, names)
    tables = []
    for name in names:
        pk, fks = constraints[name]
        rows, size, next_id = sizes.get(name, (0, 0, None))
        table_columns = columns.get(name, [])
        tables.append(MyTable(
            name=name, columns=table_columns, primary_key=pk, indexes=indexes.get(name, []),
            foreign_keys=fks, checks=catalog.mark_json_columns(table_columns,
                                                               checks.get(name, [])),
            rows_estimated=rows, size_bytes=size, auto_increment=next_id))
    return MySchema(schema=db, tables=tables, flavor=flavor, views=views, others=others)


def sqlalchemy_url(source: SourceURL) -> str:
    creds = _credentials(source)
    auth = url_quote(creds["user"] or "", safe="")
    if creds["password"] is not None:
        auth += ":" + url_quote(creds["password"], safe="")
    return (f"mysql+mysqlconnector://{auth}@{creds['host']}:{creds['port']}/"
            f"{url_quote(source.database, safe='')}")


def _reflect_constraints(source: SourceURL, names: Sequence[str]) -> dict[str, tuple]:
    from sqlalchemy import create_engine, inspect
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.pool import NullPool

    engine = create_engine(sqlalchemy_url(source), poolclass=NullPool,
                           connect_args={"connection_timeout": 10, **DRIVER_OPTIONS})
    try:
        inspector = inspect(engine)
        with warnings.catch_warnings():  # "Did not recognize type 'geometry'": not needed here
            warnings.simplefilter("ignore", sa_exc.SAWarning)
            pks = {n: inspector.get_pk_constraint(n) for n in names}
            fks = {n: inspector.get_foreign_keys(n) for n in names}
    except (sa_exc.SQLAlchemyError, my_errors.Error) as exc:
        raise translate_error(exc, what="reading keys") from None
    finally:
        engine.dispose()
    return {n: (list(pks[n].get("constrained_columns") or []), list(fks[n])) for n in names}


def exact_count(conn: Connection, schema: str, table: str) -> int:
    return int(conn.query(f"SELECT count(*) FROM {keys.backtick(table)}")[0][0])


def stream_table(conn: Connection, *, schema: str, plan: TablePlan,
                 after: Sequence[Any] | None) -> Iterator[tuple]:
    """One unbuffered SELECT of the table in key order, starting after `after` (keyset
    resume). Rows come as the plan lays them out: columns, raw key values, lossy flags."""
    sql = keys.select_sql(plan, after)
    wide = [i for i, c in enumerate(plan.columns) if keys.is_wide(c.source_type)]
    raw = conn.raw
    try:
        raw.cmd_query(sql)
        fetch = _fetcher(raw)
        batch = FETCH_ROWS if not wide else 1  # one row first: how wide are they?
        while rows := fetch(batch):
            yield from rows
            if wide:
                batch = _batch_for(rows, wide)
        if raw.unread_result:  # the driver's get_rows (the fallback) ends the result itself
            raw.fetch_eof_columns()
            raw.free_result()
    except my_errors.Error as exc:
        raise translate_error(exc, what=f"reading table {plan.name!r}") from None
    except MySQLInterfaceError as exc:
        raise translate_error(_driver_error(exc), what=f"reading table {plan.name!r}") from None
    finally:
        _close(conn)


def _fetcher(raw: Any) -> Callable[[int], list[tuple[Any, ...]]]:
    """(n) -> up to n rows of the result being read. The C extension's own fetch_row in a
    C-level loop: the driver's get_rows adds a Python loop over every row's columns (for
    VECTOR values), 1 us a row, half of reading our 1M-row table."""
    fetch_row = getattr(getattr(raw, "_cmysql", None), "fetch_row", None)
    if fetch_row is None or raw.converter is not None or getattr(raw, "_raw", True):
        return lambda n: raw.get_rows(n)[0] if raw.unread_result else []
    return lambda n: list(islice(iter(fetch_row, None), n))


def _driver_error(exc: MySQLInterfaceError) -> Exception:
    """The C extension's own error as the driver's get_rows would have raised it."""
    if getattr(exc, "errno", None):
        return my_errors.get_mysql_exception(exc.errno, msg=exc.msg, sqlstate=exc.sqlstate)
    return my_errors.InterfaceError(str(exc))


def _close(conn: Connection) -> None:
    """A result left mid-way (a consumer that stopped early, an error) has its rest read
    and dropped, so the connection can run the next query."""
    try:
        if conn.raw.unread_result:
            conn.raw.consume_results()
    except (my_errors.Error, MySQLInterfaceError):
        pass  # the connection is gone (KILL, network): nothing left to read


def _batch_for(rows: list[tuple], wide: list[int]) -> int:
    """Rows per fetch so one fetch holds about FETCH_BYTES (bounded memory with blobs)."""
    size = sum(sum(map(len, filter(None, map(itemgetter(i), rows)))) for i in wide)
    per_row = max(1, size // len(rows))
    return max(1, min(FETCH_ROWS, FETCH_BYTES // per_row))



def translate(schema: MySchema, options: Mapping[str, Any] | None = None) -> Plan:
    """The plan for copying `schema` (worker/sources/mysql/translate.py)."""
    # Planning only: a reader process or a probe does not import the type rules.
    from worker.sources.mysql import translate as planner

    return planner.translate(schema, options)
