"""Which TCP hosts a source may name, and the addresses a driver is then told to use.

The operator's LITESHIFT_SOURCE_ALLOW lists CIDRs and host names (unset: any TCP host). A
host name on the list is trusted with whatever it resolves to; any other host is resolved
here and every one of its addresses must fall in a listed network. The addresses checked are
the ones handed to the driver (libpq's hostaddr, mysql-connector's host), so a name that
resolves differently a moment later cannot slip past: what was checked is what is dialled.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from worker.core.errors import SourceRejected, SourceUnavailable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

HOST_NAME_LENGTH = 253  # DNS's limit on a whole name


@dataclass(frozen=True)
class HostAllow:
    """LITESHIFT_SOURCE_ALLOW, parsed: empty `text` allows any TCP host."""

    text: str = ""
    networks: tuple[Network, ...] = field(default=(), compare=False)
    names: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def parse(cls, text: str | None) -> HostAllow:
        """Raise ValueError naming an entry that is neither a CIDR, an address nor a name."""
        networks: list[Network] = []
        names: set[str] = set()
        for entry in (part.strip() for part in (text or "").split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if not is_host_name(entry):
                raise ValueError(f"{entry!r} is neither a CIDR (10.0.0.0/8), an address nor "
                                 "a host name")
            names.add(normal_name(entry))
        return cls(",".join(sorted(names | {str(n) for n in networks})), tuple(networks),
                   frozenset(names))

    def permits(self, host: str, addresses: list[str]) -> bool:
        if not self.text or normal_name(host) in self.names:
            return True
        return bool(addresses) and all(
            any(_plain(address) in network for network in self.networks)
            for address in addresses)


ANY_HOST = HostAllow()


def is_host_name(text: str) -> bool:
    """A DNS name or an IP address: letters, digits, '-', '.' and '_' (IPv6 in brackets
    is unwrapped by the URL parser). Excludes what libpq or a C client would read as
    something else: a path (unix socket), a list (','), a zone or an escape ('%')."""
    if not text or len(text) > HOST_NAME_LENGTH or text.startswith(("-", ".")):
        return False
    try:
        ipaddress.ip_address(text)
        return "%" not in text
    except ValueError:
        return all(c.isascii() and (c.isalnum() or c in "-._") for c in text)


def normal_name(host: str) -> str:
    return host.lower().rstrip(".")


def resolve(host: str, port: int, allow: HostAllow) -> list[str]:
    """The addresses of `host` the driver may dial, in resolver order; SourceRejected for an
    unknown host or one outside the operator's allow-list."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:  # the resolver did not answer: try again later
            raise SourceUnavailable(f"cannot resolve host {host!r} now: the name server did "
                                    "not answer") from None
        raise SourceRejected(
            f"unknown host {host!r} in the source URL: check the host name") from None
    except UnicodeError:
        raise SourceRejected(
            f"unknown host {host!r} in the source URL: check the host name") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow.permits(host, addresses):
        raise SourceRejected(
            f"source host {host!r} is not allowed here: the operator's LITESHIFT_SOURCE_ALLOW "
            "lists the networks and host names sources may be read from")
    return addresses


def _plain(address: str) -> Address:
    """An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is its IPv4 address."""
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed
