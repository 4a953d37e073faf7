"""The parts of a CREATE TABLE both sources write alike, and the report lines for them.

A source's ddl module (worker/sources/*/ddl.py) writes each column's line, its default and
its rule's CHECK; the rowid choice, the table's PRIMARY KEY, CHECK and FOREIGN KEY lines,
generated columns and the clock default are written here. Every object gets a fate on the
report's list (`objects`): translated, with the SQL written, or skipped, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.core.identifiers import quote
from worker.core.profiles import ISO_PROFILES
from worker.core.scratch import Scratch

Objects = list[dict[str, Any]]
# (table, CHECK expression, scratch) -> (SQLite SQL or None, the reason when None)
CheckSql = Callable[[str, str, Scratch], tuple[str | None, str]]


@dataclass
class TableDDL:
    sql: str
    generated: set[str] = field(default_factory=set)  # columns SQLite computes
    checks: list[dict[str, Any]] = field(default_factory=list)  # {"name", "sql"}
    sequence: dict[str, Any] | None = None


class ConstrainedTable(Protocol):
    """What the table-level lines are made from; both sources' reflected tables have it."""

    @property
    def name(self) -> str: ...

    @property
    def primary_key(self) -> Sequence[str]: ...

    @property
    def checks(self) -> Sequence[dict[str, Any]]: ...  # {"name", "expr", ...}

    @property
    def foreign_keys(self) -> Sequence[dict[str, Any]]: ...  # SQLAlchemy's reflected FKs


def rowid_key(primary_key: Sequence[str], rules: Mapping[str, str],
              rowid_rules: Collection[str]) -> str | None:
    """The column that becomes `INTEGER PRIMARY KEY` (SQLite's rowid): a single-column
    primary key whose rule (one of `rowid_rules`) stores integers."""
    if len(primary_key) == 1 and rules.get(primary_key[0]) in rowid_rules:
        return primary_key[0]
    return None


def create_table(table: ConstrainedTable, column_lines: list[str], *, rowid: str | None,
                 check_sql: CheckSql, names: Collection[str], schema: str | None,
                 scratch: Scratch, ddl: TableDDL, objects: Objects) -> str:
    """CREATE TABLE from the columns' lines and the table's PRIMARY KEY (unless it is the
    rowid), CHECKs (`check_sql` translates them) and FOREIGN KEYs to copied tables."""
    lines = list(column_lines)
    if table.primary_key and not rowid:
        lines.append(f"PRIMARY KEY ({', '.join(map(quote, table.primary_key))})")
    for check in table.checks:
        sql, reason = check_sql(table.name, check["expr"], scratch)
        line = check_line(table.name, check, sql, reason, ddl, objects)
        if line:
            lines.append(line)
    for fk in table.foreign_keys:
        line = foreign_key_sql(table.name, fk, names, schema, objects)
        if line:
            lines.append(line)
    return f"CREATE TABLE {quote(table.name)} (\n  " + ",\n  ".join(lines) + "\n)"


def generated_clause(table: str, column: str, source_sql: str | None, sql: str | None,
                     reason: str, storage: str, ddl: TableDDL, objects: Objects) -> str:
    """The column's GENERATED clause, or none (its values are copied), recorded either way."""
    entry = {"kind": "generated_column", "name": f"{table}.{column}", "source_sql": source_sql}
    if sql is None:
        objects.append({**entry, "fate": "translated", "sql": None,
                        "note": f"copied as plain values: {reason}"})
        return ""
    ddl.generated.add(column)
    clause = f" GENERATED ALWAYS AS ({sql}) {storage}"
    objects.append({**entry, "fate": "translated", "sql": clause.strip()})
    return clause


def check_line(table: str, check: dict[str, Any], sql: str | None, reason: str,
               ddl: TableDDL, objects: Objects) -> str | None:
    """A table CHECK as written in CREATE TABLE, or None (skipped), recorded either way."""
    entry = {"kind": "check_constraint", "name": check["name"], "table": table,
             "source_sql": check["expr"]}
    if sql is None:
        objects.append({**entry, "fate": "skipped", "reason": reason})
        return None
    line = f"CONSTRAINT {quote(check['name'])} CHECK ({sql})"
    ddl.checks.append({"name": check["name"], "sql": sql})
    objects.append({**entry, "fate": "translated", "sql": line})
    return line


def foreign_key_sql(table: str, fk: dict[str, Any], names: Collection[str],
                    schema: str | None, objects: Objects) -> str | None:
    """A FOREIGN KEY line, when it refers to a table of `schema` that is copied; else
    None, reported as skipped."""
    name = fk.get("name") or f"{table}_fkey"
    referred = fk["referred_table"]
    if fk.get("referred_schema") not in (None, schema) or referred not in names:
        where = f"{fk.get('referred_schema')}.{referred}" if fk.get("referred_schema") else referred
        objects.append({"kind": "foreign_key", "name": name, "table": table, "fate": "skipped",
                        "reason": f"references {where!r}, which is not copied"})
        return None
    columns = ", ".join(map(quote, fk["constrained_columns"]))
    sql = (f"CONSTRAINT {quote(name)} FOREIGN KEY ({columns})"
           f" REFERENCES {quote(referred)} ({', '.join(map(quote, fk['referred_columns']))})")
    options = fk.get("options") or {}
    for clause in ("ondelete", "onupdate"):
        if options.get(clause):
            sql += f" ON {clause[2:].upper()} {options[clause].upper()}"
    if options.get("deferrable"):
        sql += " DEFERRABLE INITIALLY " + (options.get("initially") or "IMMEDIATE").upper()
    objects.append({"kind": "foreign_key", "name": name, "table": table, "fate": "translated",
                    "sql": sql})
    return sql


def now_sql(profile: str, *, utc: bool, fraction: bool) -> str:
    """The current time as a timestamp column's rule writes times in `profile`, so new rows
    compare with copied ones; `fraction`: the column keeps fractional seconds."""
    if profile not in ISO_PROFILES:
        return "CURRENT_TIMESTAMP"  # YYYY-MM-DD HH:MM:SS, as rails and django write
    zone = " || 'Z'" if utc else ""
    if profile == "ecto" and fraction:
        # SQLite's clock has milliseconds: %f is SS.SSS, padded to Ecto's six digits.
        return f"(strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000'{zone})"
    return f"(strftime('%Y-%m-%dT%H:%M:%S', 'now'){zone})"
