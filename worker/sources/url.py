"""Parse and check a source URL without importing any database driver (the API uses this)."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from worker.core.errors import InputError, SourceRejected, SourceUnavailable
from worker.core.redact import redact

POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")
MYSQL_SCHEMES = ("mysql", "mariadb")  # one kind: the driver speaks to both servers
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}


@dataclass(frozen=True)
class SourceURL:
    kind: str  # "postgres" or "mysql" (worker/sources/__init__.py: the modules that read it)
    url: str  # as given, with the password: never log or store this
    host: str | None
    port: int
    database: str

    @property
    def redacted(self) -> str:
        return redact(self.url)

    def libpq_url(self) -> str:
        """The URL psycopg accepts (it does not know SQLAlchemy's +driver suffix)."""
        scheme, rest = self.url.split("://", 1)
        return "postgresql://" + rest


SOURCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def resolve_source(sources: dict[str, str], text: str) -> str:
    """A URL as given, or the URL of a named source (LITESHIFT_SOURCE_<NAME>)."""
    if not isinstance(text, str) or "://" in text:
        return text
    if not SOURCE_NAME.fullmatch(text):
        raise InputError("source must be a URL such as postgresql://user:password@host/dbname, "
                         "or the name of a source configured as LITESHIFT_SOURCE_<NAME>")
    url = sources.get(text.upper())
    if url is None:
        raise InputError(f"no source named {text!r}: set LITESHIFT_SOURCE_{text.upper()} to its "
                         "URL on the API and the workers")
    return url


def describe_source(text: str, url: str) -> str:
    """What people see: the name, if any, and the URL without its password."""
    return redact(url) if text == url else f"{text} ({redact(url)})"


def parse_source_url(url: str) -> SourceURL:
    if not isinstance(url, str) or "://" not in url:
        raise InputError("source must be a URL such as postgresql://user:password@host:5432/dbname")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"source URL {redact(url)!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme in POSTGRES_SCHEMES:
        kind = "postgres"
    elif scheme in MYSQL_SCHEMES:
        kind = "mysql"
    else:
        raise InputError(
            f"unsupported source URL scheme {scheme!r}: use postgresql://user:password@host/db "
            "or mysql://user:password@host/db (mariadb:// too)"
        )
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise InputError(
            f"source URL {redact(url)!r} names no database: add it as the path, "
            "e.g. postgresql://user@host:5432/mydb"
        )
    return SourceURL(kind=kind, url=url, host=parts.hostname, port=port or DEFAULT_PORTS[kind],
                     database=database)


def check_reachable(source: SourceURL, timeout_s: float = 5.0) -> None:
    """Resolve the host and open a TCP connection: catches typos before a job is queued.

    A URL with no host uses the local socket, which needs no check here.
    """
    if not source.host:
        return
    try:
        infos = socket.getaddrinfo(source.host, source.port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise SourceRejected(
            f"unknown host {source.host!r} in the source URL: check the host name"
        ) from None
    last_error: OSError | None = None
    for family, type_, proto, _, address in infos:
        try:
            with socket.socket(family, type_, proto) as sock:
                sock.settimeout(timeout_s)
                sock.connect(address)
                return
        except OSError as exc:
            last_error = exc
    raise SourceUnavailable(
        f"cannot connect to {source.host}:{source.port} ({last_error}): is the database "
        "running, and is the port right?"
    )
