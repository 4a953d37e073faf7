"""MySQL/MariaDB catalog: the reflected objects, and the information_schema queries that fill
them where SQLAlchemy's inspector falls short (exact column types, unsigned, charset and
collation, generated columns, zero-width details, CHECKs, prefix and fulltext indexes,
auto_increment values, views, triggers, routines).

No driver import here: functions take a `query(sql, params) -> rows` callable, so typemap
and translation code can import the dataclasses without the driver. Queries are portable
between MariaDB 10.4+ and MySQL 8.0; where the two catalogs differ (CHECK constraints, column
defaults) the `flavor` says which one answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Query = Callable[[str, Sequence[Any]], list[tuple]]

INTEGER_TYPES = ("tinyint", "smallint", "mediumint", "int", "integer", "bigint")
TEXT_TYPES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext")
BINARY_TYPES = ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob")
GEOMETRY_TYPES = ("geometry", "point", "linestring", "polygon", "multipoint",
                  "multilinestring", "multipolygon", "geometrycollection", "geomcollection")


@dataclass
class MyColumn:
    name: str
    data_type: str  # information_schema DATA_TYPE: int, varchar, datetime, enum, ...
    type_sql: str  # COLUMN_TYPE: "bigint(20) unsigned", "enum('a','b')", "datetime(6)"
    nullable: bool
    default: str | None  # a MySQL expression (literals quoted); None: no default
    extra: str  # EXTRA, lowercased: auto_increment, on update current_timestamp(), ...
    charset: str | None = None
    collation: str | None = None
    precision: int | None = None  # numeric precision (decimal digits, bits for bit(n))
    scale: int | None = None
    fsp: int | None = None  # fractional seconds of time, datetime, timestamp
    length: int | None = None  # CHARACTER_MAXIMUM_LENGTH (characters; bytes for binary)
    generated: str = ""  # "" or "stored" / "virtual"
    expression: str | None = None  # a generated column's expression
    json: bool = False  # json, or MariaDB's alias: longtext with a json_valid() CHECK
    labels: list[str] = field(default_factory=list)  # enum / set labels, in order

    @property
    def type_name(self) -> str:
        """The name the type rules match (worker/core/rules.py)."""
        return self.data_type

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.type_sql.lower()

    @property
    def auto_increment(self) -> bool:
        return "auto_increment" in self.extra

    @property
    def nocase(self) -> bool:
        """A case-insensitive collation (utf8mb4_general_ci, utf8mb4_0900_ai_ci, ...)."""
        return bool(self.collation) and "_ci" in (self.collation or "").lower()


@dataclass
class MyTable:
    name: str
    columns: list[MyColumn]
    primary_key: list[str]
    indexes: list[dict[str, Any]]  # {"name", "unique", "type", "parts": [{"column", ...}]}
    foreign_keys: list[dict[str, Any]]  # SQLAlchemy's reflected FK dicts
    checks: list[dict[str, Any]] = field(default_factory=list)  # {"name", "expr"}
    rows_estimated: int = 0
    size_bytes: int = 0
    auto_increment: int | None = None  # the next value MySQL would hand out


@dataclass
class MySchema:
    schema: str  # the database
    tables: list[MyTable]
    flavor: str = "mariadb"  # or "mysql"
    views: list[dict[str, str]] = field(default_factory=list)  # {"name", "sql"}
    others: list[dict[str, str]] = field(default_factory=list)  # triggers, routines, events


COLUMNS_SQL = """
SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA,
       CHARACTER_SET_NAME, COLLATION_NAME, NUMERIC_PRECISION, NUMERIC_SCALE,
       DATETIME_PRECISION, CHARACTER_MAXIMUM_LENGTH, GENERATION_EXPRESSION
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s
ORDER BY TABLE_NAME, ORDINAL_POSITION
"""

TABLES_SQL = """
SELECT TABLE_NAME, COALESCE(TABLE_ROWS, 0), COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0),
       AUTO_INCREMENT
FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'
"""

STATISTICS_SQL = """
SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, INDEX_TYPE, COLLATION{expr}
FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s
ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX
"""

# MariaDB names a column-level CHECK after its column, so names repeat across tables: its
# CHECK_CONSTRAINTS has TABLE_NAME. MySQL 8's has not, and its names are unique per schema.
CHECKS_SQL = {
    "mariadb": "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE "
               "FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s "
               "ORDER BY TABLE_NAME, CONSTRAINT_NAME",
    "mysql": "SELECT tc.TABLE_NAME, tc.CONSTRAINT_NAME, cc.CHECK_CLAUSE "
             "FROM information_schema.TABLE_CONSTRAINTS tc "
             "JOIN information_schema.CHECK_CONSTRAINTS cc "
             "ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA "
             "AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME "
             "WHERE tc.TABLE_SCHEMA = %s AND tc.CONSTRAINT_TYPE = 'CHECK' "
             "ORDER BY tc.TABLE_NAME, tc.CONSTRAINT_NAME",
}

VIEWS_SQL = ("SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS "
             "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME")

OTHERS_SQL = (
    ("trigger", "SELECT CONCAT(TRIGGER_NAME, ' on ', EVENT_OBJECT_TABLE) "
                "FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"),
    ("routine", "SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_NAME) "
                "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"),
    ("event", "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s"),
)

OTHER_REASONS = {
    "trigger": "SQLite triggers cannot run MySQL's trigger language; recreate the behaviour "
               "in the app (or as an SQLite trigger by hand)",
    "routine": "SQLite has no stored procedures or functions",
    "event": "SQLite has no event scheduler",
}

_JSON_VALID = re.compile(r"^\(?\s*json_valid\(\s*`((?:[^`]|``)+)`\s*\)\s*\)?$", re.IGNORECASE)


def columns(query: Query, schema: str, flavor: str) -> dict[str, list[MyColumn]]:
    out: dict[str, list[MyColumn]] = {}
    for row in query(COLUMNS_SQL, (schema,)):
        (table, name, data_type, type_sql, nullable, default, extra, charset, collation,
         precision, scale, fsp, length, expression) = row
        extra = (extra or "").lower()
        generated = ("stored" if "stored generated" in extra or "persistent" in extra
                     else "virtual" if "virtual generated" in extra else "")
        column = MyColumn(
            name=name, data_type=data_type.lower(), type_sql=type_sql, nullable=nullable == "YES",
            default=None if generated else _default(default, extra, data_type.lower(), flavor),
            extra=extra, charset=charset, collation=collation, precision=_int(precision),
            scale=_int(scale), fsp=_int(fsp), length=_int(length), generated=generated,
            expression=expression or None, json=data_type.lower() == "json",
            labels=parse_labels(type_sql) if data_type.lower() in ("enum", "set") else [])
        out.setdefault(table, []).append(column)
    return out


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _default(value: str | None, extra: str, data_type: str, flavor: str) -> str | None:
    """COLUMN_DEFAULT as a MySQL expression. MariaDB (10.2.7+) gives an expression already,
    'NULL' for DEFAULT NULL; MySQL 8 gives a literal's bare value, and an expression only
    where EXTRA says DEFAULT_GENERATED."""
    if value is None:
        return None
    if flavor == "mariadb":
        return None if value == "NULL" else value
    if "default_generated" in extra or value.upper() == "CURRENT_TIMESTAMP":
        return value
    if data_type in INTEGER_TYPES + ("decimal", "float", "double", "year") or \
            value.startswith("b'"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def parse_labels(type_sql: str) -> list[str]:
    """enum('a','b''c','d\\\\e') → ['a', "b'c", 'd\\e']: quotes doubled, backslash escapes."""
    body = type_sql[type_sql.index("(") + 1: type_sql.rindex(")")]
    labels, current, i, inside = [], [], 0, False
    escapes = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "Z": "\x1a"}
    while i < len(body):
        ch = body[i]
        if not inside:
            inside = ch == "'"
        elif ch == "\\" and i + 1 < len(body):
            i += 1
            current.append(escapes.get(body[i], body[i]))
        elif ch == "'" and body[i + 1: i + 2] == "'":
            current.append("'")
            i += 1
        elif ch == "'":
            labels.append("".join(current))
            current, inside = [], False
        else:
            current.append(ch)
        i += 1
    return labels


def tables(query: Query, schema: str) -> dict[str, tuple[int, int, int | None]]:
    """name → (rows estimated, bytes, next auto_increment value or None)."""
    return {r[0]: (max(int(r[1]), 0), int(r[2]), _int(r[3]))
            for r in query(TABLES_SQL, (schema,))}


def indexes(query: Query, schema: str, flavor: str) -> dict[str, list[dict[str, Any]]]:
    """Every index but PRIMARY, with its parts: column (None for a MySQL 8 functional key
    part, with its expression), prefix length, and descending order (MySQL 8)."""
    expr = ", EXPRESSION" if flavor == "mysql" else ", NULL"
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for row in query(STATISTICS_SQL.replace("{expr}", expr), (schema,)):
        table, name, non_unique, column, sub_part, index_type, collation, expression = row
        if name == "PRIMARY":
            continue
        entry = grouped.setdefault((table, name), {
            "name": name, "unique": not int(non_unique), "type": (index_type or "").upper(),
            "parts": []})
        entry["parts"].append({"column": column, "prefix": _int(sub_part),
                               "desc": collation == "D", "expression": expression})
    out: dict[str, list[dict[str, Any]]] = {}
    for (table, _), entry in grouped.items():
        out.setdefault(table, []).append(entry)
    return out


def checks(query: Query, schema: str, flavor: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for table, name, clause in query(CHECKS_SQL[flavor], (schema,)):
        out.setdefault(table, []).append({"name": name, "expr": clause})
    return out


def mark_json_columns(columns: list[MyColumn], table_checks: list[dict[str, Any]]) -> list:
    """MariaDB's JSON is longtext with CHECK (json_valid(`col`)): flag the column as JSON and
    drop that CHECK, which the JSON rule stands for. Returns the remaining CHECKs."""
    by_name = {c.name: c for c in columns}
    remaining = []
    for check in table_checks:
        found = _JSON_VALID.match(check["expr"].strip())
        column = by_name.get(found.group(1).replace("``", "`")) if found else None
        if column is not None and column.data_type in TEXT_TYPES:
            column.json = True
        else:
            remaining.append(check)
    return remaining


def views(query: Query, schema: str) -> list[dict[str, str]]:
    return [{"name": n, "sql": s or ""} for n, s in query(VIEWS_SQL, (schema,))]


def others(query: Query, schema: str) -> list[dict[str, str]]:
    found = []
    for kind, sql in OTHERS_SQL:
        found += [{"kind": kind, "name": r[0], "reason": OTHER_REASONS[kind]}
                  for r in query(sql, (schema,))]
    return found
