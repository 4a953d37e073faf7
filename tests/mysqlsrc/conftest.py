"""Fixtures for MySQL/MariaDB sources: a fresh database per test on the local server.

The shared fixtures (Redis, settings, real Celery workers) come from tests/conftest.py. A
server that is down fails the test with the command to start it, never a skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import mysql.connector
import pytest
from mysql.connector import errors as my_errors

MY_HOST, MY_PORT, MY_USER = "127.0.0.1", 3306, "root"


def my_connect(database: str | None = None) -> Any:
    return mysql.connector.connect(host=MY_HOST, port=MY_PORT, user=MY_USER, database=database,
                                   autocommit=True, connection_timeout=5, use_pure=False,
                                   charset="utf8mb4", collation="utf8mb4_general_ci")


@dataclass
class MyDatabase:
    name: str

    @property
    def url(self) -> str:
        return f"mysql://{MY_USER}@{MY_HOST}:{MY_PORT}/{self.name}"

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement in a session with an empty sql_mode (so tests can store zero
        dates and out-of-range values, as old applications did); returns its rows."""
        conn = my_connect(self.name)
        try:
            cur = conn.cursor()
            cur.execute("SET SESSION sql_mode = '', time_zone = '+00:00'")
            cur.execute(statement, tuple(params)) if params else cur.execute(statement)
            return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def script(self, statements: str) -> None:
        for statement in filter(None, (s.strip() for s in statements.split(";\n"))):
            self.execute(statement)


@pytest.fixture(scope="session")
def mysql_up() -> None:
    try:
        my_connect().close()
    except my_errors.Error as exc:
        pytest.fail(f"MariaDB/MySQL is not reachable as {MY_USER}@{MY_HOST}:{MY_PORT} ({exc}): "
                    "start it with `start-stop-daemon --start --oknodo --background --exec "
                    "/usr/sbin/mariadbd` (root without a password on 127.0.0.1), or "
                    "`docker run -d -p 3306:3306 -e MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1 "
                    "mariadb:10.11`", pytrace=False)


@pytest.fixture
def my_db(mysql_up: None) -> Iterator[MyDatabase]:
    name = f"lstest_{uuid.uuid4().hex[:12]}"
    conn = my_connect()
    try:
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                              "COLLATE utf8mb4_general_ci")
    finally:
        conn.close()
    try:
        yield MyDatabase(name)
    finally:
        conn = my_connect()
        try:
            _end_sessions(conn, name)
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


def _end_sessions(conn: Any, name: str) -> None:
    """A job's snapshot holder (worker/sources/mysql/snapshot.py) that has not yet seen its
    test end keeps transactions whose metadata locks would make DROP DATABASE wait."""
    cur = conn.cursor()
    cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s "
                "AND ID <> CONNECTION_ID()", (name,))
    for (session,) in cur.fetchall():
        try:
            cur.execute(f"KILL {int(session)}")
        except my_errors.Error:
            pass  # it ended by itself meanwhile
