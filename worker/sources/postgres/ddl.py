"""CREATE TABLE and CREATE INDEX for one table, and the report lines for what they hold.

A single-column integer primary key becomes `INTEGER PRIMARY KEY` (SQLite's rowid), with
AUTOINCREMENT when PostgreSQL fed it from a sequence (serial or identity), as the frameworks'
own SQLite migrations declare such keys; the sequence's current value goes into
sqlite_sequence at finalize, so new rows get ids after every id PostgreSQL handed out.
"""

from __future__ import annotations

from typing import Any

from worker.core import ddl as core_ddl
from worker.core.ddl import Objects, TableDDL, generated_clause
from worker.core.identifiers import quote
from worker.core.model import ColumnPlan
from worker.core.profiles import ColumnContext
from worker.core.scratch import Scratch
from worker.sources.postgres import objects as schema_sql
from worker.sources.postgres.source import PgColumn, PgTable
from worker.sources.postgres.typemap import rule_for


def create_table(table: PgTable, columns: list[ColumnPlan],
                 contexts: dict[str, ColumnContext], *, names: set[str], schema: str,
                 scratch: Scratch, objects: Objects) -> TableDDL:
    """`columns` are the table's ColumnPlans, in source order."""
    source = {c.name: c for c in table.columns}
    rules = {c.name: c.rule for c in columns}
    rowid = core_ddl.rowid_key(table.primary_key, rules, ("integer",))
    ddl = TableDDL(sql="")
    lines = [_column_sql(table, source[plan.name], plan, contexts[plan.name], rowid, rules,
                         scratch, ddl, objects) for plan in columns]
    ddl.sql = core_ddl.create_table(table, lines, rowid=rowid, check_sql=schema_sql.check_sql,
                                    names=names, schema=schema, scratch=scratch, ddl=ddl,
                                    objects=objects)
    if rowid and (source[rowid].sequence or source[rowid].identity):
        ddl.sequence = _sequence(table.name, source[rowid], objects)
    _other_sequences(table, rowid, objects)
    return ddl


def _column_sql(table: PgTable, col: PgColumn, plan: ColumnPlan, ctx: ColumnContext,
                rowid: str | None, rules: dict[str, str], scratch: Scratch, ddl: TableDDL,
                objects: Objects) -> str:
    name = f"{table.name}.{col.name}"
    line = f"{quote(col.name)} {plan.sqlite_type}"
    if col.name == rowid:
        serial = bool(col.sequence or col.identity)
        line += " PRIMARY KEY" + (" AUTOINCREMENT" if serial else "")
    if not col.nullable:
        line += " NOT NULL"
    if col.generated:
        line += _generated(table.name, col, rules, scratch, ddl, objects)
    elif col.default:
        default, reason = schema_sql.default_sql(col, plan.rule, ctx, rowid=col.name == rowid,
                                                 scratch=scratch)
        entry = {"kind": "default", "name": name, "source_sql": col.default}
        if default is None:
            objects.append({**entry, "fate": "skipped", "reason": reason})
        else:
            line += f" DEFAULT {default}"
            objects.append({**entry, "fate": "translated", "sql": default})
    rule = rule_for(col, ctx)
    if rule.check:
        rule_check = rule.check(quote(col.name), col, ctx)
        if rule_check:
            line += f" CHECK ({rule_check})"
            ddl.checks.append({"name": f"{name} ({rule.name})", "sql": rule_check})
    for expr in col.domain_checks:
        check, reason = schema_sql.check_sql(table.name, expr, scratch, value_as=col.name)
        entry = {"kind": "domain_check", "name": f"{col.domain} on {name}", "source_sql": expr}
        if check is None:
            objects.append({**entry, "fate": "skipped", "reason": reason})
            continue
        line += f" CHECK ({check})"
        ddl.checks.append({"name": entry["name"], "sql": check})
        objects.append({**entry, "fate": "translated", "sql": check})
    return line


def _generated(table: str, col: PgColumn, rules: dict[str, str], scratch: Scratch,
               ddl: TableDDL, objects: Objects) -> str:
    sql, reason = schema_sql.generated_sql(table, col, rules, scratch)
    return generated_clause(table, col.name, col.default, sql, reason, "STORED", ddl, objects)


def _sequence(table: str, col: PgColumn, objects: Objects) -> dict[str, Any] | None:
    name = col.sequence or f"{table}.{col.name} identity"
    if col.sequence_value is None:
        objects.append({"kind": "sequence", "name": name, "table": table, "fate": "translated",
                        "sql": "AUTOINCREMENT", "note": "never used (or not readable): "
                        "SQLite starts after the largest id copied"})
        return None
    objects.append({"kind": "sequence", "name": name, "table": table, "fate": "translated",
                    "sql": f"sqlite_sequence[{table}] = {col.sequence_value}",
                    "value": col.sequence_value})
    return {"name": name, "value": col.sequence_value}


def _other_sequences(table: PgTable, rowid: str | None, objects: Objects) -> None:
    for col in table.columns:
        if col.sequence and col.name != rowid:
            objects.append({
                "kind": "sequence", "name": col.sequence, "table": table.name, "fate": "skipped",
                "value": col.sequence_value,
                "reason": f"feeds {table.name}.{col.name}, which is not the table's single "
                          "integer primary key: SQLite has no sequences"})


def index_plans(table: PgTable, scratch: Scratch, objects: Objects) -> list[dict[str, Any]]:
    plans = []
    for unique in table.unique:
        sql = (f"CREATE UNIQUE INDEX {quote(unique['name'])} ON {quote(table.name)} "
               f"({', '.join(map(quote, unique['columns']))})")
        scratch.error(sql)
        plans.append({"name": unique["name"], "sql": sql})
        objects.append({"kind": "unique_constraint", "name": unique["name"],
                        "table": table.name, "fate": "translated", "sql": sql})
    for ix in table.indexes:
        if ix["constraint"] in ("p", "u"):
            continue  # the index behind the primary key or a unique constraint: above
        index_sql, reason = schema_sql.index_sql(table.name, ix, scratch)
        entry: dict[str, Any] = {"kind": "index", "name": ix["name"], "table": table.name,
                 "source_sql": _index_source(ix)}
        if index_sql is None:
            objects.append({**entry, "fate": "skipped", "reason": reason})
            continue
        plans.append({"name": ix["name"], "sql": index_sql})
        objects.append({**entry, "fate": "translated", "sql": index_sql,
                        **({"note": "INCLUDE columns dropped (SQLite has none)"}
                           if ix["include"] else {})})
    return plans


def _index_source(ix: dict[str, Any]) -> str:
    keys = ", ".join(k + (" DESC" if d else "") for k, d in zip(ix["keys"], ix["desc"]))
    return f"USING {ix['method']} ({keys})" + (f" WHERE {ix['where']}" if ix["where"] else "")
