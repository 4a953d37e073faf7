"""Reflected MySQL schema → the job's plan: the same TablePlan/ColumnPlan objects as for
PostgreSQL (worker/core/model.py), so the chunk loop, finalize and verification do not care
where rows come from.

Every source object gets a fate for the report: copied, translated (with the SQL we wrote) or
skipped (with the reason). DDL is written by ddl.py, expressions go through sqlglot
(expr.py), values follow typemap.py, all in worker/sources/mysql/.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.core import keys
from worker.core.ddl import Objects
from worker.core.identifiers import quote
from worker.core.model import ColumnPlan, Plan, TablePlan
from worker.core.profiles import ColumnContext, context_for
from worker.core.rules import Rule, checked_rule, column_plan
from worker.core.scratch import Scratch
from worker.sources.mysql import ddl as mysql_ddl
from worker.sources.mysql import expr as mysql_expr
from worker.sources.mysql import keys as mysql_keys
from worker.sources.mysql.catalog import MyColumn, MySchema, MyTable
from worker.sources.mysql.typemap import OVERRIDE_RULES, RULES, rule_for

# A column's plan, the rule that made it, and its context, in source order.
Chosen = tuple[ColumnPlan, Rule[MyColumn], ColumnContext]


def translate(schema: MySchema, options: Mapping[str, Any] | None = None) -> Plan:
    """The plan for copying `schema` with the job's options (worker/core/profiles.py)."""
    scratch = Scratch()
    chosen = {t.name: _choose(t, options) for t in schema.tables}
    for table in schema.tables:
        scratch.add_table(table.name, [(p.name, p.sqlite_type)
                                       for p, _, _ in chosen[table.name]])
    names = {t.name for t in schema.tables}
    sqlite_index_names = mysql_ddl.index_names(schema.tables)
    objects: list[dict[str, Any]] = []
    tables = [_table_plan(table, index, chosen[table.name], names, schema.schema,
                          sqlite_index_names, scratch, objects)
              for index, table in enumerate(schema.tables)]
    objects.extend(mysql_expr.view_objects(schema.views, scratch))
    for other in schema.others:
        objects.append({"kind": other["kind"], "name": other["name"], "fate": "skipped",
                        "reason": other["reason"]})
    return Plan(tables=tables, objects=objects)


def _choose(table: MyTable, options: Mapping[str, Any] | None) -> list[Chosen]:
    """(ColumnPlan, rule, context) per column, in source order."""
    rowid = mysql_ddl.rowid_key(table, {c.name: rule_for(c, context_for(options, table.name,
                                                                        c.name)).name
                                        for c in table.columns})
    known = f" (for MySQL sources: {', '.join(sorted(OVERRIDE_RULES))})"
    out = []
    for col in table.columns:
        ctx = context_for(options, table.name, col.name)
        rule = checked_rule(RULES, col, ctx, table=table.name, override_rules=OVERRIDE_RULES,
                            known=known)
        # The rowid is INTEGER: bigint unsigned too (a value past 2^63-1 fails the table).
        plan = column_plan(rule, col, ctx, quoted=mysql_keys.backtick(col.name), wire="mysql",
                           sqlite_type="INTEGER" if col.name == rowid else None)
        out.append((plan, rule, ctx))
    return out


def _table_plan(table: MyTable, index: int, chosen: list[Chosen], names: set[str],
                schema: str, sqlite_index_names: dict[tuple[str, str], str],
                scratch: Scratch, objects: Objects) -> TablePlan:
    plans = [p for p, _, _ in chosen]
    ddl = mysql_ddl.create_table(
        table, plans, {p.name: ctx for p, _, ctx in chosen},
        {p.name: rule for p, rule, _ in chosen}, names=names, schema=schema, scratch=scratch,
        objects=objects)
    copied = [p for p in plans if p.name not in ddl.generated]
    key, key_kind = chunk_key(table)
    # Keys are taken from rows before conversion: the driver's ints and text cast back.
    positions = keys.key_positions(key, copied,
                                   lambda c: c.rule in mysql_keys.KEY_SAFE_RULES)
    insert_sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c.name) for c in copied)})"
                  f" VALUES ({', '.join('?' for _ in copied)})")
    entry = {"kind": "table", "name": table.name, "fate": "translated", "sql": ddl.sql,
             "chunk_key": key, "key_kind": key_kind}
    if not key:
        entry["key_note"] = ("no primary or unique NOT NULL key usable in key order: copied "
                             "in one pass, and restarted from zero if interrupted")
    objects.append(entry)
    by_name = {c.name: c for c in table.columns}
    return TablePlan(
        name=table.name, file=f"{index:05d}.db", columns=copied, key=key, key_kind=key_kind,
        key_types=[by_name[k].type_sql for k in key], key_positions=positions,
        create_sql=ddl.sql, insert_sql=insert_sql,
        indexes=mysql_ddl.index_plans(table, sqlite_index_names, scratch, objects),
        rows_estimated=table.rows_estimated, size_bytes=table.size_bytes,
        generated_columns=sorted(ddl.generated), checks=ddl.checks, sequence=ddl.sequence)


def chunk_key(table: MyTable) -> tuple[list[str], str]:
    """The primary key, else the shortest unique index over NOT NULL columns, whose types
    order exactly (not float, json, geometry) and that SQLite copies (not generated)."""
    columns = {c.name: c for c in table.columns}
    candidates = [[p["column"] for p in ix["parts"]] for ix in table.indexes
                  if ix["unique"] and ix["type"] not in ("FULLTEXT", "SPATIAL")]
    return keys.chunk_key(
        table.primary_key, candidates,
        not_null={c.name for c in table.columns if not c.nullable},
        orders_exactly=lambda n: n in columns and mysql_keys.keyable(columns[n].type_sql)
        and not columns[n].generated)
