"""TLS to a MySQL source: the URL's `ssl-mode` as options for both drivers, and its checks.

Every connection a job makes to a MySQL source (probe, planner, copy readers, snapshot
holder, verify, binlog reader) takes its TLS options from `driver_tls`, the one place that
turns the mode into mysql-connector's keywords and PyMySQL's:

    DISABLED         no TLS
    PREFERRED        TLS if the server offers it, its certificate unchecked (the default)
    REQUIRED         TLS or no connection, the certificate unchecked
    VERIFY_CA        REQUIRED, and the certificate signed by a trusted CA
    VERIFY_IDENTITY  VERIFY_CA, and the certificate naming the URL's host

Trusted CAs are the system's store, or the operator's LITESHIFT_MYSQL_SSL_CA: never a file
a URL names, which would let a submitter make the service read files of its choosing.

mysql-connector's C extension enforces TLS itself only for VERIFY_IDENTITY: given a CA and
ssl_verify_cert, it verifies the certificate when the server offers TLS but carries on in
clear when it does not. So for REQUIRED and VERIFY_CA, `check_offers_tls` reads the
server's greeting first, on a connection of its own (the server counts it in
Aborted_connects), and refuses a server that does not offer TLS before the driver sends a
login, and `check_encrypted` refuses a connection that came up in clear anyway (an
attacker on the path can answer the first connection and strip TLS from the next; the
driver then logs in in clear, and liteshift refuses to use the connection: choose
VERIFY_IDENTITY where the path is not trusted). PyMySQL enforces every mode itself.

VERIFY_IDENTITY checks the host's name, so the drivers dial the name, not the address the
operator's allow-list checked (mysql-connector has no way to dial one and verify the other):
with LITESHIFT_SOURCE_ALLOW set, the name itself must be listed, so that whatever it
resolves to when the driver dials is the operator's to trust.
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from worker.core.errors import SourceRejected
from worker.sources.hosts import normal_name
from worker.sources.url import SourceURL

DEFAULT_MODE = "PREFERRED"
ENCRYPTED = ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
CLIENT_SSL = 0x0800  # the capability flag a server's greeting sets when it offers TLS


@dataclass(frozen=True)
class DriverTLS:
    """What the drivers are given for one source."""

    mode: str
    hosts: tuple[str, ...]  # what the driver dials, in order: checked addresses, or the name
    connector: dict[str, Any]  # mysql-connector keywords
    pymysql: dict[str, Any]  # PyMySQL keywords

    @property
    def required(self) -> bool:
        return self.mode in ENCRYPTED

    @property
    def unenforced(self) -> bool:
        """mysql-connector would carry on in clear: checked around it (module docstring)."""
        return self.mode in ("REQUIRED", "VERIFY_CA")


def mode(source: SourceURL) -> str:
    return source.param("ssl-mode") or DEFAULT_MODE


def driver_tls(source: SourceURL) -> DriverTLS:
    """The TLS options for `source`'s ssl-mode, for mysql-connector and for PyMySQL."""
    wanted = mode(source)
    if wanted == "DISABLED":
        return DriverTLS(wanted, tuple(source.addresses()), {"ssl_disabled": True},
                         {"ssl_disabled": True})
    if wanted == "PREFERRED":  # the drivers' default
        return DriverTLS(wanted, tuple(source.addresses()), {}, {})
    if wanted == "REQUIRED":
        return DriverTLS(wanted, tuple(source.addresses()), {"ssl_verify_cert": False},
                         {"ssl": _context(None, verify=False, name=False)})
    ca = ca_file()
    if wanted == "VERIFY_CA":
        return DriverTLS(wanted, tuple(source.addresses()),
                         {"ssl_ca": ca, "ssl_verify_cert": True},
                         {"ssl": _context(ca, verify=True, name=False)})
    return DriverTLS(wanted, _by_name(source),
                     {"ssl_ca": ca, "ssl_verify_cert": True, "ssl_verify_identity": True},
                     {"ssl": _context(ca, verify=True, name=True)})


def ca_file() -> str:
    """The operator's CA bundle (LITESHIFT_MYSQL_SSL_CA), or the system's store."""
    from worker.core.config import get_settings

    operator = get_settings().mysql_ssl_ca
    if operator is not None:
        return str(operator)
    paths = ssl.get_default_verify_paths()
    system = paths.cafile or paths.openssl_cafile
    if not system:
        raise SourceRejected("ssl-mode=VERIFY_CA/VERIFY_IDENTITY: this system has no CA store "
                             "file; the operator sets LITESHIFT_MYSQL_SSL_CA to a CA bundle")
    return system


def _by_name(source: SourceURL) -> tuple[str, ...]:
    addresses = source.addresses()  # the allow-list's check, and a resolvable host
    if addresses == [source.host]:
        return (source.host,)  # an IP address: the certificate must name it
    allow = source.allow
    if allow.text and normal_name(source.host) not in allow.names:
        raise SourceRejected(
            f"ssl-mode=VERIFY_IDENTITY dials {source.host} by name (its certificate must "
            "carry that name), and LITESHIFT_SOURCE_ALLOW does not list the name itself: "
            "the operator adds it there, or use ssl-mode=VERIFY_CA")
    return (source.host,)


@lru_cache(maxsize=8)
def _context(ca: str | None, *, verify: bool, name: bool) -> ssl.SSLContext:
    """One context per process and mode: it holds no per-connection state, and loading a
    CA store for every binlog read would cost more than the read."""
    context = ssl.create_default_context(cafile=ca)
    # Managed services' certificates are not always RFC 5280 strict (PyMySQL clears it too)
    context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    context.check_hostname = name
    context.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    return context


def check_offers_tls(source: SourceURL, host: str, *, timeout_s: float) -> None:
    """Refuse, before any login is sent, a server whose greeting does not offer TLS. A
    greeting that is not one (an error packet: too many connections, a blocked host), or
    a host that does not answer, is left to the driver, which reports it."""
    try:
        with socket.create_connection((host, source.port), timeout=timeout_s) as sock:
            head = _read(sock, 4)
            body = _read(sock, int.from_bytes(head[:3], "little")) if len(head) == 4 else b""
    except OSError:
        return
    if not body or body[0] != 10:  # protocol 10: the only one
        return
    version_end = body.find(b"\0", 1)
    flags_at = version_end + 1 + 4 + 8 + 1  # thread id, scramble's first part, filler
    if version_end < 0 or len(body) < flags_at + 2:
        return
    (flags,) = struct.unpack_from("<H", body, flags_at)
    if not flags & CLIENT_SSL:
        raise no_tls(source)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        part = sock.recv(size - len(data))
        if not part:
            break
        data += part
    return data


def check_encrypted(source: SourceURL, cipher: str | None) -> None:
    """Refuse a connection that came up in clear when the mode wants TLS."""
    if mode(source) in ENCRYPTED and not cipher:
        raise no_tls(source)


def no_tls(source: SourceURL) -> SourceRejected:
    return SourceRejected(
        f"connecting to {source.redacted}: the source does not offer TLS; ssl-mode="
        f"{mode(source)} needs it: enable TLS on the server (ssl_cert/ssl_key), or accept "
        "an unencrypted connection with ssl-mode=PREFERRED or DISABLED")


def failure(source: SourceURL, text: str) -> SourceRejected | None:
    """What a driver's TLS error means for the person who chose the mode, or None for an
    error that is not about TLS. The driver's words go to the log, not to them."""
    lowered = text.lower()
    if "ssl is required but the server doesn't support it" in lowered:
        return no_tls(source)
    if "certificate verify failed" in lowered or "x509 certificate matching" in lowered \
            or "hostname mismatch" in lowered or "doesn't match" in lowered:
        against = ("LITESHIFT_MYSQL_SSL_CA" if ca_file_is_operators() else
                   "the system's CA store (the operator may set LITESHIFT_MYSQL_SSL_CA)")
        named = (f", or it does not name {source.host}" if mode(source) == "VERIFY_IDENTITY"
                 else "")
        return SourceRejected(
            f"connecting to {source.redacted}: the source's TLS certificate was refused "
            f"(ssl-mode={mode(source)}): it is not signed by a CA in {against}{named}")
    if "ssl connection error" in lowered or ("ssl" in lowered and "handshake" in lowered):
        return SourceRejected(f"connecting to {source.redacted}: the TLS handshake with the "
                              f"source failed (ssl-mode={mode(source)}); details in the "
                              "service's log")
    return None


def ca_file_is_operators() -> bool:
    from worker.core.config import get_settings

    return get_settings().mysql_ssl_ca is not None
