"""PostgreSQL: the job's committed changes, from its logical replication slot, with pgoutput.

The slot is the one the job's snapshot created (worker/sources/postgres/snapshot.py, made
permanent for a follow job): its stream starts exactly at the moment the tables were copied
at. psycopg has no replication-protocol client, so the stream is read with the SQL functions:
`pg_logical_slot_peek_binary_changes` in a loop (a server-side cursor, so a transaction of
any size streams in bounded memory here) and `pg_replication_slot_advance` once what was
read is committed in the SQLite file. pgoutput needs a publication naming the tables; it
must exist before the slot (a slot decodes with the catalog of each change's time), so the
plan creates it (`prepare`) before taking the snapshot.

pgoutput (protocol 1) messages: B begin, C commit, R relation (sent before a relation's first
change in each call, and again after its definition changed: DDL is caught there), I/U/D
row changes, T truncate; others (Y type, O origin, M message) are skipped. Values are the
types' text output in this session; `convert` reads them back through the plan's select
list (`'text'::type` is the type's input function, the exact inverse), so a change's values
become what the copy would have written.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from worker.core.errors import SchemaError, SourceRejected
from worker.core.model import TablePlan
from worker.follow.changes import (
    Begin,
    Commit,
    Converted,
    Event,
    Row,
    Truncate,
    add_lossy,
    encode,
)
from worker.sources.postgres.keys import select_list
from worker.sources.postgres.source import translate_error

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
FETCH_ROWS = 1_000  # messages per fetch from the server-side cursor
CONVERT_ROWS = 5_000  # rows per conversion query, so its arrays stay a few MB


def publication_name(job_id: str) -> str:
    return f"liteshift_{job_id}"


def lsn_int(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


# -- preflight ------------------------------------------------------------------------

def preflight(conn: psycopg.Connection, *, schema: str, plans: Sequence[TablePlan]) -> list[str]:
    """Refuse a source that cannot be followed, saying what to change; returns warnings."""
    try:
        return _preflight(conn, schema=schema, plans=plans)
    except psycopg.Error as exc:
        raise translate_error(exc, what="checking that the source can be followed") from None


def _preflight(conn: psycopg.Connection, *, schema: str, plans: Sequence[TablePlan]) -> list[str]:
    problems, warnings = [], []
    wal_level, can_replicate, keep = conn.execute(
        "SELECT current_setting('wal_level'), (SELECT rolreplication OR rolsuper FROM "
        "pg_roles WHERE rolname = current_user), current_setting('max_slot_wal_keep_size')"
    ).fetchone() or ("", False, "")
    if wal_level != "logical":
        problems.append(f"wal_level is {wal_level}: set wal_level = logical in "
                        "postgresql.conf and restart the server")
    if not can_replicate:
        problems.append("the source user has no REPLICATION attribute: ALTER ROLE … "
                        "REPLICATION (it reads the change stream through a slot)")
    if keep in ("-1", "-1MB"):
        warnings.append("max_slot_wal_keep_size is unlimited (-1): while the job follows, "
                        "the source keeps every WAL segment the follow has not applied; a "
                        "stopped follower fills the source's disk. Set a bound, and cut "
                        "over or cancel the job promptly")
    identity: dict[str, str] = dict(conn.execute(
        "SELECT c.relname, c.relreplident::text || CASE WHEN EXISTS (SELECT 1 FROM pg_index i "
        "WHERE i.indrelid = c.oid AND i.indisprimary) THEN 'p' ELSE '' END FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
        "AND c.relname = ANY(%s)", (schema, [p.name for p in plans])).fetchall())
    for plan in plans:
        if plan.key_kind == "none":
            problems.append(f"table {plan.name!r} has no primary key or unique NOT NULL "
                            "key: its changes cannot be matched to rows (add one, or "
                            "exclude the table)")
        elif identity.get(plan.name, "d") == "d" or identity.get(plan.name, "").startswith("n"):
            problems.append(f"table {plan.name!r} has no primary key, so PostgreSQL logs "
                            "no key for its updates and deletes: ALTER TABLE "
                            f"{plan.name} REPLICA IDENTITY USING INDEX <its unique index>")
    if problems:
        raise SourceRejected("this source cannot be followed: " + "; ".join(problems))
    return warnings


def prepare(conn: psycopg.Connection, *, job_id: str, schema: str,
            plans: Sequence[TablePlan]) -> None:
    """The job's publication, made again (a plan run again may name other tables); slots
    an earlier plan of this job left (permanent ones outlive their holder) are dropped."""
    drop_slots(conn, job_id)
    name = sql.Identifier(publication_name(job_id))
    tables = sql.SQL(", ").join(sql.Identifier(schema, p.name) for p in plans)
    try:
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(name))
        conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(name, tables))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise SourceRejected(
            f"creating the publication the follow reads through was refused ({exc}): the "
            "source user must own the followed tables (or be superuser)") from None
    except psycopg.Error as exc:
        raise translate_error(exc, what="creating the follow's publication") from None


def drop_slots(conn: psycopg.Connection, job_id: str, *, keep: str | None = None) -> list[str]:
    """Drop the job's inactive slots (but `keep`); returns their names."""
    rows = conn.execute(
        "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s AND NOT active",
        (f"liteshift\\_{job_id}\\_%",)).fetchall()
    dropped = []
    for (slot,) in rows:
        if slot != keep:
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                dropped.append(slot)
            except psycopg.errors.ObjectInUse:
                continue  # in use right now: the next sweep drops it
    return dropped


def liteshift_slots(conn: psycopg.Connection) -> list[tuple[str, bool]]:
    """Every liteshift slot of this database: (name, active)."""
    try:
        return [(name, bool(active)) for name, active in conn.execute(
            "SELECT slot_name, active FROM pg_replication_slots WHERE slot_name LIKE "
            "'liteshift\\_%%' AND database = current_database()").fetchall()]
    except psycopg.Error as exc:
        raise translate_error(exc, what="listing replication slots") from None


def end_follow(conn: psycopg.Connection, *, job_id: str) -> list[str]:
    """Drop every slot and the publication of the job."""
    try:
        dropped = drop_slots(conn, job_id)
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(
            sql.Identifier(publication_name(job_id))))
    except psycopg.Error as exc:
        raise translate_error(exc, what="dropping the follow's slot and publication") from None
    return dropped


# -- the stream -----------------------------------------------------------------------

class PgChanges:
    """ChangeStream over one connection (opened with the copy's session settings, so that
    the text forms read here are the ones `convert` reads back)."""

    def __init__(self, conn: psycopg.Connection, *, job_id: str, slot: str, schema: str,
                 plans: Sequence[TablePlan]):
        self.conn, self.job_id, self.slot, self.schema = conn, job_id, slot, schema
        self.plans = {p.name: p for p in plans}
        self._relations: dict[int, tuple[str, list[str]]] = {}  # oid -> (table, columns)
        self._types = {p.name: self._column_types(p.name) for p in plans}
        self._signatures: dict[str, list[tuple[str, int, int]]] = {}
        self._conversions: dict[str, sql.Composed] = {}
        self.drained = False  # the last read returned everything there was

    def _column_types(self, table: str) -> dict[str, str]:
        rows = self._sql(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            (sql.Identifier(self.schema, table).as_string(self.conn),))
        return dict(rows)

    def _sql(self, query: Any, params: Any = None) -> list[tuple]:
        try:
            return self.conn.execute(query, params).fetchall()
        except psycopg.Error as exc:
            raise translate_error(exc, what="following the source's changes") from None

    def flush_position(self) -> int:
        return lsn_int(self._sql("SELECT pg_current_wal_flush_lsn()::text")[0][0])

    def current_position(self) -> int:
        return lsn_int(self._sql("SELECT pg_current_wal_lsn()::text")[0][0])

    def lag_bytes(self, applied: int) -> int:
        """WAL bytes from `applied` (or, before any whole transaction is, the slot's
        confirmed point) to the server's current position."""
        if not applied:
            confirmed = self._sql("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                                  "WHERE slot_name = %s", (self.slot,))
            applied = lsn_int(confirmed[0][0]) if confirmed and confirmed[0][0] else 0
        return max(0, self.current_position() - applied)

    def slot_exists(self) -> bool:
        return bool(self._sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                              (self.slot,)))

    def check_tables(self) -> None:
        """pgoutput sends nothing when a table is dropped, but a dropped table leaves the
        job's publication (as does one dropped and made again, which is a new relation):
        a followed table no longer in it by its planned name stops the follow."""
        published = self._sql(
            "SELECT c.relname FROM pg_publication p JOIN pg_publication_rel r ON r.prpubid = "
            "p.oid JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = "
            "c.relnamespace WHERE p.pubname = %s AND n.nspname = %s",
            (publication_name(self.job_id), self.schema))
        missing = sorted(set(self.plans) - {name for (name,) in published})
        if not missing:
            return
        if not self._sql("SELECT 1 FROM pg_publication WHERE pubname = %s",
                         (publication_name(self.job_id),)):
            raise SourceRejected(f"the follow's publication {publication_name(self.job_id)} "
                                 "is gone from the source (dropped by hand?): the follow "
                                 "stops; submit the job again")
        raise SchemaError(f"followed table {missing[0]!r} was dropped, renamed or moved on "
                          "the source: the follow stops; submit the job again")

    def read(self, limit: int) -> Iterator[Event]:
        query = ("SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s, "
                 "'proto_version', '1', 'publication_names', %s)")
        try:
            with self.conn.transaction(), self.conn.cursor(name="liteshift_follow") as cur:
                cur.execute(query, (self.slot, limit, publication_name(self.job_id)))
                self.drained = True
                read = 0
                while batch := cur.fetchmany(FETCH_ROWS):
                    read += len(batch)
                    self.drained = read < limit
                    for (data,) in batch:
                        event = self._parse(bytes(data))
                        if event is not None:
                            yield event
        except psycopg.Error as exc:
            raise translate_error(exc, what="reading the source's changes") from None

    def release(self, resume: int) -> None:
        confirmed = self._sql("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                              "WHERE slot_name = %s", (self.slot,))
        if confirmed and confirmed[0][0] and lsn_int(confirmed[0][0]) >= resume:
            return
        self._sql("SELECT 1 FROM pg_replication_slot_advance(%s, %s::pg_lsn)",
                  (self.slot, lsn_text(resume)))

    def end(self) -> None:
        end_follow(self.conn, job_id=self.job_id)

    def close(self) -> None:
        self.conn.close()

    # -- conversion ---------------------------------------------------------------------

    def convert(self, table: str, rows: Sequence[list[str | None]]) -> Converted:
        plan = self.plans[table]
        out = Converted([])
        for start in range(0, len(rows), CONVERT_ROWS):
            part = self._convert(plan, rows[start:start + CONVERT_ROWS])
            out.rows += part.rows
            add_lossy(out.lossy, part.lossy)
        return out

    def _convert(self, plan: TablePlan, rows: Sequence[list[str | None]]) -> Converted:
        """Through the copy's own select list and chunk encoder, the values sent as one
        text array per column (the query's text does not grow with the rows, and psycopg
        sends arrays in C where literals would be composed in Python)."""
        columns = list(zip(*rows)) if rows else [() for _ in plan.columns]
        try:
            with self.conn.cursor() as cur, cur.copy(self._conversion(plan),
                                                    [list(c) for c in columns]) as copy:
                copy.set_types(list(plan.wire_types))
                fetched = list(copy.rows())
        except psycopg.Error as exc:
            raise translate_error(exc, what=f"converting changed rows of {plan.name!r}") from None
        return encode(fetched, plan)

    def _conversion(self, plan: TablePlan) -> sql.Composed:
        """`COPY (SELECT <select list> FROM (SELECT col::type, … FROM unnest(%s::text[], …)
        WITH ORDINALITY) AS table ORDER BY ordinality) TO STDOUT`: `text::type` is the
        type's input function, the exact inverse of the text pgoutput sent."""
        if plan.name not in self._conversions:
            types = self._types[plan.name]
            names = [c.name for c in plan.columns]
            n = sql.Identifier("_liteshift_n")
            self._conversions[plan.name] = sql.SQL(
                "COPY (SELECT {cols} FROM (SELECT {casts}, {n} FROM unnest({arrays}) WITH "
                "ORDINALITY AS _liteshift_u({names}, {n})) AS {table} ORDER BY {n}) "
                "TO STDOUT (FORMAT BINARY)").format(
                cols=sql.SQL(", ").join(sql.SQL(s) for s in select_list(plan)),
                casts=sql.SQL(", ").join(
                    sql.SQL("{}::{} AS {}").format(sql.Identifier(c), sql.SQL(types[c]),
                                                  sql.Identifier(c)) for c in names),
                arrays=sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in names),
                names=sql.SQL(", ").join(map(sql.Identifier, names)), n=n,
                table=sql.Identifier(plan.name))
        return self._conversions[plan.name]

    # -- pgoutput -----------------------------------------------------------------------

    def _parse(self, data: bytes) -> Event | None:
        kind = data[:1]
        if kind == b"B":
            final_lsn, ts, _xid = struct.unpack_from("!qqi", data, 1)
            return Begin(txn=final_lsn, committed_at=PG_EPOCH + ts / 1e6)
        if kind == b"C":
            _flags, commit_lsn, end_lsn, _ts = struct.unpack_from("!bqqq", data, 1)
            return Commit(txn=commit_lsn, resume=end_lsn)
        if kind == b"R":
            self._relation(data)
            return None
        if kind in (b"I", b"U", b"D"):
            return self._row(kind, data)
        if kind == b"T":
            (count,) = struct.unpack_from("!i", data, 1)
            oids = struct.unpack_from(f"!{count}i", data, 6)
            return Truncate([self._relations[oid][0] for oid in oids])
        return None

    def _relation(self, data: bytes) -> None:
        (oid,) = struct.unpack_from("!i", data, 1)
        at = 5
        namespace, at = _cstring(data, at)
        name, at = _cstring(data, at)
        at += 1  # replica identity
        (count,) = struct.unpack_from("!h", data, at)
        at += 2
        columns = []
        for _ in range(count):
            at += 1  # flags: part of the key
            column, at = _cstring(data, at)
            type_oid, typmod = struct.unpack_from("!ii", data, at)
            at += 8
            columns.append((column, type_oid, typmod))
        self._check_definition(oid, namespace, name, columns)
        self._relations[oid] = (name, [c for c, _, _ in columns])

    def _check_definition(self, oid: int, namespace: str, name: str,
                          columns: list[tuple[str, int, int]]) -> None:
        """DDL on a followed table ends the follow: its rows would no longer fit the file."""
        known = self._relations.get(oid)
        table = known[0] if known else name
        plan = self.plans.get(table)
        if plan is None or namespace != self.schema:
            raise SchemaError(f"table {namespace}.{name} appeared in the change stream but is "
                              "not followed: was a followed table renamed or moved? The "
                              "follow stops; submit the job again")
        if name != table:
            raise SchemaError(f"followed table {table!r} was renamed to {name!r} on the "
                              "source: the follow stops; submit the job again")
        planned = sorted(c.name for c in plan.columns)
        sent = {c for c, _, _ in columns} - set(plan.generated_columns)
        if sorted(sent) != planned:
            raise SchemaError(
                f"the definition of followed table {table!r} changed on the source (columns "
                f"now {', '.join(c for c, _, _ in columns)}; planned "
                f"{', '.join(planned)}): the follow stops; submit the job again")
        earlier = self._signatures.setdefault(table, columns)
        if earlier != columns:
            raise SchemaError(f"a column type of followed table {table!r} changed on the "
                              "source: the follow stops; submit the job again")

    def _row(self, kind: bytes, data: bytes) -> Row:
        (oid,) = struct.unpack_from("!i", data, 1)
        table, columns = self._relations[oid]
        plan = self.plans[table]
        at = 5
        old: list[str | None] | None = None
        if kind == b"D" or data[at:at + 1] in (b"K", b"O"):
            at += 1
            values, _, at = _tuple(data, at)
            old = _planned(plan, columns, values)
            if kind == b"D":
                return Row(table=table, kind="delete", old=old)
        at += 1  # 'N'
        values, unchanged, at = _tuple(data, at)
        new = _planned(plan, columns, values)
        positions = {c.name: i for i, c in enumerate(plan.columns)}
        return Row(table=table, kind="insert" if kind == b"I" else "update", new=new, old=old,
                   unchanged=frozenset(positions[columns[i]] for i in unchanged
                                       if columns[i] in positions))


def _planned(plan: TablePlan, columns: list[str], values: list[str | None]) -> list[str | None]:
    by_name = dict(zip(columns, values))
    return [by_name.get(c.name) for c in plan.columns]


def _cstring(data: bytes, at: int) -> tuple[str, int]:
    end = data.index(b"\0", at)
    return data[at:end].decode(), end + 1


def _tuple(data: bytes, at: int) -> tuple[list[str | None], list[int], int]:
    """TupleData: the values as text (None for NULL), the unchanged (TOASTed) ones."""
    (count,) = struct.unpack_from("!h", data, at)
    at += 2
    values: list[str | None] = []
    unchanged = []
    for i in range(count):
        kind = data[at:at + 1]
        at += 1
        if kind == b"t":
            (length,) = struct.unpack_from("!i", data, at)
            values.append(data[at + 4:at + 4 + length].decode())
            at += 4 + length
        else:
            values.append(None)
            if kind == b"u":
                unchanged.append(i)
    return values, unchanged, at


def open_changes(conn: psycopg.Connection, *, job: dict[str, Any],
                 plans: Sequence[TablePlan], source: Any = None) -> PgChanges:
    """The job's stream on `conn` (a connection of the source's own `connect`)."""
    slot = (job.get("snapshot") or {}).get("slot")
    if not slot:
        raise SourceRejected("this job has no replication slot to follow the source from")
    stream = PgChanges(conn, job_id=job["id"], slot=slot, schema=job["schema"], plans=plans)
    if not stream.slot_exists():
        raise SourceRejected(
            f"the job's replication slot {slot} is gone from the source (dropped by hand, or "
            "invalidated by max_slot_wal_keep_size): changes since the copy are lost to the "
            "follow. Submit the job again")
    return stream
