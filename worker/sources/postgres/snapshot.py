"""PostgreSQL: take the job's one moment, and read a table inside it.

Taking: a logical replication slot's exported snapshot where the server and the user allow
it (wal_level=logical, REPLICATION): `CREATE_REPLICATION_SLOT … LOGICAL pgoutput (SNAPSHOT
'export')` over a replication connection gives the snapshot and the exact LSN from which the
slot's change stream starts, which is what following the source after the copy builds on.
Otherwise `pg_export_snapshot()` in a REPEATABLE READ transaction, with the WAL position and
`now()` of that transaction. Either way the connection that took it must stay open, and
idle, for as long as readers import it (worker/jobs/snapshot_holder.py holds it).

The slot is TEMPORARY unless asked otherwise: the server drops it when the holder's
connection ends for any reason (closed, holder killed, network cut), so a slot can never be
left behind to hold WAL and fill the source's disk.

Reading: every reader starts `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET
TRANSACTION SNAPSHOT 'id'` before its COPY. Once imported, a reader's snapshot lives as long
as its own transaction, even if the holder dies meanwhile; a reader that starts after the
holder is gone gets `invalid snapshot identifier`, which is SnapshotLost here.
"""

from __future__ import annotations

import select
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from worker.core.errors import SnapshotLost, SourceError
from worker.core.redact import redact
from worker.sources.postgres.source import connect_error, connect_params, translate_error
from worker.sources.url import SourceURL

APPLICATION_NAME = "liteshift-snapshot"
# The holder sits idle in its transaction for the whole copy: a server-wide
# idle_in_transaction_session_timeout must not end it (the setting is the user's to change).
HOLDER_OPTIONS = "-c idle_in_transaction_session_timeout=0 -c statement_timeout=0"
SLOT_WAIT_S = 10.0  # longest wait for a replication slot before taking pg_export_snapshot()
_LSN_SQL = ("SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
            "ELSE pg_current_wal_lsn() END::text")


@dataclass
class Held:
    """A snapshot being held open: its connection, and the record readers import it by."""

    conn: psycopg.Connection
    record: dict[str, Any] = field(default_factory=dict)

    def alive(self) -> bool:
        """False once the server closed the connection (restart, terminated backend). Only
        the socket is looked at: any statement sent over it would end the export."""
        if self.conn.closed:
            return False
        try:
            readable, _, _ = select.select([self.conn.fileno()], [], [], 0)
            if readable:  # a notice, or the end of the session: let libpq tell which
                self.conn.pgconn.consume_input()
        except (OSError, ValueError, psycopg.Error):
            return False
        return self.conn.pgconn.status == psycopg.pq.ConnStatus.OK

    def close(self) -> None:
        self.conn.close()  # the transaction ends; a temporary slot is dropped with it


def take(source: SourceURL, *, job_id: str, timeout_s: int, tables: int = 1,
         temporary: bool = True) -> Held:
    """The moment, by a replication slot where possible, else pg_export_snapshot(). The
    record says which, and why not the slot (`slot_unavailable`). Any number of readers
    (`tables`) can import it."""
    try:
        return _by_slot(source, job_id=job_id, timeout_s=timeout_s, temporary=temporary)
    except _NoSlot as why:
        held = _by_export(source, timeout_s=timeout_s)
        held.record["slot_unavailable"] = str(why)
        return held


class _NoSlot(Exception):
    """Raised when a replication slot cannot be had; its text says why."""


def _connect(source: SourceURL, timeout_s: int, **extra: Any) -> psycopg.Connection:
    params = {**connect_params(source, timeout_s=timeout_s),  # url.py: the URL's parts alone
              "application_name": APPLICATION_NAME, "options": HOLDER_OPTIONS, **extra}
    return psycopg.connect(autocommit=True, **params)


def _by_slot(source: SourceURL, *, job_id: str, timeout_s: int, temporary: bool) -> Held:
    try:
        with _connect(source, timeout_s) as conn:
            wal_level, can_replicate = conn.execute(
                "SELECT current_setting('wal_level'), (SELECT rolreplication OR rolsuper "
                "FROM pg_roles WHERE rolname = current_user)").fetchone() or ("", False)
    except psycopg.Error as exc:
        raise connect_error(exc, source) from None
    if wal_level != "logical":
        raise _NoSlot(f"wal_level is {wal_level}, not logical")
    if not can_replicate:
        raise _NoSlot("the user has no REPLICATION attribute")
    # Unique per holder: a plan run again must not collide with a holder still ending.
    slot = f"liteshift_{job_id}_{uuid.uuid4().hex[:6]}"
    try:
        conn = _connect(source, timeout_s, replication="database")
    except psycopg.Error as exc:
        raise _NoSlot(f"replication connection refused ({_first_line(exc)})") from None
    command = (f"CREATE_REPLICATION_SLOT {slot} {'TEMPORARY ' if temporary else ''}"
               "LOGICAL pgoutput (SNAPSHOT 'export')")
    result = _slot_result(conn, command)
    if result is None:
        raise _NoSlot(f"creating a replication slot waited {SLOT_WAIT_S:.0f} s for "
                      "transactions running on the server to end")
    if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
        message = result.error_message.decode(errors="replace").strip()
        conn.close()
        raise _NoSlot(f"CREATE_REPLICATION_SLOT failed ({redact(message)})")
    values = {(result.fname(i) or b"").decode(): (result.get_value(0, i) or b"").decode()
              for i in range(result.nfields)}
    record = {"consistent": True, "kind": "postgres", "method": "replication_slot",
              "id": values["snapshot_name"], "lsn": values["consistent_point"],
              "slot": slot, "slot_temporary": temporary, "at": _server_now(source, timeout_s)}
    return Held(conn, record)


def _slot_result(conn: psycopg.Connection, command: str) -> Any:
    """The command's result, or None (the command cancelled, the connection closed) when it
    takes longer than SLOT_WAIT_S: a logical slot waits for every transaction that holds a
    transaction id to end, and a long one must not stall the plan."""
    pgconn = conn.pgconn
    pgconn.send_query(command.encode())  # simple query protocol: a walsender has no other
    deadline = time.monotonic() + SLOT_WAIT_S
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        left = deadline - time.monotonic()
        if left <= 0:
            conn.cancel()
            conn.close()
            return None
        select.select([conn.fileno()], [], [], left)
    result = pgconn.get_result()
    while pgconn.get_result() is not None:
        pass  # the end of the command's results
    return result


def _server_now(source: SourceURL, timeout_s: int) -> str | None:
    """The server's clock just after the slot was created (a walsender cannot be asked
    without ending the export): the moment's time, to the few milliseconds this takes."""
    try:
        with _connect(source, timeout_s) as conn:
            row = conn.execute("SELECT now()").fetchone()
    except psycopg.Error:
        return None
    return _iso(row[0]) if row else None


def _by_export(source: SourceURL, *, timeout_s: int) -> Held:
    try:
        conn = _connect(source, timeout_s)
    except psycopg.Error as exc:
        raise connect_error(exc, source) from None
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute(f"SELECT pg_export_snapshot(), ({_LSN_SQL}), now()").fetchone()
    except psycopg.Error as exc:
        conn.close()
        raise translate_error(exc, what="taking a snapshot of the source") from None
    assert row is not None
    record = {"consistent": True, "kind": "postgres", "method": "pg_export_snapshot",
              "id": row[0], "lsn": row[1], "at": _iso(row[2])}
    return Held(conn, record)


def drop_slot(source: SourceURL, record: dict[str, Any], *, timeout_s: int) -> bool:
    """Drop the moment's slot when it outlives its holder (a follow job's, `temporary:
    false`) and nothing reads from it; True when it was there and is gone."""
    slot = record.get("slot")
    if not slot or record.get("slot_temporary", True):
        return False
    try:
        with _connect(source, timeout_s) as conn:
            row = conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM "
                               "pg_replication_slots WHERE slot_name = %s AND NOT active",
                               (slot,)).fetchone()
    except psycopg.Error as exc:
        raise translate_error(exc, what="dropping the snapshot's replication slot") from None
    return row is not None


def enter(conn: psycopg.Connection, record: dict[str, Any]) -> None:
    """Start a reading transaction in the job's moment: the next COPY on `conn` sees the
    source as it was then."""
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")  # a read before, on the same connection
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{_snapshot_id(record['id'])}'")
    except psycopg.OperationalError as exc:
        raise translate_error(exc, what="starting a read in the job's snapshot") from None
    except psycopg.Error as exc:
        raise SnapshotLost(lost_message(redact(_first_line(exc)))) from None


def lost_message(why: str) -> str:
    return (f"the job's snapshot of the source is gone ({why}): its holder process stopped, "
            "or the source restarted or ended its session. Rows read from now on would come "
            "from another moment than the tables already copied, so this table stops here. "
            "`liteshift retry JOB` copies every table again under a new snapshot; "
            "`--no-snapshot` copies each table at its own moment instead")


def _snapshot_id(value: str) -> str:
    # An exported snapshot's name is hex digits and dashes; nothing else is sent as SQL.
    if not value or any(c not in "0123456789ABCDEFabcdef-" for c in value):
        raise SourceError(f"the job's snapshot record holds a malformed id {value!r}")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
