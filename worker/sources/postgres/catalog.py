"""Catalog queries for what SQLAlchemy's inspector does not give exactly: column types with
their enum labels, domains and owning sequences; CHECKs; indexes with expressions, ordering
and predicates; views; and the objects SQLite has no place for.

Plain functions over an open psycopg connection; source.reflect calls them and translates
driver errors (this module never catches one).
"""

from __future__ import annotations

from typing import Any

import psycopg

COLUMNS_SQL = """
SELECT c.relname, a.attname,
       format_type(COALESCE(NULLIF(t.typbasetype, 0), a.atttypid),
                   CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END),
       bt.typname, bt.typtype, bt.typcategory, NOT a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity,
       COALESCE(et.typname, ''),
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = bt.oid
             ORDER BY e.enumsortorder),
       CASE WHEN t.typtype = 'd' THEN t.typname ELSE '' END,
       ARRAY(SELECT pg_get_expr(dc.conbin, 0) FROM pg_constraint dc
             WHERE dc.contypid = t.oid AND dc.contype = 'c' ORDER BY dc.conname),
       sq.seqname, sq.last_value
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = COALESCE(NULLIF(t.typbasetype, 0), a.atttypid)
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN LATERAL (
  SELECT s.relname::text AS seqname, ps.last_value
  FROM pg_depend dep
  JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
  LEFT JOIN pg_sequences ps ON ps.schemaname = sn.nspname AND ps.sequencename = s.relname
  -- refclassid too: pg_depend's index on the referenced object starts with it; without
  -- it each column scans the whole of pg_depend, quadratic in a schema's tables.
  WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
    AND dep.refobjid = c.oid AND dep.refobjsubid = a.attnum AND dep.deptype IN ('a', 'i')
  LIMIT 1) sq ON true
WHERE n.nspname = %s AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

CHECKS_SQL = """
SELECT c.relname, co.conname, pg_get_expr(co.conbin, co.conrelid, true), co.convalidated
FROM pg_constraint co
JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = ANY(%s) AND co.contype = 'c'
ORDER BY c.relname, co.conname
"""

# Key k of an index: its text (a quoted column or an expression), its column name when it
# is a plain column, and indoption's DESC (bit 1) and NULLS FIRST (bit 2) flags.
INDEXES_SQL = """
SELECT c.relname, i.relname, ix.indisunique, am.amname,
       ARRAY(SELECT pg_get_indexdef(ix.indexrelid, k, true)
             FROM generate_series(1, ix.indnkeyatts) k ORDER BY k),
       ARRAY(SELECT (SELECT a.attname::text FROM pg_attribute a
                     WHERE a.attrelid = ix.indrelid AND a.attnum = ix.indkey[k - 1])
             FROM generate_series(1, ix.indnkeyatts) k ORDER BY k),
       ARRAY(SELECT (ix.indoption[k - 1] & 1) = 1
             FROM generate_series(1, ix.indnkeyatts) k ORDER BY k),
       ARRAY(SELECT (ix.indoption[k - 1] & 2) = 2
             FROM generate_series(1, ix.indnkeyatts) k ORDER BY k),
       pg_get_expr(ix.indpred, ix.indrelid, true),
       COALESCE(con.contype::text, ''), ix.indnatts > ix.indnkeyatts
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class c ON c.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = i.relam
LEFT JOIN pg_constraint con ON con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid
     AND con.contype IN ('p', 'u', 'x')
WHERE n.nspname = %s AND c.relname = ANY(%s)
ORDER BY c.relname, i.relname
"""

VIEWS_SQL = """
SELECT c.relname, pg_get_viewdef(c.oid, true)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind = 'v'
ORDER BY c.oid
"""

# Objects with no place in SQLite: reported by name. Functions that belong to an extension
# are left out (the extension is reported once instead of its hundreds of functions).
OTHERS_SQL = """
SELECT 'trigger', t.tgname || ' on ' || c.relname FROM pg_trigger t
 JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(s)s AND NOT t.tgisinternal
UNION ALL
SELECT CASE p.prokind WHEN 'a' THEN 'aggregate' WHEN 'p' THEN 'procedure'
                      WHEN 'w' THEN 'window_function' ELSE 'function' END,
       p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = %(s)s AND NOT EXISTS (
   SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
     AND d.deptype = 'e')
UNION ALL
SELECT 'extension', x.extname || ' ' || x.extversion FROM pg_extension x
 WHERE x.extname <> 'plpgsql'
UNION ALL
SELECT 'sequence', s.relname FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
 WHERE n.nspname = %(s)s AND s.relkind = 'S' AND NOT EXISTS (
   SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid
     AND d.deptype IN ('a', 'i'))
UNION ALL
SELECT 'materialized_view', c.relname FROM pg_class c
 JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(s)s AND c.relkind = 'm' AND NOT c.relispopulated
UNION ALL
SELECT 'rule', r.rulename || ' on ' || c.relname FROM pg_rewrite r
 JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(s)s AND r.rulename <> '_RETURN'
UNION ALL
SELECT 'policy', p.polname || ' on ' || c.relname FROM pg_policy p
 JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(s)s
"""

OTHER_REASONS = {
    "trigger": "SQLite triggers cannot run PL/pgSQL; recreate the behaviour in the app",
    "function": "SQLite has no stored functions",
    "procedure": "SQLite has no stored procedures",
    "window_function": "SQLite has no user-defined window functions in SQL",
    "aggregate": "SQLite has no user-defined aggregates in SQL",
    "extension": "SQLite has no extensions of this kind; its types are mapped per column",
    "sequence": "not owned by a copied column: SQLite keeps sequences only as AUTOINCREMENT "
                "counters of a table",
    "materialized_view": "not populated (WITH NO DATA): nothing to copy",
    "rule": "SQLite has no rewrite rules",
    "policy": "SQLite has no row-level security",
}


def columns(conn: psycopg.Connection, schema: str, names: list[str]) -> list[tuple]:
    return conn.execute(COLUMNS_SQL, (schema, names)).fetchall()


def checks(conn: psycopg.Connection, schema: str, names: list[str]) -> dict[str, list]:
    out: dict[str, list[dict[str, Any]]] = {}
    for table, name, expr, valid in conn.execute(CHECKS_SQL, (schema, names)):
        out.setdefault(table, []).append({"name": name, "expr": expr, "validated": valid})
    return out


def indexes(conn: psycopg.Connection, schema: str, names: list[str]) -> dict[str, list]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(INDEXES_SQL, (schema, names)):
        table, name, unique, method, keys, cols, desc, nulls_first, where, con, incl = row
        out.setdefault(table, []).append({
            "name": name, "unique": unique, "method": method, "keys": keys,
            "column_names": cols, "desc": desc, "nulls_first": nulls_first,
            "where": where, "constraint": con, "include": incl,
        })
    return out


def views(conn: psycopg.Connection, schema: str) -> list[dict[str, str]]:
    return [{"name": n, "sql": s} for n, s in conn.execute(VIEWS_SQL, (schema,))]


def others(conn: psycopg.Connection, schema: str) -> list[dict[str, str]]:
    return [{"kind": k, "name": n, "reason": OTHER_REASONS[k]}
            for k, n in conn.execute(OTHERS_SQL, {"s": schema})]
