"""Reflected PostgreSQL schema → the job's plan: SQLite DDL, SELECTs, keys, index SQL.

Every source object gets a fate for the report: copied, translated (with the SQL we wrote) or
skipped (with the reason). Nothing is dropped without a line saying so. The DDL itself is
written by ddl.py; expressions go through sqlglot (expr.py, objects.py), all in
worker/sources/postgres/.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from worker.core import keys
from worker.core.identifiers import quote
from worker.core.model import ColumnPlan, Plan, TablePlan
from worker.core.profiles import context_for
from worker.core.rules import checked_rule, column_plan
from worker.sources.postgres.source import PgColumn, PgSchema, PgTable
from worker.sources.postgres.typemap import OVERRIDE_RULES, RULES

if TYPE_CHECKING:
    from worker.core.scratch import Scratch

# Key columns whose converted value, as text, casts back to the same source value; other key
# columns are also fetched raw (as text) so the resume point is exact.
_KEY_SAFE_RULES = {"integer", "text", "uuid", "enum", "bpchar", "citext"}


def translate(schema: PgSchema, options: Mapping[str, Any] | None = None) -> Plan:
    """The plan for copying `schema` with the job's options (worker/core/profiles.py)."""
    from worker.core.scratch import Scratch
    from worker.sources.postgres import (
        objects as schema_sql,  # sqlglot: planning only, not in a reader process
    )

    scratch = Scratch()
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
    rule = checked_rule(RULES, col, ctx, table=table, override_rules=OVERRIDE_RULES)
    return column_plan(rule, col, ctx, quoted=quote(col.name),
                       wire=rule.wire_for(col, ctx) or "text")


def _table_plan(table: PgTable, index: int, columns: list[ColumnPlan], names: set[str],
                schema: str, options: Mapping[str, Any] | None, scratch: Scratch,
                objects: list[dict[str, Any]]) -> TablePlan:
    from worker.sources.postgres import ddl as table_ddl

    contexts = {c.name: context_for(options, table.name, c.name) for c in table.columns}
    ddl = table_ddl.create_table(table, columns, contexts, names=names, schema=schema,
                                 scratch=scratch, objects=objects)
    copied = [c for c in columns if c.name not in ddl.generated]
    key, key_kind = _chunk_key(table)
    # A value converted after reading (a raw uuid) is no resume key: keys are taken from
    # rows before conversion, so such a key is read again as text.
    positions = keys.key_positions(key, copied, lambda c: c.rule in _KEY_SAFE_RULES
                                   and not c.converter)
    by_name = {c.name: c for c in copied}
    key_types = [by_name[k].source_type for k in key]
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


def _chunk_key(table: PgTable) -> tuple[list[str], str]:
    """The primary key, else the shortest unique constraint or index (without expressions
    or a predicate) over NOT NULL columns that SQLite copies (not generated)."""
    candidates = [u["columns"] for u in table.unique]
    candidates += [ix["column_names"] for ix in table.indexes
                   if ix.get("unique") and None not in ix["column_names"]
                   and not ix.get("where")]
    not_null = {c.name for c in table.columns if not c.nullable and not c.generated}
    return keys.chunk_key(table.primary_key, candidates, not_null=not_null,
                          orders_exactly=lambda c: True)
