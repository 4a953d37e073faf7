"""DuckDB as a peer of the benchmark: copy one table into a fresh SQLite file with DuckDB's
postgres / mysql scanner and its sqlite extension. Runs with the peers' venv's Python
(ops/bench/.peers-venv), never liteshift's.

    python peer_duckdb.py install EXT_DIR
    python peer_duckdb.py copy EXT_DIR {pg|mysql} LIBPQ_OR_MYSQL_DSN TABLE[,TABLE...] OUT.db
        [INDEX_SQL]

The extensions come from PyPI's `duckdb-extension-<name>` wheels (same version as `duckdb`):
each wheel holds `extensions/v<version>/<name>.duckdb_extension`, which `install` copies
into EXT_DIR with `INSTALL '<file>'` (what `duckdb_extensions.import_extension` does), and
`copy` only LOADs from there, with autoinstall/autoload off: nothing is fetched from the
network.

`copy` runs one `CREATE TABLE … AS SELECT` per table, in turn; with INDEX_SQL (statements
separated by ";\n"), Python's sqlite3 then runs it on the file, with SQLite's defaults.
"""

from __future__ import annotations

import sys

EXTENSIONS = ("postgres_scanner", "mysql_scanner", "sqlite_scanner")


def connect(ext_dir: str):  # type: ignore[no-untyped-def]
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET extension_directory = '{ext_dir}'")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    return con


def install(ext_dir: str) -> None:
    from duckdb_extensions import import_extension

    con = connect(ext_dir)
    for name in EXTENSIONS:
        import_extension(name, force_install=True, con=con)
        con.execute(f"LOAD {name}")
    print(con.execute("SELECT version()").fetchone()[0], "extensions:",
          ", ".join(EXTENSIONS))


def copy(ext_dir: str, kind: str, dsn: str, tables: str, out: str, index_sql: str = "") -> None:
    con = connect(ext_dir)
    scanner = {"pg": "postgres_scanner", "mysql": "mysql_scanner"}[kind]
    con.execute(f"LOAD {scanner}")
    con.execute("LOAD sqlite_scanner")
    source_type = {"pg": "postgres", "mysql": "mysql"}[kind]
    con.execute(f"ATTACH '{dsn}' AS src (TYPE {source_type}, READ_ONLY)")
    con.execute(f"ATTACH '{out}' AS dst (TYPE sqlite)")
    for table in tables.split(","):
        qualified = f"src.public.{table}" if kind == "pg" else f"src.{table}"
        con.execute(f"CREATE TABLE dst.{table} AS SELECT * FROM {qualified}")
    con.execute("DETACH dst")
    con.close()
    if index_sql:
        import sqlite3

        db = sqlite3.connect(out, isolation_level=None)
        for statement in index_sql.split(";\n"):
            db.execute(statement)
        db.close()


def main(argv: list[str]) -> int:
    if argv[:1] == ["install"] and len(argv) == 2:
        install(argv[1])
    elif argv[:1] == ["copy"] and len(argv) in (6, 7):
        copy(*argv[1:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
