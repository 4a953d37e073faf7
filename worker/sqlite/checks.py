"""The built file's checks: structurally sound, every index complete and consistent with its
table, no orphaned foreign key.

Rows themselves are verified earlier, chunk by chunk (each chunk read back and checksummed
against the source's). What is left to prove here is the file: its b-trees, and that each
index holds exactly one entry per row of its table (per row matching its WHERE, for a
partial index), with that row's values.

`PRAGMA integrity_check` proves both, but it finds every row's entry in every index by a
b-tree search, so its cost grows with rows × indexes: on a 1M-row table with one index it
cost ten times `quick_check` (ops/bench/RESULTS.md). So the check is split:
- `PRAGMA quick_check`: everything integrity_check does but the index-against-table
  comparison and UNIQUE (every page of every b-tree, tables and indexes, well-formed and
  used once; rowids in order; NOT NULL).
- per index, one scan of the index and one of its table: the count and the checksum
  (xxh3-64 per entry, summed, as the chunk read-back does) of (rowid, key columns) read
  through the index, covering it, must equal those computed from the table. Equal multisets
  mean every row has its entry with its values and there is no other entry (a false match is
  a 64-bit checksum collision). UNIQUE holds because CREATE UNIQUE INDEX, or the work
  file's inserts, enforced it on exactly these entries.
An index whose values SQLite would not read from the index alone (checked on the query's
program; a partial index's WHERE on columns it does not hold, say), a table without the C
checksum, and any disagreement fall back
to `PRAGMA integrity_check(table)`, which has the last word: the fast path never passes what
integrity_check would fail, and never fails what it would pass.

Foreign keys the same way. `PRAGMA foreign_key_check` walks the child table in its own order
and looks each row's parent up: a random read of the parent's b-tree per row, which on a
text-heavy parent larger than the page cache costs a read from the OS per row (on the app
benchmark's comments, 1.5M rows, ten times everything else this module does;
ops/bench/RESULTS.md). A single-column key that references its parent's rowid (INTEGER
PRIMARY KEY, what apps' foreign keys almost always are) is checked instead with the child's
distinct values in order (GROUP BY: a walk of an index on the column when there is one, else
a sort), each looked up once, so the parent's pages are read in order, each once. That query
is at least as strict as the pragma (a value the pragma would convert to an integer first is
an orphan here); anything it finds, and every other kind of key, goes to
`PRAGMA foreign_key_check(table)`, which has the last word and names the rows.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from worker.core.errors import VerificationFailed
from worker.core.identifiers import quote
from worker.core.logs import get_logger
from worker.core.steps import step
from worker.native import fastsqlite
from worker.sqlite.check_runner import Outcome, Piece, open_reader, run_pieces

FK_VIOLATIONS_SHOWN = 5


def run_checks(db: sqlite3.Connection, *, readers: int = 1) -> dict[str, Any]:
    """Check the file `db` has open as main; raise VerificationFailed naming what fails.

    The checks are pieces run at once on `db` and on `readers` read-only connections of the
    file (worker/sqlite/check_runner.py), and judged afterwards in the order they were once
    run one after the other, so the first failure in that order is the one raised, whatever
    finished first. What that proves is what the pieces run alone prove:
    - `quick_check` of the whole file runs on `db`, which sees the file exactly as it will be
      committed. The page accounting (every page in one b-tree or the freelist, none twice)
      is only proven by a check of the whole file, so it is not split by table.
    - The index scans and foreign key queries read table and index b-trees, which a reader
      may see as last committed while `db` still holds a write transaction. The caller keeps
      that transaction away from every table but what it drops, with auto_vacuum off (it
      would move other b-trees' root pages), so both see the same entries; without auto_vacuum
      off, every piece runs on `db`.
    """
    step("checking", 0, 0, "quick_check")
    main = next(row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main")
    fast = bool(main) and fastsqlite.usable(db, Path(main))
    tables = [name for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    plans = {table: _index_plan(db, table) if fast else None for table in tables}
    pieces = [Piece("quick_check", "quick_check", _pragma("PRAGMA quick_check"),
                    main_only=True)]
    for table in tables:
        pieces += _pieces(db, table, plans[table])
    if db.execute("PRAGMA auto_vacuum").fetchone()[0]:
        readers = 0
    outcomes = run_pieces(db, pieces, readers=readers,
                          open_reader=lambda path: open_reader(path, _reader_setup(fast)))
    _expect_ok(outcomes["quick_check"].result(), "PRAGMA quick_check")
    for table in tables:
        if not _indexes_agree(table, plans[table], outcomes):
            _expect_ok(_pragma(f"PRAGMA integrity_check({quote(table)})")(db),
                       f"PRAGMA integrity_check of table {table!r}")
    for table in tables:
        if ("foreign_keys", table) in outcomes:
            outcomes["foreign_keys", table].result()
    step("checking", len(pieces), len(pieces))
    return {"integrity_check": "ok", "foreign_key_check": "ok"}


def _reader_setup(fast: bool) -> Callable[[sqlite3.Connection], bool]:
    def setup(reader: sqlite3.Connection) -> bool:
        main = next(row[2] for row in reader.execute("PRAGMA database_list")
                    if row[1] == "main")
        return not fast or fastsqlite.usable(reader, Path(main))
    return setup


def _pragma(sql: str) -> Callable[[sqlite3.Connection], list[Any]]:
    return lambda db: [row[0] for row in db.execute(sql)]


def _expect_ok(result: list[Any], what: str) -> None:
    if result != ["ok"]:
        raise VerificationFailed(f"{what} failed: {result[:5]}")


# An index's entries as SQL (rowid and keys, the WHERE of a partial index): per index of a
# table, or None when some index cannot be checked by its scan (integrity_check then).
IndexPlan = list[tuple[str, list[str], str]]


def _index_plan(db: sqlite3.Connection, table: str) -> IndexPlan | None:
    try:
        indexes = [row[1] for row in db.execute(f"PRAGMA index_list({quote(table)})")]
        entries = [_entries(db, table, index) for index in indexes]
    except sqlite3.OperationalError:  # a table this cannot read so (WITHOUT ROWID, virtual)
        return None
    if any(e is None for e in entries):
        return None
    return [(index, *e) for index, e in zip(indexes, entries, strict=True) if e is not None]


def _pieces(db: sqlite3.Connection, table: str, plan: IndexPlan | None) -> list[Piece]:
    """The table's pieces: its indexes' scans and its table's (or integrity_check of the
    table when they cannot tell), and its foreign keys."""
    size = _rows_about(db, table)
    pieces = []
    if plan is None:
        pieces.append(Piece(("integrity_check", table), table,
                            _pragma(f"PRAGMA integrity_check({quote(table)})"), 10 * size))
    elif plan:
        pieces.append(Piece(("table", table), table,
                            lambda c: c.execute(_from_table(table, plan)).fetchone(), 3 * size))
        pieces += [Piece(("index", table, index), index,
                         _read_back(_through_index(table, index, keys, where)), size)
                   for index, keys, where in plan]
    if db.execute("SELECT 1 FROM pragma_foreign_key_list(?)", (table,)).fetchone():
        pieces.append(Piece(("foreign_keys", table), table,
                            lambda c: _check_foreign_keys(c, table), size))
    return pieces


def _read_back(query: str) -> Callable[[sqlite3.Connection], tuple[int, int]]:
    return lambda db: fastsqlite.readback(db, query, None, fast=True)


def _rows_about(db: sqlite3.Connection, table: str) -> int:
    """The table's largest rowid (one b-tree descent), to run large pieces first; 0 when it
    has none to read so."""
    columns = {r[1].lower() for r in db.execute(f"PRAGMA table_info({quote(table)})")}
    rowid = next((n for n in ("rowid", "_rowid_", "oid") if n not in columns), None)
    try:
        return int(db.execute(f"SELECT max({rowid}) FROM {quote(table)}").fetchone()[0] or 0
                   ) if rowid else 0
    except (sqlite3.OperationalError, TypeError, ValueError):
        return 0


def _from_table(table: str, plan: IndexPlan) -> str:
    """One scan of the table for all its indexes: per index, an aggregate FILTERed by a
    partial index's WHERE."""
    sums = []
    for _, keys, where in plan:
        keep = f" FILTER (WHERE {where})" if where else ""
        sums.append(f"count(*){keep}, liteshift_checksum({', '.join(keys)}){keep}")
    return f"SELECT {', '.join(sums)} FROM {quote(table)} NOT INDEXED"


def _indexes_agree(table: str, plan: IndexPlan | None,
                   outcomes: dict[Hashable, Outcome]) -> bool:
    """True when every index of the table holds exactly the table's entries; False when one
    differs or this cannot tell (the caller then runs integrity_check on the table)."""
    if plan is None:
        _expect_ok(outcomes["integrity_check", table].result(),
                   f"PRAGMA integrity_check of table {table!r}")
        return True
    if not plan:
        return True
    try:
        from_table = outcomes["table", table].result()
        through = [outcomes["index", table, index].result() for index, _, _ in plan]
    except sqlite3.OperationalError:
        return False
    for at, ((index, _, _), found) in enumerate(zip(plan, through, strict=True)):
        expected = (from_table[2 * at], (from_table[2 * at + 1] or 0) % 2**64)
        if tuple(found) != expected:
            get_logger(step="finalize", table=table).warning("index_checksum_differs",
                                                             index=index)
            return False
    return True


def _through_index(table: str, index: str, keys: list[str], where: str) -> str:
    # Aliased: readback names the columns in its outer query, and an expression's own name
    # there would be read as a string literal.
    selected = ", ".join(f"{key} AS k{i}" for i, key in enumerate(keys))
    return (f"SELECT {selected} FROM {quote(table)} INDEXED BY {quote(index)}"
            f"{f' WHERE {where}' if where else ''}")


def _entries(db: sqlite3.Connection, table: str, index: str) -> tuple[list[str], str] | None:
    """What makes an index's entry, as SQL: rowid and its keys, and the WHERE of a partial
    index (or ""); None when SQLite would read any of it from the table, not the index."""
    names = [name for _, _, name, _, _, is_key in
             db.execute(f"PRAGMA index_xinfo({quote(index)})") if is_key]
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                     (index,)).fetchone()
    if row is None or row[0] is None:  # UNIQUE / PRIMARY KEY of CREATE TABLE: columns only
        parsed = None if None in names else ([quote(n) for n in names], "")
    else:
        parsed = _keys_and_where(row[0])
    if parsed is None or len(parsed[0]) != len(names):
        return None
    keys, where = parsed
    columns = {r[1].lower() for r in db.execute(f"PRAGMA table_info({quote(table)})")}
    rowid = next((n for n in ("rowid", "_rowid_", "oid") if n not in columns), None)
    if rowid is None:
        return None
    entry = [rowid, *keys]
    if not _reads_only_the_index(db, table, _through_index(table, index, entry, where)):
        return None
    return entry, where


def _reads_only_the_index(db: sqlite3.Connection, table: str, query: str) -> bool:
    """True when the query's program reads no column and no rowid from the table's b-tree:
    every value it returns is the index's (SQLite reads key columns and key expressions from
    the index even when it keeps a deferred seek on the table, and does not evaluate a
    partial index's WHERE, which the index implies)."""
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (table,)).fetchone()[0]
    program = db.execute(f"EXPLAIN {query}").fetchall()
    cursors = {p1 for _, opcode, p1, p2, *_ in program if opcode == "OpenRead" and p2 == root}
    return not any(opcode in ("Column", "Rowid") and p1 in cursors
                   for _, opcode, p1, *_ in program)


def _keys_and_where(sql: str) -> tuple[list[str], str] | None:
    """The key expressions (without ASC/DESC) and the WHERE predicate (or "") of a CREATE
    INDEX as SQLite keeps it: as written. None when it cannot be read so."""
    spans = _key_list(sql)
    if spans is None:
        return None
    bounds, end = spans
    keys = [_ORDER.sub("", sql[a + 1:b].strip()) for a, b in zip(bounds, bounds[1:])]
    rest = sql[end + 1:].strip()
    if not rest:
        return keys, ""
    return (keys, rest[5:].strip()) if rest[:5].upper() == "WHERE" else None


_ORDER = re.compile(r"\s+(ASC|DESC)$", re.IGNORECASE)


def _key_list(sql: str) -> tuple[list[int], int] | None:
    """The first parenthesis outside quotes: where it opens, the commas directly inside it
    and where it closes (as one list of bounds), and where it closes."""
    depth, quote_char, bounds = 0, "", list[int]()
    for at, char in enumerate(sql):
        if quote_char:
            if char == quote_char:
                quote_char = ""  # a doubled quote reopens at once: same result
        elif char in "'\"`[":
            quote_char = "]" if char == "[" else char
        elif char == "(":
            depth += 1
            if not bounds:
                bounds.append(at)
        elif char == ")":
            depth -= 1
            if depth == 0:
                return [*bounds, at], at
        elif char == "," and depth == 1:
            bounds.append(at)
    return None


def _check_foreign_keys(db: sqlite3.Connection, table: str) -> None:
    keys: dict[int, list[tuple[str, str, str | None]]] = {}
    for fk_id, _, parent, column, to, *_ in db.execute(
            f"PRAGMA foreign_key_list({quote(table)})"):
        keys.setdefault(fk_id, []).append((parent, column, to))
    if keys and not all(_no_orphans_in_key_order(db, table, key) for key in keys.values()):
        _foreign_key_check(db, table)


def _no_orphans_in_key_order(db: sqlite3.Connection, table: str,
                             key: list[tuple[str, str, str | None]]) -> bool:
    """True when every non-NULL value of a single-column key referencing its parent's rowid
    has its parent; False when one has none, or the key is of another kind."""
    if len(key) != 1:
        return False
    parent, column, to = key[0]
    rowid = _rowid_alias(db, parent)
    if rowid is None or (to is not None and to.lower() != rowid.lower()):
        return False
    orphans = db.execute(
        f"SELECT count(*) FROM (SELECT {quote(column)} AS v FROM {quote(table)} "
        f"WHERE {quote(column)} IS NOT NULL GROUP BY {quote(column)}) "
        f"WHERE NOT EXISTS (SELECT 1 FROM {quote(parent)} WHERE {quote(rowid)} = v)"
    ).fetchone()[0]
    return not orphans


def _rowid_alias(db: sqlite3.Connection, table: str) -> str | None:
    """The table's INTEGER PRIMARY KEY column (its rowid), or None."""
    pk = [(name, decl) for _, name, decl, _, _, at in
          db.execute(f"PRAGMA table_info({quote(table)})") if at]
    if len(pk) != 1 or pk[0][1].upper() != "INTEGER":
        return None
    without_rowid = db.execute("SELECT 1 FROM pragma_index_list(?) WHERE origin = 'pk'",
                               (table,)).fetchone()
    return None if without_rowid else pk[0][0]


def _foreign_key_check(db: sqlite3.Connection, table: str) -> None:
    violations = db.execute(f"PRAGMA foreign_key_check({quote(table)})").fetchmany(
        FK_VIOLATIONS_SHOWN)
    if violations:
        shown = "; ".join(f"{t} rowid {rowid} → {parent}" for t, rowid, parent, _ in violations)
        raise VerificationFailed(
            f"PRAGMA foreign_key_check found rows whose parent is missing ({shown}): the source "
            "changed while tables were copied, or its constraints were not enforced")
