"""Parse and check a source URL without importing any database driver (the API uses this).

A URL is taken apart once, here, into an allow-listed set of parts: scheme, user, password,
host, port, database and the TLS options an operator may rely on. The drivers are given
those parts (worker/sources/*/source.py), never the text, so nothing else in it (libpq's
`?port=`, `?hostaddr=`, `?passfile=`, `?sslkeylogfile=`, `?service=`, host lists, unix
socket paths) can steer them. What people see is rebuilt from the parts without the
password (`SourceURL.redacted`), never cut out of the text, so no spelling of the password
can get past it. Error messages here never quote the URL's text.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from worker.core.errors import InputError, SourceUnavailable
from worker.core.redact import remember
from worker.sources.hosts import ANY_HOST, HostAllow, is_host_name, resolve

POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")
MYSQL_SCHEMES = ("mysql", "mariadb")  # one kind: the driver speaks to both servers
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}

# The query parameters a source URL may carry, per kind, with the values each may take.
# sslrootcert takes only `system` (the system's CA store): a file path would let a submitter
# make the service read, and tell about, files of its choosing. Without it, verify-ca and
# verify-full use the service user's ~/.postgresql/root.crt, which only the operator places.
# MySQL's ssl-mode takes the mysql client's own values, in any case; VERIFY_CA and
# VERIFY_IDENTITY check against the system's store or the operator's LITESHIFT_MYSQL_SSL_CA
# (worker/sources/mysql/tls.py), never a file the URL names.
PARAMETERS: dict[str, dict[str, tuple[str, ...]]] = {
    "postgres": {
        "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
        "sslrootcert": ("system",),
    },
    "mysql": {
        "ssl-mode": ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"),
    },
}
ANY_CASE = {"ssl-mode"}  # parameters whose values are matched, and kept, in upper case
_MAX_PARAMETER_SHOWN = 40  # characters of a refused parameter's name quoted back
_ENCODE_HINT = ("percent-encode special characters in the user name and password "
                "(@ as %40, / as %2F, ? as %3F, # as %23, % as %25, a space as %20)")


@dataclass(frozen=True)
class SourceURL:
    """A source URL's parts. `password` is never shown: `redacted` is what people see."""

    kind: str  # "postgres" or "mysql" (worker/sources/__init__.py maps it to its reader)
    scheme: str  # as given, lowercased: postgresql, mariadb, ...
    host: str
    port: int
    database: str
    user: str
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, str], ...] = ()  # (name, value) from PARAMETERS, in URL order
    allow: HostAllow = field(default=ANY_HOST, repr=False)

    @property
    def redacted(self) -> str:
        """The URL rebuilt from its parts, with *** for the password."""
        return self._build("***" if self.password is not None else None)

    @property
    def url(self) -> str:
        """The URL rebuilt from its parts, password included: never log or store this."""
        return self._build(self.password)

    def param(self, name: str) -> str | None:
        return dict(self.params).get(name)

    def addresses(self) -> list[str]:
        """The host's addresses, checked against the operator's allow-list: the driver dials
        these and no other."""
        return resolve(self.host, self.port, self.allow)

    def _build(self, password: str | None) -> str:
        auth = quote(self.user, safe="")
        if password is not None:
            auth += ":" + (password if password == "***" else quote(password, safe=""))
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(f"{name}={quote(value, safe='')}" for name, value in self.params)
        port = f":{self.port}" if self.port != DEFAULT_PORTS.get(self.kind) else ""
        return (f"{self.scheme}://{auth}@{host}{port}/{quote(self.database, safe='')}"
                + (f"?{query}" if query else ""))


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
    """What people see: the name, if any, and the URL rebuilt without its password."""
    try:
        shown = parse_source_url(url).redacted
    except InputError:
        shown = "(a source URL that does not parse)"
    return shown if text == url else f"{text} ({shown})"


def parse_source_url(url: str, *, allow: HostAllow = ANY_HOST) -> SourceURL:
    """Take a URL apart, or raise InputError saying what to change (never quoting it)."""
    if not isinstance(url, str) or "://" not in url:
        raise InputError("source must be a URL such as postgresql://user:password@host:5432/dbname")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InputError(f"the source URL holds a space or a control character: {_ENCODE_HINT}")
    kind, scheme = _kind(url.split("://", 1)[0].lower())
    if "#" in url:
        raise InputError(f"the source URL holds a '#': {_ENCODE_HINT}")
    try:
        parts = urlsplit(url)
    except ValueError:  # its message quotes the URL
        raise InputError(f"the source URL is malformed: {_ENCODE_HINT}") from None
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    host, port = _host_port(hostport, kind)
    user = unquote(user) if at else ""
    if not user:
        raise InputError("the source URL names no user: write it as "
                         f"{scheme}://user:password@host/dbname (liteshift never falls back "
                         "to the service's own user name)")
    database = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not database or "/" in database:
        raise InputError(
            "the source URL names no database: add it as the path, "
            f"e.g. {scheme}://user@host:{DEFAULT_PORTS[kind]}/mydb")
    return SourceURL(kind=kind, scheme=scheme, host=host, port=port, database=database,
                     user=user, password=unquote(password) if colon else None,
                     params=_params(parts.query, kind), allow=allow)


def _kind(scheme: str) -> tuple[str, str]:
    if scheme in POSTGRES_SCHEMES:
        return "postgres", "postgresql"
    if scheme in MYSQL_SCHEMES:
        return "mysql", scheme
    shown = scheme if re.fullmatch(r"[a-z][a-z0-9+.-]{0,30}", scheme) else "?"
    raise InputError(f"unsupported source URL scheme {shown!r}: use "
                     "postgresql://user:password@host/db or mysql://user:password@host/db "
                     "(mariadb:// too)")


def _host_port(hostport: str, kind: str) -> tuple[str, int]:
    """One TCP host: a unix socket (empty host, a path), a host list or an escape is refused."""
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise InputError(f"the source URL's host is malformed: {_ENCODE_HINT}")
        port_text = rest[1:] if rest else ""
        if ":" not in host:
            raise InputError("the source URL's host is malformed: brackets are for IPv6")
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise InputError("the source URL names no host: liteshift reads sources over TCP "
                         "only (no unix sockets); write the host, e.g. @127.0.0.1:5432")
    if not is_host_name(host):
        raise InputError("the source URL's host must be one host name or IP address (no "
                         "lists, no socket paths, no %-escapes); if the password holds "
                         f"special characters, {_ENCODE_HINT}")
    if not port_text:
        return host, DEFAULT_PORTS[kind]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputError(f"the source URL's port must be a number from 1 to 65535; {_ENCODE_HINT}")
    return host, int(port_text)


def _params(query: str, kind: str) -> tuple[tuple[str, str], ...]:
    allowed = PARAMETERS[kind]
    found: dict[str, str] = {}
    for item in query.split("&") if query else ():
        if not item:
            continue
        raw_name, equals, raw_value = item.partition("=")
        name = unquote(raw_name).strip()
        if name.lower() not in allowed:
            raise InputError(_refused(name, kind))
        name = name.lower()
        value = unquote(raw_value)
        if name in ANY_CASE:
            value = value.upper()
        if not equals or value not in allowed[name]:
            raise InputError(f"source URL parameter {name} must be one of "
                             f"{', '.join(allowed[name])}"
                             + (" (in any case)" if name in ANY_CASE else ""))
        if name in found:
            raise InputError(f"source URL parameter {name} is given twice")
        found[name] = value
    if found.get("sslrootcert") and found.get("sslmode", "verify-full") != "verify-full":
        raise InputError("source URL parameter sslrootcert=system checks the server's "
                         "certificate and name: use it with sslmode=verify-full (or leave "
                         "sslmode out)")
    return tuple(found.items())


def _refused(name: str, kind: str) -> str:
    shown = repr(name[:_MAX_PARAMETER_SHOWN] + ("…" if len(name) > _MAX_PARAMETER_SHOWN else ""))
    where = {"password": "put the password before the @: user:password@host",
             "user": "put the user before the @: user:password@host",
             "host": "put the host after the @", "port": "put the port after the host: "
             "host:port", "dbname": "put the database in the path: host/dbname"}
    hint = where.get(name.lower()) or (
        f"a {kind} source URL takes " + (", ".join(PARAMETERS[kind]) or "no parameters")
        + "; everything else (files, services, other hosts) is the operator's to set")
    return f"source URL parameter {shown} is not allowed: {hint}"


def check_reachable(source: SourceURL, timeout_s: float = 5.0) -> None:
    """Open a TCP connection to the addresses the driver will dial (SourceURL.addresses):
    catches typos and closed ports before a job is queued."""
    for address in source.addresses():
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                sock.connect((address, source.port))
                return
        except OSError:
            continue
    raise SourceUnavailable(
        f"cannot connect to {source.host}:{source.port}: is the database running, is the port "
        "right, and may this service reach it?")


def remember_url_password(url: str) -> None:
    """Have this process scrub the URL's password wherever it appears: as parsed, and as
    spelled in the URL (percent-encoded or not)."""
    for secret in url_passwords(url):
        remember(secret)


def url_passwords(url: str) -> set[str]:
    """The URL's password as parsed and as written, when it has one."""
    try:
        password = parse_source_url(url).password
    except InputError:  # refused: it reaches no driver; redact() covers its text
        return set()
    if not password:
        return set()
    userinfo = url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[0]
    return {password, quote(password, safe=""), userinfo.partition(":")[2]} - {""}
