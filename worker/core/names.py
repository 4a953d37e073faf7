"""Which table names a job can copy into SQLite, and request lists kept within bounds.

SQLite compares names without regard to ASCII case (`Users` and `users` are one table),
reserves every name that begins with `sqlite_`, and each work file keeps liteshift's
checkpoint in a table of its own. Names it cannot hold are refused before a job is queued,
or, where they come from the source, when it is planned. Pure functions: the API imports
this module.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence

from worker.core.errors import InputError, LiteshiftError, SchemaError
from worker.core.identifiers import CHECKPOINT_TABLE

SHOWN = 10  # names quoted in a message; the rest are counted, so a message stays short
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold(name: str) -> str:
    """A name as SQLite compares it: ASCII letters in lower case, nothing else changed."""
    return name.translate(_ASCII_LOWER)


def shown(names: Iterable[str], limit: int = SHOWN) -> str:
    """Names quoted for a message, at most `limit` of them, then how many more."""
    names = list(names)
    text = ", ".join(repr(n) for n in names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_listed(field: str, names: Sequence[str] | None, *, max_names: int) -> None:
    """A request's `tables` or `exclude`: not too long, each name once."""
    if names is None:
        return
    if len(names) > max_names:
        raise InputError(f"{field} lists {len(names):,} tables; at most {max_names:,} can be "
                         f"named (LITESHIFT_MAX_LISTED_TABLES): name fewer, or use "
                         f"{'exclude' if field == 'tables' else 'tables'} instead")
    seen: set[str] = set()
    twice = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if twice:
        raise InputError(f"{field} names {shown(dict.fromkeys(twice))} more than once: "
                         "name each table once")


def check_tables(names: Sequence[str], *, error: type[LiteshiftError] = InputError) -> None:
    """The tables a job would copy: refuse names SQLite cannot hold, or not apart."""
    reserved = [n for n in names
                if fold(n).startswith("sqlite_") or fold(n) == CHECKPOINT_TABLE]
    if reserved:
        raise error(f"table(s) {shown(reserved)} cannot be copied: SQLite reserves names "
                    f"beginning with sqlite_ and liteshift uses {CHECKPOINT_TABLE}; exclude "
                    "them (--exclude), or rename them in the source")
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(fold(name), []).append(name)
    clashes = [g for g in groups.values() if len(set(g)) > 1]
    if clashes:
        pairs = "; ".join(" and ".join(map(repr, sorted(set(g)))) for g in clashes[:SHOWN])
        more = f" (and {len(clashes) - SHOWN} more)" if len(clashes) > SHOWN else ""
        raise error(f"tables {pairs}{more} differ only in case, and SQLite names ignore "
                    "case: copy one of each in this job (exclude the others) and the rest "
                    "in another job")


def check_columns(tables: Mapping[str, Sequence[str]]) -> None:
    """Each table's columns (table name: column names, as reflected), as SQLite will hold
    them: apart, and leaving a name for the rowid, which the copy reads chunks back by."""
    for table, columns in tables.items():
        groups: dict[str, list[str]] = {}
        for name in columns:
            groups.setdefault(fold(name), []).append(name)
        clashes = [g for g in groups.values() if len(g) > 1]
        if clashes:
            pairs = "; ".join(" and ".join(map(repr, g)) for g in clashes[:SHOWN])
            raise SchemaError(f"table {table!r}: columns {pairs} differ only in case, and "
                              "SQLite names ignore case: rename one in the source, or leave "
                              "the table out (exclude)", table=table)
        if {"rowid", "_rowid_", "oid"} <= set(groups):
            raise SchemaError(f"table {table!r} has columns named rowid, _rowid_ and oid: it "
                              "uses every name SQLite gives the rowid, which the copy needs; "
                              "rename one in the source, or leave the table out (exclude)",
                              table=table)
