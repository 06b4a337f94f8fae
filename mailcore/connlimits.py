"""Limits on a listener's open connections, in all and from one client (like Postfix's anvil).

A flood of idle connections from one address cannot take every slot of a listener, and
many addresses together cannot take every file descriptor of the process. IPv6 clients are
counted by their /64 prefix: one host commonly holds a whole /64 and could otherwise open
connections from as many addresses as it likes. The counts are per process (each SMTP worker
process keeps its own) and live on the event loop's thread only, so they need no lock.
"""
from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

IPV6_CLIENT_PREFIX = 64
TOO_MANY_IN_ALL = "too many connections"
TOO_MANY_FROM_CLIENT = "too many connections from your address"


def client_key(address: str) -> str:
    """What one client's connections are counted under: its IPv4 address, or its IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # an IPv4 client on a dual-stack socket
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(ip)


@dataclass
class ConnectionLimits:
    """The open connections of one listener (or group of listeners), by client."""

    by_client: Counter[str] = field(default_factory=Counter)
    total: int = 0

    def admit(self, address: str, most: int, most_per_client: int) -> str | None:
        """Count a new connection from `address`; or, when it is one too many, why not (nothing is counted)."""
        key = client_key(address)
        if self.total >= most:
            return TOO_MANY_IN_ALL
        if self.by_client[key] >= most_per_client:
            return TOO_MANY_FROM_CLIENT
        self.by_client[key] += 1
        self.total += 1
        return None

    def release(self, address: str) -> None:
        """An admitted connection from `address` has closed."""
        key = client_key(address)
        self.by_client[key] -= 1
        if self.by_client[key] <= 0:
            del self.by_client[key]
        self.total -= 1
