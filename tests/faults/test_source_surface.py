"""What a token holder can make the service connect to, against real servers and the real
source probe (`python -m worker.sources.probe`): only the TCP host, port and credentials in
the URL, never the service's own credentials, and errors that tell nothing about the
service's files or what some other port answered."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from api.source_check import run_probe
from faults.support import free_port
from worker.core.config import Settings
from worker.core.errors import SourceRejected, SourceUnavailable
from worker.sources import for_kind
from worker.sources.hosts import HostAllow
from worker.sources.url import parse_source_url

RIGHT = "Ambient-Pass-42"


@pytest.fixture
def passwordless_url(scram_postgres) -> Iterator[str]:
    """A URL naming a role that has a password, without the password."""
    scram_postgres.role("ls_ambient", RIGHT)
    db = scram_postgres.database(owner="ls_ambient")
    yield f"postgresql://ls_ambient@127.0.0.1:{scram_postgres.port}/{db}"
    scram_postgres.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def probe(url: str, **settings: str) -> list[str]:
    return asyncio.run(run_probe(Settings(probe_timeout_s=30, **settings), url, "public"))


@pytest.mark.parametrize("ambient", ["PGPASSWORD", "PGPASSFILE", "PGSERVICE"])
def test_the_services_own_postgres_credentials_are_never_sent(passwordless_url, ambient,
                                                             monkeypatch, tmp_path):
    # Given the service started with a password for the role in its environment, its
    # password file, or a service file
    with_password = passwordless_url.replace("ls_ambient@", f"ls_ambient:{RIGHT}@")
    assert probe(with_password) == []  # (the role can log in with its password)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:*:{RIGHT}\n")
    passfile.chmod(0o600)
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[ambient]\npassword={RIGHT}\n")
    monkeypatch.setenv(ambient, {"PGPASSWORD": RIGHT, "PGPASSFILE": str(passfile),
                                 "PGSERVICE": "ambient"}[ambient])
    monkeypatch.setenv("PGSERVICEFILE", str(services))

    # When a job's URL names the role without a password, Then the probe and a worker's
    # connection are refused the login: the service's credentials were not sent
    with pytest.raises(SourceRejected, match="the source refused the login"):
        probe(passwordless_url)
    with pytest.raises(SourceRejected, match="the source refused the login"):
        with for_kind("postgres").connect(parse_source_url(passwordless_url), timeout_s=5):
            pass


@contextmanager
def tcp_server(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that hands each connection to `answer`, then closes it;
    yields its port."""
    server = socket.create_server(("127.0.0.1", free_port()))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.fixture
def banner_port() -> Iterator[int]:
    """A TCP server that answers every connection with another service's banner."""
    def banner(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 BannerSecret\r\n" * 4)
        conn.recv(1024)

    with tcp_server(banner) as port:
        yield port


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_a_port_that_is_no_database_is_unreachable_without_its_bytes(banner_port, scheme):
    with pytest.raises(SourceUnavailable) as raised:
        probe(f"{scheme}://u:pw@127.0.0.1:{banner_port}/db")
    message = str(raised.value)
    assert message.endswith("could not be reached or did not answer as a "
                            f"{'PostgreSQL' if scheme == 'postgresql' else 'MySQL'} server "
                            "(details in the service's log); check the host and the port")
    for told in ("SSH", "Banner", "received", "SSL", "packet", "2013"):
        assert told not in message


def test_a_host_outside_the_allow_list_is_refused_by_the_probe_and_the_worker(pg_db):
    with pytest.raises(SourceRejected, match="not allowed here.*LITESHIFT_SOURCE_ALLOW"):
        probe(pg_db.url, source_allow="10.0.0.0/8,db.internal")
    source = parse_source_url(pg_db.url, allow=HostAllow.parse("10.0.0.0/8"))
    with pytest.raises(SourceRejected, match="LITESHIFT_SOURCE_ALLOW"):
        with for_kind("postgres").connect(source, timeout_s=5):
            pass
    # and allowed, it connects
    assert probe(pg_db.url, source_allow="127.0.0.0/8, ::1") == []


@pytest.fixture
def dialed() -> Iterator[tuple[int, list[str]]]:
    """A TCP port on 127.0.0.1 that closes every connection, and the addresses each was
    made to (the server's side of it: what the client dialed)."""
    seen: list[str] = []
    with tcp_server(lambda conn: seen.append(conn.getsockname()[0])) as port:
        yield port, seen


def test_the_apis_reachability_check_dials_what_the_driver_would_and_nothing_else(
        dialed, settings_env, monkeypatch):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from worker.sources.postgres.source import connect_params

    port, seen = dialed
    body = {"source": f"postgresql://u:pw@127.0.0.1:{port}/db", "target": "reach"}

    # Given sources allowed only in 10.0.0.0/8: the submit is refused, the port never dialed
    monkeypatch.setenv("LITESHIFT_SOURCE_ALLOW", "10.0.0.0/8")
    with TestClient(create_app(Settings(), probe=run_probe)) as api:
        answer = api.post("/jobs", json=body)
    assert answer.status_code == 422 and "LITESHIFT_SOURCE_ALLOW" in answer.json()["error"]
    assert seen == []

    # When loopback is allowed, Then the check (and the probe's driver after it) dial the
    # address the driver is given, and only it
    monkeypatch.setenv("LITESHIFT_SOURCE_ALLOW", "127.0.0.0/8")
    with TestClient(create_app(Settings(), probe=run_probe)) as api:
        answer = api.post("/jobs", json=body)
    assert answer.status_code == 422 and "could not be reached" in answer.json()["error"]
    source = parse_source_url(body["source"], allow=HostAllow.parse("127.0.0.0/8"))
    assert seen and set(seen) == set(connect_params(source, timeout_s=3)["hostaddr"].split(","))
