"""Reflected MySQL schema → the job's plan: the same TablePlan/ColumnPlan objects as for
PostgreSQL (worker/sources/postgres/translate.py), so the chunk loop, finalize and verification do not care where
rows come from.

Every source object gets a fate for the report: copied, translated (with the SQL we wrote) or
skipped (with the reason). DDL is written by worker/sources/mysql/ddl.py, expressions go through sqlglot
(worker/sources/mysql/expr.py), values follow worker/sources/mysql/typemap.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.core.errors import InputError
from worker.core.model import ColumnPlan, Plan, TablePlan
from worker.sources.mysql import ddl as mysql_ddl
from worker.sources.mysql import expr as mysql_expr
from worker.sources.mysql import keys as mysql_keys
from worker.sources.mysql.catalog import MyColumn, MySchema, MyTable
from worker.sources.mysql.typemap import OVERRIDES, Ctx, Rule, context, converter_for, rule_for
from worker.sources.postgres.objects import Scratch, quote

# The rule each per-column override selects.
OVERRIDE_RULES = {"text": "override_text", "utc_datetime": "utc_datetime",
                  "naive_datetime": "naive_datetime", "decimal_text": "decimal_text",
                  "decimal": "decimal", "uuid_text": "uuid", "blob": "blob",
                  "wkt": "geometry_wkt", "wkb": "geometry"}
assert set(OVERRIDE_RULES) == OVERRIDES


def translate(schema: MySchema, options: Mapping[str, Any] | None = None) -> Plan:
    """The plan for copying `schema` with the job's options (worker/core/profiles.py, typemap_mysql)."""
    scratch = Scratch()
    chosen = {t.name: _choose(t, options) for t in schema.tables}
    for table in schema.tables:
        scratch.add_table(table.name, [(p.name, p.sqlite_type)
                                       for p, _, _ in chosen[table.name]])
    names = {t.name for t in schema.tables}
    sqlite_index_names = mysql_ddl.index_names(schema.tables)
    objects: list[dict[str, Any]] = []
    tables = [_table_plan(table, index, chosen[table.name], names, sqlite_index_names,
                          scratch, objects)
              for index, table in enumerate(schema.tables)]
    objects.extend(mysql_expr.view_objects(schema.views, scratch))
    for other in schema.others:
        objects.append({"kind": other["kind"], "name": other["name"], "fate": "skipped",
                        "reason": other["reason"]})
    return Plan(tables=tables, objects=objects)


def _choose(table: MyTable, options: Mapping[str, Any] | None) -> list[tuple]:
    """(ColumnPlan, rule, context) per column, in source order."""
    out = []
    rowid = mysql_ddl.rowid_key(table, {c.name: rule_for(c, context(options, table.name,
                                                                    c.name)).name
                                        for c in table.columns})
    for col in table.columns:
        ctx = context(options, table.name, col.name)
        rule = rule_for(col, ctx)
        if ctx.override and OVERRIDE_RULES.get(ctx.override) != rule.name:
            raise InputError(f"column_types: {table.name}.{col.name} is {col.type_sql}, "
                             f"which the override {ctx.override!r} does not apply to (for "
                             f"MySQL sources: {', '.join(sorted(OVERRIDES))})")
        out.append((_column_plan(col, rule, ctx, rowid=col.name == rowid), rule, ctx))
    return out


def _column_plan(col: MyColumn, rule: Rule, ctx: Ctx, *, rowid: bool) -> ColumnPlan:
    c = mysql_keys.quote(col.name)
    sqlite_type = rule.sqlite_type(col, ctx)
    if rowid:
        sqlite_type = "INTEGER"  # the rowid: bigint unsigned too (a value past 2^63-1 fails)
    return ColumnPlan(
        name=col.name, source_type=col.type_sql, sqlite_type=sqlite_type,
        select_sql=rule.select(c, col, ctx), wire="mysql",
        converter=converter_for(rule, col, ctx), rule=rule.name, lossy=rule.lossy,
        note=rule.note, nullable=col.nullable,
        flag_sql=(rule.flag(c, col, ctx) or None) if rule.flag else None)


def _table_plan(table: MyTable, index: int, chosen: list[tuple], names: set[str],
                sqlite_index_names: dict, scratch: Scratch, objects: list) -> TablePlan:
    plans = [p for p, _, _ in chosen]
    ddl = mysql_ddl.create_table(
        table, plans, {p.name: ctx for p, _, ctx in chosen},
        {p.name: rule for p, rule, _ in chosen}, names=names, scratch=scratch, objects=objects)
    copied = [p for p in plans if p.name not in ddl.generated]
    key, key_kind = chunk_key(table)
    positions = _key_positions(key, copied)
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


def _key_positions(key: list[str], columns: list[ColumnPlan]) -> list[int]:
    """Where each key value sits in a fetched row: its column when the converted value casts
    back exactly, else a raw copy after the columns (mysql_keys.raw_key_sql)."""
    by_name = {c.name: (i, c) for i, c in enumerate(columns)}
    positions, extra = [], 0
    for name in key:
        i, plan = by_name[name]
        if plan.rule in mysql_keys.KEY_SAFE_RULES:
            positions.append(i)
        else:
            positions.append(len(columns) + extra)
            extra += 1
    return positions


def chunk_key(table: MyTable) -> tuple[list[str], str]:
    """The primary key, else the shortest unique index over NOT NULL columns, whose types
    order exactly (not float, json, geometry) and that SQLite copies (not generated)."""
    columns = {c.name: c for c in table.columns}

    def usable(names: list[str | None]) -> bool:
        return bool(names) and all(
            n in columns and mysql_keys.keyable(columns[n].type_sql)
            and not columns[n].generated for n in names)

    if usable(list(table.primary_key)):
        return list(table.primary_key), "primary_key"
    candidates = [[p["column"] for p in ix["parts"]] for ix in table.indexes
                  if ix["unique"] and ix["type"] not in ("FULLTEXT", "SPATIAL")]
    for names in sorted(candidates, key=len):
        if usable(names) and all(not columns[n].nullable for n in names if n):
            return [n for n in names if n], "unique"
    return [], "none"
