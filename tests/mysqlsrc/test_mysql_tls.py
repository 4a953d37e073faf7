"""A MySQL source's ssl-mode (worker/sources/mysql/tls.py) against real servers: the local
MariaDB, which offers no TLS, and a private MariaDB with TLS on (a certificate for
`localhost` from a CA made here), started for this module.

Every mode that wants TLS is refused by a server without it, at submit time (the API's
probe) and in the worker, saying so; against the TLS server REQUIRED and VERIFY_CA (with the
operator's CA bundle) copy, and VERIFY_IDENTITY refuses a name the certificate lacks. The
binlog reader's PyMySQL gets the same options from the same place.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mysql.connector
import pytest

from api.source_check import run_probe
from worker.core.config import get_settings
from worker.core.errors import SourceRejected
from worker.jobs import control

NO_TLS = "the source does not offer TLS"
ENCRYPTED = ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")


@pytest.mark.parametrize("mode", ["DISABLED", "preferred", *ENCRYPTED])
def test_the_probe_refuses_modes_wanting_tls_from_a_server_without_it(mysql_up, my_db,
                                                                      settings_env, mode):
    # Given a table in the local MariaDB, which offers no TLS
    my_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    url = f"{my_db.url}?ssl-mode={mode}"

    # When a submission's probe checks the source
    if mode.upper() in ENCRYPTED:
        # Then a mode that wants TLS is refused, saying why and what to do
        with pytest.raises(SourceRejected) as refused:
            asyncio.run(run_probe(settings_env, url, "public"))
        assert NO_TLS in str(refused.value) and "ssl-mode=PREFERRED" in str(refused.value)
        assert f"?ssl-mode={mode}" in str(refused.value)  # the URL as shown, mode included
    else:
        assert asyncio.run(run_probe(settings_env, url, "public")) == ["t"]


@pytest.mark.parametrize("mode", ["required", "VERIFY_CA", "Verify_Identity"])
def test_a_worker_refuses_modes_wanting_tls_from_a_server_without_it(
        my_db, settings_env, store, send, worker_proc, wait_for, mode):
    # Given a job queued without the API's probe
    my_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send, source=f"{my_db.url}?ssl-mode={mode}",
                                target="notls")

    # When the worker plans it, then it fails saying the source offers no TLS
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])
    assert view["state"] == "failed" and NO_TLS in view["error"], view
    assert not (settings_env.data_dir / "notls.db").exists()


# -- a private MariaDB with TLS --------------------------------------------------------------

@dataclass
class TlsServer:
    port: int
    ca: Path  # the CA that signed its certificate, for LITESHIFT_MYSQL_SSL_CA

    def url(self, database: str, mode: str, host: str = "localhost") -> str:
        return f"mysql://root@{host}:{self.port}/{database}?ssl-mode={mode}"

    def execute(self, statement: str) -> None:
        """Run one statement in clear (the server does not require TLS)."""
        conn = mysql.connector.connect(host="127.0.0.1", port=self.port, user="root",
                                       autocommit=True, ssl_disabled=True)
        try:
            conn.cursor().execute(statement)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """mariadbd on a free port with a certificate for `localhost` only (not 127.0.0.1), the
    binary log on, and root without a password."""
    missing = [c for c in ("mariadbd", "mariadb-install-db", "openssl") if not shutil.which(c)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: install mariadb-server and openssl",
                    pytrace=False)
    base = tmp_path_factory.mktemp("tls-mariadb")
    _certificates(base)
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={base}/data",
                    "--skip-test-db", "--auth-root-authentication-method=normal"],
                   check=True, capture_output=True)
    port = _free_port()
    server = subprocess.Popen(
        ["mariadbd", "--no-defaults", "--user=root", f"--datadir={base}/data", f"--port={port}",
         "--bind-address=127.0.0.1", f"--socket={base}/sock", "--log-bin=binlog",
         "--binlog-format=ROW", "--server-id=1",
         f"--ssl-ca={base}/ca.pem", f"--ssl-cert={base}/server.pem",
         f"--ssl-key={base}/server.key", "--innodb-buffer-pool-size=16M",
         f"--log-error={base}/error.log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, server, base / "error.log")
        yield TlsServer(port, base / "ca.pem")
    finally:
        server.terminate()
        server.wait(30)


def _certificates(base: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=base, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=liteshift test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=localhost")
    (base / "san.cnf").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.cnf")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mariadbd ended: {log.read_text()[-2000:]}", pytrace=False)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("mariadbd did not listen within 30 s", pytrace=False)


@pytest.fixture
def tls_db(tls_server: TlsServer) -> Iterator[str]:
    name = f"lstls_{uuid.uuid4().hex[:12]}"
    tls_server.execute(f"CREATE DATABASE `{name}`")
    tls_server.execute(f"CREATE TABLE `{name}`.t (id int PRIMARY KEY, v varchar(10))")
    tls_server.execute(f"INSERT INTO `{name}`.t VALUES (1, 'one'), (2, 'two')")
    try:
        yield name
    finally:
        tls_server.execute(f"DROP DATABASE `{name}`")


@pytest.fixture
def operator_ca(tls_server: TlsServer, settings_env, monkeypatch) -> Iterator[None]:
    """The operator's CA bundle setting, for this test and the workers it starts."""
    monkeypatch.setenv("LITESHIFT_MYSQL_SSL_CA", str(tls_server.ca))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("mode", ["REQUIRED", "VERIFY_CA"])
def test_a_tls_source_is_copied_with_tls_required_or_its_ca_verified(
        tls_server, tls_db, operator_ca, settings_env, store, send, worker_proc, wait_for, mode):
    # Given a worker, with the operator's CA bundle set
    worker = worker_proc()

    # When a table is copied from the TLS server with the mode
    job_id = control.submit_job(settings_env, store, send, source=tls_server.url(tls_db, mode),
                                target="tls")
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])

    # Then it is copied
    assert view["state"] == "done", view
    db = sqlite3.connect(settings_env.data_dir / "tls.db")
    try:
        assert db.execute("SELECT id, v FROM t ORDER BY id").fetchall() == [(1, "one"),
                                                                             (2, "two")]
    finally:
        db.close()


@pytest.mark.parametrize(("host", "ca", "words"), [
    ("127.0.0.1", True, "or it does not name 127.0.0.1"),  # the certificate names localhost
    ("localhost", False, "not signed by a CA in the system's CA store"),
])
def test_verify_identity_refuses_a_certificate_not_for_the_name_or_not_trusted(
        tls_server, tls_db, settings_env, monkeypatch, host, ca, words):
    if ca:
        monkeypatch.setenv("LITESHIFT_MYSQL_SSL_CA", str(tls_server.ca))
    url = tls_server.url(tls_db, "VERIFY_IDENTITY", host=host)
    with pytest.raises(SourceRejected, match=words):
        asyncio.run(run_probe(settings_env, url, "public"))


def test_verify_identity_accepts_the_name_its_certificate_carries(tls_server, tls_db,
                                                                  settings_env, operator_ca):
    url = tls_server.url(tls_db, "verify_identity")
    assert asyncio.run(run_probe(settings_env, url, "public")) == ["t"]


@pytest.mark.parametrize(("mode", "host", "encrypted"), [
    ("DISABLED", "localhost", False), ("REQUIRED", "127.0.0.1", True),
    ("VERIFY_CA", "127.0.0.1", True), ("VERIFY_IDENTITY", "localhost", True),
])
def test_the_binlog_readers_connection_gets_the_same_tls(tls_server, tls_db, operator_ca,
                                                         mode, host, encrypted):
    from worker.sources.mysql.binlog_connection import ReaderConnection
    from worker.sources.mysql.changes import _settings
    from worker.sources.url import parse_source_url

    conn = ReaderConnection(**_settings(parse_source_url(tls_server.url(tls_db, mode, host))))
    try:
        cursor = conn.cursor()
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert bool(cursor.fetchone()[1]) is encrypted
    finally:
        conn.close()


def test_a_follow_reads_the_binlog_with_verify_identity(tls_server, tls_db, operator_ca,
                                                       settings_env, store, send, worker_proc,
                                                       wait_for, wait_until):
    from follow_support import wait_applied

    # Given a follow job on the TLS server, its name verified, copied and following
    worker = worker_proc()
    job_id = control.submit_job(settings_env, store, send,
                                source=tls_server.url(tls_db, "VERIFY_IDENTITY"), target="tlsf",
                                options={"follow": True})
    view = wait_for(store, job_id, ["following", "failed"], timeout=60, workers=[worker])
    assert view["state"] == "following", view

    # When rows change on the source, and the job cuts over
    tls_server.execute(f"INSERT INTO `{tls_db}`.t VALUES (3, 'three')")
    tls_server.execute(f"UPDATE `{tls_db}`.t SET v = 'uno' WHERE id = 1")
    wait_applied(store, job_id, 2, wait_until, [worker])
    control.request_cutover(store, send, job_id, timeout_s=60)
    view = wait_for(store, job_id, ["done", "failed"], timeout=60, workers=[worker])

    # Then the binlog's changes, read over the same TLS, are in the published file
    assert view["state"] == "done", view
    db = sqlite3.connect(settings_env.data_dir / "tlsf.db")
    try:
        assert db.execute("SELECT id, v FROM t ORDER BY id").fetchall() == [
            (1, "uno"), (2, "two"), (3, "three")]
    finally:
        db.close()


def test_a_connection_that_came_up_in_clear_is_refused_when_tls_is_wanted(tls_server, tls_db):
    # mysql-connector carries on in clear when TLS is not negotiated (an attacker on the path
    # can strip it after the greeting was read): the connection's own cipher is checked too
    from worker.sources.mysql.source import _check_encrypted
    from worker.sources.url import parse_source_url

    raw = mysql.connector.connect(host="127.0.0.1", port=tls_server.port, user="root",
                                  database=tls_db, ssl_disabled=True)
    with pytest.raises(SourceRejected, match=NO_TLS):
        _check_encrypted(raw, parse_source_url(tls_server.url(tls_db, "VERIFY_CA")))
    assert not raw.is_connected()
