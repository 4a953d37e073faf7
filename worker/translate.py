"""Reflected PostgreSQL schema → the job's plan: SQLite DDL, SELECTs, keys, index SQL.

Every source object gets a fate for the report: copied, translated (with the SQL we wrote) or
skipped (with the reason). Nothing is dropped without a line saying so.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from worker.pg_source import PgColumn, PgSchema, PgTable
from worker.typemap_pg import rule_for

# Key columns whose converted value, as text, casts back to the same source value; other key
# columns are also fetched raw (as text) so the resume point is exact.
_KEY_SAFE_RULES = {"integer", "text", "uuid", "enum"}


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class ColumnPlan:
    name: str
    source_type: str
    sqlite_type: str
    select_sql: str
    wire: str
    converter: str | None
    rule: str
    lossy: bool
    note: str
    nullable: bool


@dataclass
class TablePlan:
    name: str
    file: str
    columns: list[ColumnPlan]
    key: list[str]
    key_kind: str  # "primary_key", "unique", or "none" (copied in one pass, not resumable)
    key_types: list[str]
    key_positions: list[int]  # where each key value sits in a fetched row
    create_sql: str
    insert_sql: str
    indexes: list[dict[str, Any]] = field(default_factory=list)  # {"name", "sql"}, after data
    rows_estimated: int = 0
    size_bytes: int = 0

    @property
    def select_sql(self) -> list[str]:
        extra = [f"{quote(k)}::text" for k, pos in zip(self.key, self.key_positions)
                 if pos >= len(self.columns)]
        return [c.select_sql for c in self.columns] + extra

    @property
    def wire_types(self) -> list[str]:
        return [c.wire for c in self.columns] + ["text"] * (
            sum(1 for p in self.key_positions if p >= len(self.columns)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TablePlan:
        data = dict(data)
        data["columns"] = [ColumnPlan(**c) for c in data["columns"]]
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    tables: list[TablePlan]
    objects: list[dict[str, Any]]  # the report's account of every source object


def translate(schema: PgSchema) -> Plan:
    names = {t.name for t in schema.tables}
    objects: list[dict[str, Any]] = []
    tables = []
    for index, table in enumerate(schema.tables):
        tables.append(_table_plan(table, index, names, objects))
    for other in schema.others:
        objects.append({"kind": other["kind"], "name": other["name"], "fate": "skipped",
                        "reason": "not translated by this version of liteshift"})
    return Plan(tables=tables, objects=objects)


def _table_plan(table: PgTable, index: int, names: set[str],
                objects: list[dict[str, Any]]) -> TablePlan:
    columns = [_column_plan(col) for col in table.columns]
    key, key_kind = _chunk_key(table)
    by_name = {c.name: (i, c) for i, c in enumerate(columns)}
    positions, key_types, extra = [], [], 0
    for name in key:
        i, plan = by_name[name]
        key_types.append(plan.source_type)
        if plan.rule in _KEY_SAFE_RULES:
            positions.append(i)
        else:
            positions.append(len(columns) + extra)
            extra += 1
    create_sql = _create_table_sql(table, columns, names, objects)
    insert_sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c.name) for c in columns)})"
                  f" VALUES ({', '.join('?' for _ in columns)})")
    objects.append({"kind": "table", "name": table.name, "fate": "translated",
                    "sql": create_sql, "chunk_key": key, "key_kind": key_kind,
                    **({"note": "no primary or unique NOT NULL key: copied in one pass, and "
                                "restarted from zero if interrupted"} if not key else {})})
    return TablePlan(
        name=table.name, file=f"{index:05d}.db", columns=columns, key=key, key_kind=key_kind,
        key_types=key_types, key_positions=positions, create_sql=create_sql,
        insert_sql=insert_sql, indexes=_index_plans(table, objects),
        rows_estimated=table.rows_estimated, size_bytes=table.size_bytes,
    )


def _column_plan(col: PgColumn) -> ColumnPlan:
    rule = rule_for(col)
    return ColumnPlan(
        name=col.name, source_type=col.type_sql, sqlite_type=rule.sqlite_type(col),
        select_sql=rule.select(quote(col.name), col), wire=rule.wire, converter=rule.converter,
        rule=rule.name, lossy=rule.lossy, note=rule.note, nullable=col.nullable,
    )


def _chunk_key(table: PgTable) -> tuple[list[str], str]:
    if table.primary_key:
        return list(table.primary_key), "primary_key"
    not_null = {c.name for c in table.columns if not c.nullable}
    candidates = [u["columns"] for u in table.unique]
    candidates += [ix["column_names"] for ix in table.indexes
                   if ix.get("unique") and None not in ix["column_names"]
                   and not ix.get("dialect_options", {}).get("postgresql_where")]
    for columns in sorted(candidates, key=len):
        if columns and all(c in not_null for c in columns):
            return list(columns), "unique"
    return [], "none"


def _create_table_sql(table: PgTable, columns: list[ColumnPlan], names: set[str],
                      objects: list[dict[str, Any]]) -> str:
    source_cols = {c.name: c for c in table.columns}
    rowid_key = (len(table.primary_key) == 1
                 and next(c for c in columns if c.name == table.primary_key[0]).rule == "integer")
    lines = []
    for col in columns:
        line = f"{quote(col.name)} {col.sqlite_type}"
        if rowid_key and col.name == table.primary_key[0]:
            line += " PRIMARY KEY"  # INTEGER PRIMARY KEY: the rowid, so new rows get new ids
        if not col.nullable:
            line += " NOT NULL"
        default = _default_sql(table.name, source_cols[col.name], objects)
        if default:
            line += f" DEFAULT {default}"
        lines.append(line)
    if table.primary_key and not rowid_key:
        lines.append(f"PRIMARY KEY ({', '.join(map(quote, table.primary_key))})")
    for fk in table.foreign_keys:
        fk_sql = _foreign_key_sql(table.name, fk, names, objects)
        if fk_sql:
            lines.append(fk_sql)
    body = ",\n  ".join(lines)
    return f"CREATE TABLE {quote(table.name)} (\n  {body}\n)"


_LITERAL = re.compile(r"^'((?:[^']|'')*)'(::[\w\s\".()\[\]]+)?$")
_NUMBER = re.compile(r"^\(?-?\d+(\.\d+)?\)?(::[\w\s\".()]+)?$")
_NOW = {"now()", "current_timestamp", "transaction_timestamp()", "localtimestamp"}


def _default_sql(table: str, col: PgColumn, objects: list[dict[str, Any]]) -> str | None:
    expr = (col.default or "").strip()
    if not expr:
        return None
    name = f"{table}.{col.name}"
    translated: str | None = None
    reason = "expression not translated by this version of liteshift"
    if expr.startswith("nextval("):
        reason = "sequence default: an INTEGER PRIMARY KEY gets new ids from SQLite's rowid"
    elif col.typname == "bool" and expr in ("true", "false"):
        translated = "1" if expr == "true" else "0"
    elif _NUMBER.match(expr):
        translated = expr.split("::")[0].strip("()")
    elif (literal := _LITERAL.match(expr)) and col.typname not in ("bool",):
        translated = f"'{literal.group(1)}'"
    elif expr.lower() in _NOW:
        translated = "CURRENT_TIMESTAMP"
    if translated is None:
        objects.append({"kind": "default", "name": name, "fate": "skipped", "sql": expr,
                        "reason": reason})
        return None
    objects.append({"kind": "default", "name": name, "fate": "translated", "source_sql": expr,
                    "sql": translated})
    return translated


def _foreign_key_sql(table: str, fk: dict[str, Any], names: set[str],
                     objects: list[dict[str, Any]]) -> str | None:
    name = fk.get("name") or f"{table}_fkey"
    if fk["referred_table"] not in names:
        objects.append({"kind": "foreign_key", "name": name, "table": table, "fate": "skipped",
                        "reason": f"references {fk['referred_table']!r}, which is not copied"})
        return None
    columns = ", ".join(map(quote, fk["constrained_columns"]))
    sql = (f"CONSTRAINT {quote(name)} FOREIGN KEY ({columns})"
           f" REFERENCES {quote(fk['referred_table'])} "
           f"({', '.join(map(quote, fk['referred_columns']))})")
    options = fk.get("options") or {}
    for clause in ("ondelete", "onupdate"):
        if options.get(clause):
            sql += f" ON {clause[2:].upper()} {options[clause].upper()}"
    if options.get("deferrable"):
        sql += " DEFERRABLE INITIALLY " + (options.get("initially") or "IMMEDIATE").upper()
    objects.append({"kind": "foreign_key", "name": name, "table": table, "fate": "translated",
                    "sql": sql})
    return sql


def _index_plans(table: PgTable, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    plans = []
    for unique in table.unique:
        sql = (f"CREATE UNIQUE INDEX {quote(unique['name'])} ON {quote(table.name)} "
               f"({', '.join(map(quote, unique['columns']))})")
        plans.append({"name": unique["name"], "sql": sql})
        objects.append({"kind": "unique_constraint", "name": unique["name"],
                        "table": table.name, "fate": "translated", "sql": sql})
    for ix in table.indexes:
        if ix.get("duplicates_constraint"):
            continue  # the index behind a unique constraint, already above
        reason = _index_unsupported(ix)
        if reason:
            objects.append({"kind": "index", "name": ix["name"], "table": table.name,
                            "fate": "skipped", "reason": reason})
            continue
        sorting = ix.get("column_sorting") or {}
        cols = [quote(c) + (" DESC" if "desc" in sorting.get(c, ()) else "")
                for c in ix["column_names"]]
        sql = (f"CREATE {'UNIQUE ' if ix.get('unique') else ''}INDEX {quote(ix['name'])} "
               f"ON {quote(table.name)} ({', '.join(cols)})")
        plans.append({"name": ix["name"], "sql": sql})
        objects.append({"kind": "index", "name": ix["name"], "table": table.name,
                        "fate": "translated", "sql": sql})
    return plans


def _index_unsupported(ix: dict[str, Any]) -> str | None:
    options = ix.get("dialect_options") or {}
    if None in ix["column_names"]:
        return "expression index: not translated by this version of liteshift"
    if options.get("postgresql_where") is not None:
        return "partial index: not translated by this version of liteshift"
    using = options.get("postgresql_using", "btree")
    if using not in ("btree", "hash"):
        return f"{using} index: SQLite has only b-tree indexes"
    return None
