"""MySQL/MariaDB: the job's committed changes, from the row-based binary log.

Read with the maintained `mysql-replication` package (pymysqlreplication's
BinLogStreamReader: the replication protocol in pure Python, over PyMySQL) from the binlog
position the job's snapshot recorded (worker/sources/mysql/snapshot.py), each read a
non-blocking dump from the last position applied and durable in the file to the binlog's
current end. The binlog is the server's to keep (expire_logs_days / binlog_expire_logs_seconds):
nothing is held on the source between reads, so ending the follow only closes the reader.

Positions are (binlog file number << 32) | offset, so they order across rotations. A
transaction is named by the end of its first event (MariaDB's GTID event, else BEGIN) and is
whole at its Xid (or COMMIT) event. A TRUNCATE is a statement of its own: it is applied as a
change; ALTER / DROP / RENAME of a followed table stops the follow.

Row events carry the server's values as pymysqlreplication decodes them (ints, Decimals,
datetimes, str, bytes). `convert` writes them into a temporary table of the same column
types and reads them back through the plan's select list, so they come out as the copy
would have written them.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence
from typing import Any

from worker.core.errors import SchemaError, SourceError, SourceRejected, SourceUnavailable
from worker.core.model import TablePlan
from worker.follow.changes import Begin, Commit, Converted, Event, Row, Truncate, encode
from worker.sources.mysql import source as mysql_source
from worker.sources.mysql import tls as tls_options
from worker.sources.mysql.keys import backtick
from worker.sources.mysql.source import Connection, translate_error
from worker.sources.url import SourceURL

_DDL = re.compile(r"^\s*(ALTER|DROP|RENAME|TRUNCATE)\s+TABLE\s+(.*)$", re.I | re.S)
_NAME = re.compile(r"`((?:[^`]|``)+)`|([\w$]+)")


def position(file: str, offset: int) -> int:
    return (int(file.rsplit(".", 1)[1]) << 32) | offset


def _file_of(base: str, pos: int) -> tuple[str, int]:
    return f"{base}.{pos >> 32:06d}", pos & 0xFFFFFFFF


# -- preflight ------------------------------------------------------------------------

def preflight(conn: Connection, *, schema: str, plans: Sequence[TablePlan]) -> list[str]:
    try:
        return _preflight(conn, plans)
    except mysql_source.my_errors.Error as exc:
        raise translate_error(exc, what="checking that the source can be followed") from None


def _preflight(conn: Connection, plans: Sequence[TablePlan]) -> list[str]:
    problems = []
    log_bin, fmt, image = conn.query("SELECT @@log_bin, @@binlog_format, @@binlog_row_image")[0]
    if str(log_bin) not in ("1", "ON"):
        problems.append("the binary log is off: set log_bin (and binlog_format = ROW) in the "
                        "server's configuration and restart it")
    if str(fmt).upper() != "ROW":
        problems.append(f"binlog_format is {fmt}: SET GLOBAL binlog_format = 'ROW' (and in "
                        "the configuration)")
    if str(image).upper() != "FULL":
        problems.append(f"binlog_row_image is {image}: SET GLOBAL binlog_row_image = 'FULL'")
    grants = " ".join(str(g[0]).upper() for g in conn.query("SHOW GRANTS"))
    if "ALL PRIVILEGES ON *.*" not in grants and not (
            "REPLICATION SLAVE" in grants and ("REPLICATION CLIENT" in grants
                                               or "BINLOG MONITOR" in grants)):
        problems.append("the source user lacks REPLICATION SLAVE, REPLICATION CLIENT: GRANT "
                        "REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the user")
    for plan in plans:
        if plan.key_kind == "none":
            problems.append(f"table {plan.name!r} has no primary key or unique NOT NULL "
                            "key: its changes cannot be matched to rows (add one, or "
                            "exclude the table)")
    if problems:
        raise SourceRejected("this source cannot be followed: " + "; ".join(problems))
    return []


def prepare(conn: Connection, *, job_id: str, schema: str, plans: Sequence[TablePlan]) -> None:
    """Nothing to set up: the binlog is there for every reader."""


# -- the stream -----------------------------------------------------------------------

class MyChanges:
    def __init__(self, conn: Connection, source: SourceURL, *, start: int, base: str,
                 schema: str, plans: Sequence[TablePlan]):
        self.conn, self.source, self.schema = conn, source, schema
        self.plans = {p.name: p for p in plans}
        self.start, self.base = start, base
        self.drained = False
        self._columns = {p.name: self._ordinal_columns(p.name) for p in plans}
        self._types = {p.name: dict(self._column_types(p.name)) for p in plans}
        self._temp: set[str] = set()

    def _sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self.conn.query(query, params)
        except mysql_source.my_errors.Error as exc:
            raise translate_error(exc, what="following the source's changes") from None

    def _ordinal_columns(self, table: str) -> list[str]:
        return [str(r[0]) for r in self._sql(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (table,))]

    def _column_types(self, table: str) -> list[tuple[str, str]]:
        return [(str(r[0]), str(r[1])) for r in self._sql(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE "
            "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", (table,))]

    def _master(self) -> int:
        rows = self._sql("SHOW MASTER STATUS")
        if not rows:
            raise SourceRejected("SHOW MASTER STATUS returned nothing: the binary log is off")
        return position(str(rows[0][0]), int(rows[0][1]))

    def flush_position(self) -> int:
        return self._master()

    def current_position(self) -> int:
        return self._master()

    def check_tables(self) -> None:
        """A DROP or RENAME run from another default database may not reach the stream as
        this database's statement: a followed table gone by its planned name stops the
        follow all the same."""
        present = {str(r[0]) for r in self._sql(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            (self.schema,))}
        missing = sorted(set(self.plans) - present)
        if missing:
            raise SchemaError(f"followed table {missing[0]!r} was dropped or renamed on the "
                              "source: the follow stops; submit the job again")

    def lag_bytes(self, applied: int) -> int:
        """Binlog bytes from `applied` to the log's end, across rotations: the rest of
        `applied`'s file, the whole files after it (SHOW BINARY LOGS' sizes) and the current
        file up to its end. Positions carry the file's number in their high bits, so their
        difference is no count of bytes once the log rotated."""
        applied = max(applied, self.start)
        end = self._master()
        if end >> 32 == applied >> 32:
            return max(0, end - applied)
        sizes = {position(str(r[0]), 0) >> 32: int(r[1])
                 for r in self._sql("SHOW BINARY LOGS")}
        between = sum(size for number, size in sizes.items()
                      if applied >> 32 <= number < end >> 32)
        return max(0, between - (applied & 0xFFFFFFFF) + (end & 0xFFFFFFFF))

    def release(self, resume: int) -> None:
        self.start = max(self.start, resume)

    def end(self) -> None:
        """The reader is closed after each read; nothing is held on the server."""

    def close(self) -> None:
        pass  # the connection is the caller's

    def read(self, limit: int) -> Iterator[Event]:
        import pymysql
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import GtidEvent, MariadbGtidEvent, QueryEvent, XidEvent
        from pymysqlreplication.row_event import (
            DeleteRowsEvent,
            UpdateRowsEvent,
            WriteRowsEvent,
        )

        from worker.sources.mysql.binlog_connection import ReaderConnection

        log_file, log_pos = _file_of(self.base, self.start)
        stream = BinLogStreamReader(
            connection_settings=_settings(self.source), server_id=random.randint(2**20, 2**31),
            log_file=log_file, log_pos=log_pos, resume_stream=True, blocking=False,
            pymysql_wrapper=ReaderConnection,
            # A table's map is decoded once per read, not before each of its row events:
            # DDL on a followed table stops the follow at its query event, before any row
            # event of the new definition.
            freeze_schema=True,
            # is_mariadb would start from a GTID state, ignoring log_file and log_pos: the
            # plain COM_BINLOG_DUMP at a file and offset works on MariaDB as on MySQL.
            is_mariadb=False,
            only_schemas=[self.schema], only_tables=list(self.plans),
            only_events=[MariadbGtidEvent, GtidEvent, QueryEvent, XidEvent, WriteRowsEvent,
                         UpdateRowsEvent, DeleteRowsEvent])
        self.drained, count, txn = False, 0, None
        try:
            for event in stream:
                at = position(stream.log_file, stream.log_pos)
                if isinstance(event, (MariadbGtidEvent, GtidEvent)):
                    txn = at
                    yield Begin(txn=at, committed_at=float(event.timestamp))
                elif isinstance(event, QueryEvent):
                    query = event.query.decode() if isinstance(event.query, bytes) \
                        else str(event.query)
                    if query.upper().startswith("BEGIN"):
                        if txn is None:
                            txn = at
                            yield Begin(txn=at, committed_at=float(event.timestamp))
                        continue
                    if query.upper().startswith("COMMIT"):
                        yield Commit(txn=txn or at, resume=at)
                        txn = None
                        count += 1
                    else:
                        truncated = self._ddl(query, _schema(event))
                        if txn is None:
                            txn = at
                            yield Begin(txn=at, committed_at=float(event.timestamp))
                        if truncated:
                            yield Truncate(truncated)
                        yield Commit(txn=txn, resume=at)
                        txn = None
                    if count >= limit:
                        return
                elif isinstance(event, XidEvent):
                    yield Commit(txn=txn or at, resume=at)
                    txn, count = None, count + 1
                    if count >= limit:
                        return
                elif event.schema == self.schema and event.table in self.plans:
                    for row in event.rows:
                        count += 1
                        yield self._row(event, row)
            self.drained = True
        except pymysql.err.OperationalError as exc:
            if refused := tls_options.failure(self.source, str(exc)):
                raise refused from None
            raise SourceUnavailable(f"reading the binary log failed ({exc}); the follow "
                                    "resumes from the file's position") from None
        except pymysql.err.Error as exc:
            raise SourceError(f"reading the binary log failed: {exc}") from None
        finally:
            stream.close()

    def _ddl(self, query: str, schema: str) -> list[str]:
        """The followed tables a TRUNCATE empties; raises for other DDL on them."""
        found = _DDL.match(query)
        if not found or (schema and schema != self.schema):
            return []
        names = {a or b for a, b in _NAME.findall(found.group(2))}
        hit = sorted(names & set(self.plans))
        if not hit:
            return []
        if found.group(1).upper() == "TRUNCATE":
            return hit
        raise SchemaError(f"followed table {hit[0]!r} was changed on the source "
                          f"({found.group(1).upper()} TABLE): the follow stops; submit the "
                          "job again")

    def _row(self, event: Any, row: dict[str, Any]) -> Row:
        table = event.table
        if "after_values" in row:
            return Row(table=table, kind="update", new=self._planned(table, row["after_values"]),
                       old=self._planned(table, row["before_values"]))
        values = self._planned(table, row["values"])
        if type(event).__name__ == "DeleteRowsEvent":
            return Row(table=table, kind="delete", old=values)
        return Row(table=table, kind="insert", new=values)

    def _planned(self, table: str, values: dict[str, Any]) -> list[Any]:
        ordered = list(values.values())
        by_name = dict(zip(self._columns[table], ordered)) if len(ordered) == len(
            self._columns[table]) else values
        return [_bindable(by_name.get(c.name)) for c in self.plans[table].columns]

    # -- conversion ---------------------------------------------------------------------

    def convert(self, table: str, rows: Sequence[list[Any]]) -> Converted:
        """Through a temporary table of the same column types and the copy's select list."""
        plan = self.plans[table]
        temp = f"_liteshift_chg_{sorted(self.plans).index(table)}"
        names = [c.name for c in plan.columns]
        try:
            if table not in self._temp:
                columns = ", ".join(f"{backtick(n)} {self._types[table][n]}" for n in names)
                self.conn.query(f"CREATE TEMPORARY TABLE {backtick(temp)} ({columns}, "
                                "`_liteshift_n` int NOT NULL)")
                self._temp.add(table)
            self.conn.query(f"DELETE FROM {backtick(temp)}")
            cursor = self.conn.raw.cursor()
            try:
                cursor.executemany(
                    f"INSERT INTO {backtick(temp)} ({', '.join(map(backtick, names))}, "
                    f"`_liteshift_n`) VALUES ({', '.join(['%s'] * (len(names) + 1))})",
                    [(*row, n) for n, row in enumerate(rows)])
            finally:
                cursor.close()
            select = _select_list(plan)
            fetched = self.conn.query(f"SELECT {select} FROM {backtick(temp)} "
                                      "ORDER BY `_liteshift_n`")
        except mysql_source.my_errors.Error as exc:
            raise translate_error(exc, what=f"converting changed rows of {table!r}") from None
        return encode(fetched, plan)

def _select_list(plan: TablePlan) -> str:
    from worker.sources.mysql.keys import raw_key_sql

    flags = [f"COALESCE({c.flag_sql}, 0)" for c in plan.columns if c.flag_sql]
    return ", ".join([c.select_sql for c in plan.columns]
                     + [raw_key_sql(k, t) for k, t in plan.raw_keys] + flags)


def _bindable(value: Any) -> Any:
    """A binlog value as the driver binds it into a column of the same type."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, (set, frozenset)):
        return ",".join(sorted(value))
    return value


def _schema(event: Any) -> str:
    schema = event.schema
    return schema.decode() if isinstance(schema, bytes) else str(schema or "")


def _settings(source: SourceURL) -> dict[str, Any]:
    # The URL's parts alone, its ssl-mode, and a host the operator's allow-list admits (url.py,
    # tls.py: PyMySQL enforces every mode itself)
    tls = tls_options.driver_tls(source)
    return {"host": tls.hosts[0], "port": source.port, "user": source.user,
            "password": source.password or "", **tls.pymysql}


def open_changes(conn: Connection, *, job: dict[str, Any], plans: Sequence[TablePlan],
                 source: SourceURL) -> MyChanges:
    moment = job.get("snapshot") or {}
    if not moment.get("binlog_file"):
        raise SourceRejected("this job has no binlog position to follow the source from")
    base = str(moment["binlog_file"]).rsplit(".", 1)[0]
    start = position(str(moment["binlog_file"]), int(moment["binlog_pos"]))
    return MyChanges(conn, source, start=start, base=base, schema=conn.database, plans=plans)
