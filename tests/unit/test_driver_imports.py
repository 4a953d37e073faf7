"""Which database drivers each entry point loads, each in a fresh interpreter.

The API checks URLs and queues jobs: no driver. Planning and copying from MySQL never load
psycopg, nor PostgreSQL's mysql-connector: a kind's driver is imported only where
worker.sources.for_kind hands out that kind. A reader process kept ready imports both
drivers ahead of its request, but nothing only planning needs (SQLAlchemy, sqlglot), nor,
once its request comes, what sealing source URLs needs (cryptography).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# What a loaded module's top-level package says was imported.
LIBRARIES = {"psycopg": "psycopg", "psycopg_c": "psycopg", "psycopg_binary": "psycopg",
             "mysql": "mysql.connector", "_mysql_connector": "mysql.connector",
             "sqlalchemy": "sqlalchemy", "sqlglot": "sqlglot", "cryptography": "cryptography"}

REPORT = ("import sys; print(' '.join(sorted({LIBRARIES[m.split('.')[0]] for m in sys.modules "
          "if m.split('.')[0] in LIBRARIES})))")

MYSQL_PLAN_AND_COPY = """
from worker import sources
from worker.jobs import copying, plan, verify
from worker.sources.mysql.catalog import MyColumn, MySchema, MyTable
from worker.sources.mysql.keys import select_sql

columns = [MyColumn("id", "int", "int(11)", False, None, "auto_increment"),
           MyColumn("at", "datetime", "datetime(6)", True, None, "", fsp=6)]
table = MyTable("t", columns, ["id"], [], [], checks=[{"name": "c", "expr": "`id` > 0"}])
schema = MySchema("db", [table], views=[{"name": "v", "sql": "select `id` from `db`.`t`"}])
planned = sources.for_kind("mysql").translate(schema, {}).tables[0]
select_sql(planned, [5])
"""

POSTGRES_PLAN_AND_COPY = """
from worker import sources
from worker.jobs import copying, plan, verify
from worker.sources.postgres.keys import after_clause, select_list
from worker.sources.postgres.source import PgColumn, PgSchema, PgTable

columns = [PgColumn("id", "integer", "int4", "b", "N", False, None, "", ""),
           PgColumn("at", "timestamp without time zone", "timestamp", "b", "D", True, None,
                    "", "")]
table = PgTable("t", columns, ["id"], [], [], [], 0, 0,
                checks=[{"name": "c", "expr": "id > 0"}])
schema = PgSchema("public", [table], views=[{"name": "v", "sql": "SELECT id FROM t"}])
planned = sources.for_kind("postgres").translate(schema, {}).tables[0]
select_list(planned), after_clause(planned.key, planned.key_types, [5])
"""

READER_PROCESS = """
from worker.sources import reader_process

reader_process.main()  # a reader kept ready, whose worker stopped without using it
"""

# What a reader imports for a request (reader_process._serve) before it reads a row:
# cryptography (6 MB) is only for sealing URLs, which a reader never does.
READER_REQUEST = """
import inspect
from worker.sources import import_readers, reader_process

import_readers()
exec("\\n".join(line.strip() for line in inspect.getsource(reader_process._serve).splitlines()
                if line.strip().startswith("from ")))
"""


def loaded(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", f"LIBRARIES = {LIBRARIES!r}\n{code}\n{REPORT}"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


@pytest.mark.parametrize(("entry", "code", "expected"), [
    ("api", "import api.app, api.cli", "cryptography"),
    ("mysql", MYSQL_PLAN_AND_COPY, "cryptography mysql.connector sqlglot"),
    ("postgres", POSTGRES_PLAN_AND_COPY, "cryptography psycopg sqlglot"),
    ("reader", READER_PROCESS, "mysql.connector psycopg"),
    ("reader request", READER_REQUEST, "mysql.connector psycopg"),
])
def test_each_entry_point_loads_only_its_drivers(entry: str, code: str, expected: str):
    assert loaded(code) == expected, entry
