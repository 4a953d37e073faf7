"""CREATE TABLE and CREATE INDEX for one MySQL table, and the report lines for what they hold.

A single-column integer primary key becomes `INTEGER PRIMARY KEY` (SQLite's rowid), with
AUTOINCREMENT when MySQL fed it with auto_increment, as the frameworks' own SQLite
migrations declare such keys; the table's next AUTO_INCREMENT value minus one goes into
sqlite_sequence at finalize, so new rows get ids after every id MySQL handed out.

Index names are per table in MySQL and per database in SQLite: a name used by more than one
table (or equal to a table's) is prefixed with its table, and the report says so.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from worker.core import ddl as core_ddl
from worker.core.ddl import Objects, TableDDL, generated_clause
from worker.core.identifiers import quote
from worker.core.model import ColumnPlan
from worker.core.profiles import ColumnContext
from worker.core.rules import Rule
from worker.core.scratch import Scratch
from worker.core.transpile import ExpressionError
from worker.sources.mysql import defaults as mysql_defaults
from worker.sources.mysql import expr as mysql_expr
from worker.sources.mysql.catalog import MyColumn, MyTable

ROWID_RULES = ("integer", "unsigned")
_SAME_VALUE_RULES = {"integer", "unsigned", "text", "boolean", "float"}


def rowid_key(table: MyTable, rules: dict[str, str]) -> str | None:
    return core_ddl.rowid_key(table.primary_key, rules, ROWID_RULES)


def create_table(table: MyTable, plans: list[ColumnPlan], contexts: dict[str, ColumnContext],
                 rules: dict[str, Rule[MyColumn]], *, names: set[str], schema: str,
                 scratch: Scratch, objects: Objects) -> TableDDL:
    """`plans` are the table's ColumnPlans, in source order; `rules` their typemap rules."""
    source = {c.name: c for c in table.columns}
    rule_names = {p.name: p.rule for p in plans}
    rowid = rowid_key(table, rule_names)
    ddl = TableDDL(sql="")
    lines = [_column_sql(table, source[p.name], p, contexts[p.name], rules[p.name], rowid,
                         rule_names, scratch, ddl, objects)
             for p in plans]
    ddl.sql = core_ddl.create_table(table, lines, rowid=rowid, check_sql=mysql_expr.check_sql,
                                    names=names, schema=schema, scratch=scratch, ddl=ddl,
                                    objects=objects)
    _auto_increment(table, rowid, ddl, objects)
    return ddl


def _column_sql(table: MyTable, col: MyColumn, plan: ColumnPlan, ctx: ColumnContext,
                rule: Rule[MyColumn], rowid: str | None, rules: dict[str, str],
                scratch: Scratch, ddl: TableDDL, objects: Objects) -> str:
    name = f"{table.name}.{col.name}"
    line = f"{quote(col.name)} {plan.sqlite_type}".rstrip()
    if col.name == rowid:
        line += " PRIMARY KEY" + (" AUTOINCREMENT" if col.auto_increment else "")
    if not col.nullable and _zero_date_default(col):
        # pgloader's rule: zero dates become NULL, so a NOT NULL whose default is the zero
        # date cannot hold. Any other NOT NULL column holding a zero date fails its table.
        objects.append({"kind": "not_null", "name": name, "fate": "skipped",
                        "reason": f"its default {col.default} is a zero date, which becomes "
                                  "NULL: the column is nullable in SQLite"})
    elif not col.nullable:
        line += " NOT NULL"
    if col.generated:
        line += _generated(table.name, col, rules, scratch, ddl, objects)
    elif col.default is not None:
        line += _default(name, col, plan.rule, ctx, scratch, objects)
    if mysql_defaults.on_update(col):
        objects.append({"kind": "on_update", "name": name, "fate": "skipped",
                        "source_sql": f"ON UPDATE {mysql_defaults.on_update(col)}",
                        "reason": "SQLite has no ON UPDATE for columns: the app must set "
                                  "the value (Ecto, Rails and Django do for their timestamps)"})
    check = rule.check(quote(col.name), col, ctx) if rule.check else ""
    if check:
        line += f" CHECK ({check})"
        ddl.checks.append({"name": f"{name} ({rule.name})", "sql": check})
    return line


def _zero_date_default(col: MyColumn) -> bool:
    return col.data_type in ("date", "datetime", "timestamp") and \
        (col.default or "").strip("'").startswith("0000-00-00")


def _default(name: str, col: MyColumn, rule: str, ctx: ColumnContext, scratch: Scratch,
             objects: Objects) -> str:
    sql, reason = mysql_defaults.default_sql(col, rule, ctx, scratch)
    entry = {"kind": "default", "name": name, "source_sql": col.default}
    if sql is None:
        objects.append({**entry, "fate": "skipped", "reason": reason})
        return ""
    objects.append({**entry, "fate": "translated", "sql": sql})
    return f" DEFAULT {sql}"


def _generated(table: str, col: MyColumn, rules: dict[str, str], scratch: Scratch,
               ddl: TableDDL, objects: Objects) -> str:
    try:
        sql, reason = mysql_expr.same_value_sql(col.expression or "")
        used = mysql_expr.columns_used(col.expression or "")
    except ExpressionError as exc:
        sql, reason, used = None, str(exc), set()
    differ = sorted(c for c in used | {col.name} if rules.get(c) not in _SAME_VALUE_RULES)
    if sql is not None and differ:
        sql, reason = None, (f"over columns whose SQLite values differ in kind "
                             f"({', '.join(differ)}): values copied, a plain column in SQLite")
    problem = scratch.expression_error(table, sql) if sql else None
    if problem:
        sql, reason = None, problem
    return generated_clause(table, col.name, col.expression, sql, reason,
                            col.generated.upper(), ddl, objects)


def _auto_increment(table: MyTable, rowid: str | None, ddl: TableDDL,
                    objects: Objects) -> None:
    for col in table.columns:
        if not col.auto_increment:
            continue
        name = f"{table.name}.{col.name} auto_increment"
        if col.name != rowid:
            objects.append({"kind": "sequence", "name": name, "table": table.name,
                            "fate": "skipped", "value": table.auto_increment,
                            "reason": f"{col.name} is not the table's single integer primary "
                                      "key: SQLite has no sequences, the app must supply "
                                      "values"})
            continue
        if not table.auto_increment or table.auto_increment <= 1:
            objects.append({"kind": "sequence", "name": name, "table": table.name,
                            "fate": "translated", "sql": "AUTOINCREMENT",
                            "note": "never used: SQLite starts after the largest id copied"})
            continue
        value = table.auto_increment - 1  # sqlite_sequence holds the last id handed out
        ddl.sequence = {"name": name, "value": value}
        objects.append({"kind": "sequence", "name": name, "table": table.name,
                        "fate": "translated", "sql": f"sqlite_sequence[{table.name}] = {value}",
                        "value": value, "note": f"MySQL's next AUTO_INCREMENT is {value + 1}"})


def index_names(tables: list[MyTable]) -> dict[tuple[str, str], str]:
    """SQLite's name for every (table, MySQL index name): unique across the database."""
    counts = Counter(ix["name"] for t in tables for ix in t.indexes)
    taken = {t.name for t in tables}
    out: dict[tuple[str, str], str] = {}
    for table in tables:
        for ix in table.indexes:
            name = ix["name"]
            if counts[name] > 1 or name in taken:
                name = f"{table.name}_{name}"
            while name in taken:
                name += "_"
            taken.add(name)
            out[(table.name, ix["name"])] = name
    return out


def index_plans(table: MyTable, sqlite_names: dict[tuple[str, str], str], scratch: Scratch,
                objects: Objects) -> list[dict[str, Any]]:
    plans = []
    for ix in table.indexes:
        name = sqlite_names[(table.name, ix["name"])]
        entry: dict[str, Any] = {"kind": "unique_index" if ix["unique"] else "index",
                                 "name": ix["name"], "table": table.name,
                                 "source_sql": _index_source(ix)}
        if name != ix["name"]:
            entry["note"] = f"named {name!r} in SQLite, where index names are per database"
        sql, reason, notes = _index_sql(table.name, name, ix, scratch)
        if sql is None:
            objects.append({**entry, "fate": "skipped", "reason": reason})
            continue
        plans.append({"name": name, "sql": sql})
        if notes:
            entry["note"] = "; ".join(filter(None, [entry.get("note"), *notes]))
        objects.append({**entry, "fate": "translated", "sql": sql})
    return plans


def _index_sql(table: str, name: str, ix: dict[str, Any],
               scratch: Scratch) -> tuple[str | None, str, list[str]]:
    if ix["type"] == "FULLTEXT":
        return None, ("FULLTEXT index: SQLite's full-text search is an FTS5 virtual table; "
                      "create one in the app if it searches this text"), []
    if ix["type"] == "SPATIAL":
        return None, "SPATIAL index: SQLite has none (its R*Tree is a separate table)", []
    keys, notes = [], []
    for part in ix["parts"]:
        if part["column"] is None:
            try:
                key = f"({mysql_expr.to_sqlite(part['expression'] or '')})"
            except ExpressionError as exc:
                return None, f"functional key part {part['expression']}: {exc}", []
        else:
            key = quote(part["column"])
            if part["prefix"]:
                notes.append(f"prefix index {part['column']}({part['prefix']}) built on the "
                             "whole column")
        keys.append(key + (" DESC" if part["desc"] else ""))
    sql = (f"CREATE {'UNIQUE ' if ix['unique'] else ''}INDEX {quote(name)} ON {quote(table)} "
           f"({', '.join(keys)})")
    problem = scratch.error(sql)
    return (None, f"SQLite rejects {sql}: {problem}", []) if problem else (sql, "", notes)


def _index_source(ix: dict[str, Any]) -> str:
    parts = []
    for part in ix["parts"]:
        text = f"`{part['column']}`" if part["column"] else f"({part['expression']})"
        parts.append(text + (f"({part['prefix']})" if part["prefix"] else "")
                     + (" DESC" if part["desc"] else ""))
    kind = {"FULLTEXT": "FULLTEXT ", "SPATIAL": "SPATIAL "}.get(ix["type"], "")
    return f"{kind}{'UNIQUE ' if ix['unique'] else ''}INDEX ({', '.join(parts)})"
