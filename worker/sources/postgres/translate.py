"""Reflected PostgreSQL schema → the job's plan: SQLite DDL, SELECTs, keys, index SQL.

Every source object gets a fate for the report: copied, translated (with the SQL we wrote) or
skipped (with the reason). Nothing is dropped without a line saying so. The DDL itself is
written by worker/sources/postgres/ddl.py; expressions go through sqlglot (worker/sources/postgres/expr.py, worker/sources/postgres/objects.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from worker.core.errors import InputError
from worker.core.identifiers import quote
from worker.core.model import ColumnPlan, Plan, TablePlan
from worker.core.profiles import context_for
from worker.sources.postgres.source import PgColumn, PgSchema, PgTable
from worker.sources.postgres.typemap import OVERRIDE_RULES, converter_for, rule_for, wire_for

if TYPE_CHECKING:
    from worker.sources.postgres import objects as schema_sql

# Key columns whose converted value, as text, casts back to the same source value; other key
# columns are also fetched raw (as text) so the resume point is exact.
_KEY_SAFE_RULES = {"integer", "text", "uuid", "enum", "bpchar", "citext"}


def translate(schema: PgSchema, options: Mapping[str, Any] | None = None) -> Plan:
    """The plan for copying `schema` with the job's options (worker/core/profiles.py)."""
    from worker.sources.postgres import (
        objects as schema_sql,  # sqlglot: planning only, not in a reader process
    )

    scratch = schema_sql.Scratch()
    columns = {t.name: [_column_plan(t.name, c, options) for c in t.columns]
               for t in schema.tables}
    for table in schema.tables:
        scratch.add_table(table.name, [(c.name, c.sqlite_type) for c in columns[table.name]])
    names = {t.name for t in schema.tables}
    objects: list[dict[str, Any]] = []
    tables = [_table_plan(table, index, columns[table.name], names, schema.schema, options,
                          scratch, objects)
              for index, table in enumerate(schema.tables)]
    objects.extend(schema_sql.view_objects(schema.views, scratch))
    for other in schema.others:
        objects.append({"kind": other["kind"], "name": other["name"], "fate": "skipped",
                        "reason": other.get("reason") or "SQLite has no place for it"})
    return Plan(tables=tables, objects=objects)


def _column_plan(table: str, col: PgColumn, options: Mapping[str, Any] | None) -> ColumnPlan:
    ctx = context_for(options, table, col.name)
    rule = rule_for(col, ctx)
    if ctx.override and OVERRIDE_RULES.get(ctx.override) != rule.name:
        raise InputError(f"column_types: {table}.{col.name} is {col.type_sql}, which the "
                         f"override {ctx.override!r} does not apply to")
    flag = rule.flag(quote(col.name), col, ctx) if rule.flag else None
    return ColumnPlan(
        name=col.name, source_type=col.type_sql, sqlite_type=rule.sqlite_type(col, ctx),
        select_sql=rule.select(quote(col.name), col, ctx), wire=wire_for(rule, col, ctx),
        converter=converter_for(rule, col, ctx), rule=rule.name, lossy=rule.lossy,
        note=rule.note, nullable=col.nullable, flag_sql=flag,
    )


def _table_plan(table: PgTable, index: int, columns: list[ColumnPlan], names: set[str],
                schema: str, options: Mapping[str, Any] | None, scratch: schema_sql.Scratch,
                objects: list[dict[str, Any]]) -> TablePlan:
    from worker.sources.postgres import ddl as table_ddl

    contexts = {c.name: context_for(options, table.name, c.name) for c in table.columns}
    ddl = table_ddl.create_table(table, columns, contexts, names=names, schema=schema,
                                 scratch=scratch, objects=objects)
    copied = [c for c in columns if c.name not in ddl.generated]
    key, key_kind = _chunk_key(table)
    positions, key_types = _key_positions(key, copied)
    insert_sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c.name) for c in copied)})"
                  f" VALUES ({', '.join('?' for _ in copied)})")
    objects.append({"kind": _KINDS.get(table.kind, "table"), "name": table.name,
                    "fate": "translated", "sql": ddl.sql, "chunk_key": key, "key_kind": key_kind,
                    **({"note": _NOTES[table.kind]} if table.kind in _NOTES else {}),
                    **({"key_note": "no primary or unique NOT NULL key: copied in one pass, "
                                    "and restarted from zero if interrupted"} if not key else {})})
    return TablePlan(
        name=table.name, file=f"{index:05d}.db", columns=copied, key=key, key_kind=key_kind,
        key_types=key_types, key_positions=positions, create_sql=ddl.sql,
        insert_sql=insert_sql, indexes=table_ddl.index_plans(table, scratch, objects),
        rows_estimated=table.rows_estimated, size_bytes=table.size_bytes,
        generated_columns=sorted(ddl.generated), checks=ddl.checks, sequence=ddl.sequence,
    )


_KINDS = {"m": "materialized_view", "p": "partitioned_table"}
_NOTES = {"m": "copied as a table with its rows; SQLite cannot refresh it",
          "p": "one table holding every partition's rows"}


def _key_positions(key: list[str], columns: list[ColumnPlan]) -> tuple[list[int], list[str]]:
    by_name = {c.name: (i, c) for i, c in enumerate(columns)}
    positions, key_types, extra = [], [], 0
    for name in key:
        i, plan = by_name[name]
        key_types.append(plan.source_type)
        # A value converted after reading (a raw uuid) is no resume key: keys are taken
        # from rows before conversion, so such a key is read again as text.
        if plan.rule in _KEY_SAFE_RULES and not plan.converter:
            positions.append(i)
        else:
            positions.append(len(columns) + extra)
            extra += 1
    return positions, key_types


def _chunk_key(table: PgTable) -> tuple[list[str], str]:
    if table.primary_key:
        return list(table.primary_key), "primary_key"
    not_null = {c.name for c in table.columns if not c.nullable and not c.generated}
    candidates = [u["columns"] for u in table.unique]
    candidates += [ix["column_names"] for ix in table.indexes
                   if ix.get("unique") and None not in ix["column_names"]
                   and not ix.get("where")]
    for columns in sorted(candidates, key=len):
        if columns and all(c in not_null for c in columns):
            return list(columns), "unique"
    return [], "none"
