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

import mysql.connector
from _mysql_connector import MySQLInterfaceError
from mysql.connector import errors as my_errors

from worker.core import driver_errors
from worker.core.errors import SourceError, SourceRejected, SourceUnavailable
from worker.core.logs import get_logger
from worker.core.model import Plan, TablePlan
from worker.core.redact import redact
from worker.sources.mysql import catalog, keys
from worker.sources.mysql import tls as tls_options
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


# utf8mb4_general_ci exists in MySQL 8 and MariaDB alike; the driver's default
# (utf8mb4_0900_ai_ci) is unknown to MariaDB.
DRIVER_OPTIONS = {"charset": "utf8mb4", "collation": "utf8mb4_general_ci", "use_pure": False,
                  "autocommit": True}


# The server could not be reached at one address: the next one may answer.
UNREACHABLE_ERRNOS = {2002, 2003}
LOGIN_REFUSED_ERRNOS = {1044, 1045, 1251, 1698}


def connect_params(source: SourceURL, host: str, *, timeout_s: int,
                   tls: tls_options.DriverTLS | None = None) -> dict[str, Any]:
    """The driver's keywords for `source`, built from its parts alone (worker/sources/url.py),
    its ssl-mode (worker/sources/mysql/tls.py) and a host to dial that the operator's
    allow-list admits: always TCP (the C client reads "localhost" as its unix socket), never
    an option file, never LOCAL INFILE."""
    tls = tls or tls_options.driver_tls(source)
    return {"host": host, "port": source.port, "user": source.user,
            "password": source.password or "",  # given, even empty: MYSQL_PWD is not read then
            "database": source.database, "connection_timeout": timeout_s,
            "allow_local_infile": False, **DRIVER_OPTIONS, **tls.connector}


def open_connection(source: SourceURL, *, timeout_s: int) -> Any:
    """A driver connection to the first of the host's addresses that answers, encrypted as
    the URL's ssl-mode says or refused."""
    tls = tls_options.driver_tls(source)
    for index, host in enumerate(tls.hosts):
        try:
            if tls.unenforced:
                tls_options.check_offers_tls(source, host, timeout_s=timeout_s)
            raw = mysql.connector.connect(**connect_params(source, host, timeout_s=timeout_s,
                                                           tls=tls))
        except my_errors.Error as exc:
            if exc.errno in UNREACHABLE_ERRNOS and index + 1 < len(tls.hosts):
                continue
            raise connect_error(exc, source) from None
        if tls.required:
            _check_encrypted(raw, source)
        return raw
    raise AssertionError("resolve() returns at least one address")


def _check_encrypted(raw: Any, source: SourceURL) -> None:
    """This end's own view of the connection (a relay in the middle could answer the
    server's Ssl_cipher for it), the server's where the driver has none."""
    try:
        get_cipher = getattr(getattr(raw, "_cmysql", None), "get_ssl_cipher", None)
        if get_cipher is not None:
            cipher = get_cipher()
        else:
            cursor = raw.cursor()
            cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            cipher = (cursor.fetchall() or [("", "")])[0][1]
            cursor.close()
        tls_options.check_encrypted(source, cipher)
    except BaseException:
        try:
            raw.close()
        except my_errors.Error:
            pass  # refused either way
        raise


def connect_error(exc: my_errors.Error, source: SourceURL) -> SourceError:
    """What the caller is told when connecting fails: that the source refused the login, has
    no such database, or could not be reached. The driver's own text can tell what bytes a
    port answered with, so it goes to this process's log only."""
    what = f"connecting to {source.redacted}"
    get_logger().warning("source_connect_failed", source=source.redacted,
                         detail=redact(str(exc).strip()))
    if exc.errno == 2026 and (tls_refused := tls_options.failure(source, str(exc))):
        return tls_refused
    if exc.errno in LOGIN_REFUSED_ERRNOS:
        return SourceRejected(f"{what}: the source refused the login: wrong user name or "
                              "password, or this user may not connect from here")
    if exc.errno == 1049:
        return SourceRejected(f"{what}: the database does not exist; check the URL")
    return SourceUnavailable(f"{what}: connection failed: the source could not be reached or "
                             "did not answer as a MySQL server (details in the service's "
                             "log); check the host and the port")


@contextmanager
def connect(source: SourceURL, *, timeout_s: int = 10) -> Iterator[Connection]:
    raw = open_connection(source, timeout_s=timeout_s)
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


def _reflect_constraints(source: SourceURL, names: Sequence[str]) -> dict[str, tuple]:
    from sqlalchemy import create_engine, inspect
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.pool import NullPool

    # No URL: SQLAlchemy's connections come from open_connection, as the reader's do.
    engine = create_engine("mysql+mysqlconnector://", poolclass=NullPool,
                           creator=lambda: open_connection(source, timeout_s=10))
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
            if wide:
                batch = _batch_for(rows, wide)
                # handed over one by one, not held here: a row of big values is freed once
                # its consumer is done with it, not when the next fetch comes
                rows.reverse()
                while rows:
                    yield rows.pop()
            else:
                yield from rows
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
