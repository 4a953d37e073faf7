"""MySQL/MariaDB: take the job's one moment, and read the job's tables inside it.

InnoDB's consistent snapshot cannot be handed to another connection: a connection sees a
moment only through a transaction it opened at that moment. So the holder opens up to
READERS connections whose transactions all start at one moment, keeps them for the copy
phase, and reads the job's tables through them for the workers (serve(): one forked child
per connection, each answering one table request at a time on the holder's socket, with the
reader process's frames, worker/sources/reader_process.py). A table resumed after a worker
is killed is read again through one of them, after its last committed key: the same moment.

Several connections at one moment, best first:
1. `binlog_snapshot` (MariaDB, binlog on, no privilege): each `START TRANSACTION WITH
   CONSISTENT SNAPSHOT` records the binlog position it started at (Binlog_snapshot_file and
   _position, exact for that transaction). Equal positions on every connection mean that no
   transaction committed between their starts: they see the same rows. Tried ATTEMPTS times.
2. `flush_tables_with_read_lock` (needs RELOAD): writes wait for the few milliseconds it
   takes to open the transactions under the lock, as mydumper does; a short
   lock_wait_timeout keeps a long query from holding the app's writes behind the lock.
3. `single_connection`: one connection, still one moment, tables read one at a time.
The record says which, the binlog file/position (and the GTID where it is exact) and why a
better method was not had.

Only transactional tables (InnoDB) are in a snapshot; writes made with sql_log_bin=0 are not
seen by method 1's comparison.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import signal
import socket
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from mysql.connector import errors as my_errors

from worker.core.errors import LiteshiftError, SourceError
from worker.core.model import TablePlan
from worker.core.redact import redact
from worker.sources.mysql import source as mysql_source
from worker.sources.mysql.source import Connection, translate_error
from worker.sources.url import SourceURL

READERS = 4  # connections (and tables read at once) per job's moment
ATTEMPTS = 20  # tries at opening every connection between two commits (method 1)
LOCK_WAIT_S = 5  # longest FLUSH TABLES WITH READ LOCK may wait (method 2)
REQUEST_BYTES = 64 * 1024 * 1024  # largest table request a reader child accepts
# The transactions sit idle between requests for the whole copy: a server's idle timeouts
# must not end them (MariaDB's idle_*transaction_timeout exist from 10.3 on).
HOLD_SETTINGS = ("SET SESSION wait_timeout = 31536000",
                 "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
MARIADB_HOLD_SETTINGS = ("SET SESSION idle_transaction_timeout = 0",
                         "SET SESSION idle_readonly_transaction_timeout = 0")
START = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"


@dataclass
class Held:
    """The moment's connections, each in its transaction, and the children serving them."""

    conns: list[Connection]
    stack: ExitStack
    record: dict[str, Any] = field(default_factory=dict)
    children: list[int] = field(default_factory=list)

    def serve(self, listener: socket.socket, token: str) -> None:
        """One child per connection, answering table requests on `listener`."""
        parent = os.getpid()
        for conn in self.conns:
            pid = os.fork()
            if pid == 0:  # the child: only its own connection is ever used
                code = 0
                try:
                    _serve(conn, listener, token, parent)
                except BaseException:
                    code = 1
                os._exit(code)  # never close the siblings' connections (COM_QUIT)
            self.children.append(pid)

    def alive(self) -> bool:
        """Some connection still serves the moment."""
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    continue
            self.children.remove(pid)
        return bool(self.children)

    def close(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()
        self.stack.close()  # the transactions end with their sessions


def take(source: SourceURL, *, job_id: str, timeout_s: int, tables: int = READERS,
         temporary: bool = True) -> Held:
    """The moment, in up to READERS connections: one per table, and at least two, so that
    a table whose reading connection is cut (KILL, a proxy's timeout) resumes through the
    other in the same moment. There is no slot to keep (`temporary`): the binlog position
    is where following would start."""
    stack = ExitStack()
    try:
        conns = [stack.enter_context(mysql_source.connect(source, timeout_s=timeout_s))
                 for _ in range(min(READERS, max(2, tables)))]
        for conn in conns:
            _prepare(conn)
        why: list[str] = []
        record = (_by_binlog_snapshot(conns, why) or _by_lock(source, conns, why, timeout_s)
                  or _by_one(conns, why))
        kept = conns if record["method"] != "single_connection" else conns[:1]
        for extra in conns[len(kept):]:
            extra.raw.close()
        record.update(kind="mysql", consistent=True, readers=len(kept),
                      at=_now(kept[0]), **({"not_better": "; ".join(why)} if why else {}))
        return Held(kept, stack, record)
    except my_errors.Error as exc:
        stack.close()
        raise translate_error(exc, what="taking a snapshot of the source") from None
    except BaseException:
        stack.close()
        raise


def _prepare(conn: Connection) -> None:
    for statement in HOLD_SETTINGS:
        conn.query(statement)
    if conn.flavor == "mariadb":
        for statement in MARIADB_HOLD_SETTINGS:
            with contextlib.suppress(my_errors.Error):  # before 10.3: no such setting
                conn.query(statement)


def _snapshot_position(conn: Connection) -> tuple[str, int] | None:
    """The binlog position this transaction started at (MariaDB), or None."""
    if conn.flavor != "mariadb":
        return None
    rows = dict(conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'"))
    name = str(rows.get("Binlog_snapshot_file") or "")
    return (name, int(rows.get("Binlog_snapshot_position") or 0)) if name else None


def _by_binlog_snapshot(conns: list[Connection], why: list[str]) -> dict[str, Any] | None:
    if conns[0].flavor != "mariadb":
        why.append("MySQL records no binlog position per transaction")
        return None
    for _ in range(ATTEMPTS):
        for conn in conns:
            conn.query(START)
        positions = {_snapshot_position(conn) for conn in conns}
        (first, *_) = positions
        if len(positions) == 1 and first is not None:
            return {"method": "binlog_snapshot", "binlog_file": first[0],
                    "binlog_pos": first[1]}
        for conn in conns:
            conn.query("ROLLBACK")
        if None in positions:
            why.append("the binary log is off")
            return None
    why.append(f"the source committed between the readers' starts {ATTEMPTS} times")
    return None


def _by_lock(source: SourceURL, conns: list[Connection], why: list[str],
             timeout_s: int) -> dict[str, Any] | None:
    with mysql_source.connect(source, timeout_s=timeout_s) as ctl:
        try:
            ctl.query(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_S}")
            ctl.query("FLUSH TABLES WITH READ LOCK")
        except my_errors.Error as exc:
            why.append(f"FLUSH TABLES WITH READ LOCK was refused ({_first_line(exc)}; it "
                       "needs the RELOAD privilege)")
            return None
        try:
            for conn in conns:
                conn.query(START)
            record: dict[str, Any] = {"method": "flush_tables_with_read_lock"}
            record.update(_locked_position(ctl, conns[0]))
        finally:
            ctl.query("UNLOCK TABLES")
    return record


def _locked_position(ctl: Connection, first: Connection) -> dict[str, Any]:
    """Under the lock nothing commits: the server's binlog position is the moment's."""
    found: dict[str, Any] = {}
    position = _snapshot_position(first)
    if position:
        found.update(binlog_file=position[0], binlog_pos=position[1])
    with contextlib.suppress(my_errors.Error):  # needs BINLOG MONITOR / REPLICATION CLIENT
        status = ctl.raw.cursor(dictionary=True)
        status.execute("SHOW MASTER STATUS")
        row = status.fetchone() or {}
        status.close()
        if row.get("File"):
            found.update(binlog_file=row["File"], binlog_pos=int(row["Position"]))
        if row.get("Executed_Gtid_Set"):
            found["gtid"] = row["Executed_Gtid_Set"]
    if ctl.flavor == "mariadb":
        with contextlib.suppress(my_errors.Error):
            gtid = ctl.query("SELECT @@gtid_binlog_pos")[0][0]
            if gtid:
                found["gtid"] = gtid
    return found


def _by_one(conns: list[Connection], why: list[str]) -> dict[str, Any]:
    conns[0].query(START)
    record: dict[str, Any] = {"method": "single_connection"}
    position = _snapshot_position(conns[0])
    if position:
        record.update(binlog_file=position[0], binlog_pos=position[1])
    return record


def _now(conn: Connection) -> str:
    """The server's clock, read in the moment's first transaction just after it started."""
    value = conn.query("SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%fZ')")[0][0]
    return str(value)


def _first_line(exc: BaseException) -> str:
    text = redact(str(exc).strip())
    return text.splitlines()[0] if text else type(exc).__name__


# -- a reader child: table requests on the holder's socket --------------------------------

def _serve(conn: Connection, listener: socket.socket, token: str, parent: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    listener.settimeout(1.0)  # to notice a holder that died (its children must not linger)
    while os.getppid() == parent:
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            continue
        with sock:
            sock.settimeout(None)
            if not _answer(conn, sock, token):
                return  # the moment's connection is gone: this child is done


def _answer(conn: Connection, sock: socket.socket, token: str) -> bool:
    """Stream one table; False when the connection to the source is lost."""
    from worker.sources import reader_process

    out = sock.makefile("wb", buffering=0)
    try:
        request = json.loads(sock.makefile("rb").readline(REQUEST_BYTES) or b"{}")
        if not hmac.compare_digest(str(request.get("token", "")), token):
            raise SourceError("the request did not carry this job's snapshot token")
        plan = TablePlan.from_dict(request["plan"])
        rows = mysql_source.stream_table(conn, schema=request["schema"], plan=plan,
                                         after=request["after"])
        try:
            reader_process.write_chunks(rows, plan, out, chunk_rows=request["chunk_rows"],
                                        chunk_bytes=request["chunk_bytes"])
        finally:
            # A result left mid-way has its rest read: the connection is free again
            getattr(rows, "close", lambda: None)()
    except OSError:
        return True  # the worker went away; the next request reads again
    except LiteshiftError as exc:
        reader_process.write_error(out, exc)
        return bool(conn.raw.is_connected())
    return True
