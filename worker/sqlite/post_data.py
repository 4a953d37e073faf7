"""What finalize does after the data and indexes: sequences, CHECK audit, views.

Each step records its outcome on the report's object list (the manifest's `objects`, which
the report carries), so a view SQLite refuses is reported with the SQL that failed and the
job still succeeds.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from worker.core.identifiers import quote
from worker.core.model import TablePlan
from worker.core.steps import step

Objects = list[dict[str, Any]]


def apply(db: sqlite3.Connection, plans: list[TablePlan], objects: Objects) -> None:
    for done, plan in enumerate(plans):
        step("objects", done, len(plans), plan.name)  # sequences and CHECK audits
        if plan.sequence:
            set_sequence(db, plan.name, int(plan.sequence["value"]))
        audit_checks(db, plan, objects)
    create_views(db, objects)
    step("objects", len(plans), len(plans))


def set_sequence(db: sqlite3.Connection, table: str, value: int) -> None:
    """sqlite_sequence holds the largest id handed out; keep PostgreSQL's if it is larger
    than the largest id copied (rows inserted and deleted, or ids burnt by rollbacks)."""
    updated = db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?",
                         (value, table)).rowcount
    if not updated:
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, value))


def audit_checks(db: sqlite3.Connection, plan: TablePlan, objects: Objects) -> None:
    """Rows are copied with CHECKs off (worker/sqlite/workfile.py): count, per CHECK, the rows
    SQLite's translation would reject although the source accepted them, and report them."""
    by_name = {(o.get("table"), o["name"]): o for o in objects
               if o.get("kind") == "check_constraint"}
    for check in plan.checks:
        try:
            row = db.execute(f"SELECT count(*) FROM {quote(plan.name)} "
                             f"WHERE NOT ({check['sql']})").fetchone()
            failing, problem = row[0], None
        except sqlite3.Error as exc:
            failing, problem = None, str(exc)
        if not failing and not problem:
            continue
        entry = by_name.get((plan.name, check["name"]))
        if entry is None:
            entry = {"kind": "column_check", "name": check["name"], "table": plan.name,
                     "fate": "translated", "sql": check["sql"]}
            objects.append(entry)
        entry["warning"] = (f"SQLite evaluates it differently: {failing} copied row(s) fail "
                            "it; updates to them will fail until fixed"
                            if failing else f"SQLite cannot evaluate it: {problem}")


def create_views(db: sqlite3.Connection, objects: Objects) -> None:
    for view in [o for o in objects if o.get("kind") == "view" and o["fate"] == "translated"]:
        try:
            # Made again by a finalize that starts again after its views were committed.
            db.execute(f"DROP VIEW IF EXISTS {quote(view['name'])}")
            db.execute(view["sql"])
            db.execute(f"SELECT * FROM {quote(view['name'])} LIMIT 0").fetchall()
        except sqlite3.Error as exc:
            db.execute(f"DROP VIEW IF EXISTS {quote(view['name'])}")
            view["fate"] = "skipped"
            view["reason"] = f"SQLite rejects the transpiled view: {exc}"
