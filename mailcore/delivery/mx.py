"""Finding the receiver: MX records in preference order, implicit MX, null MX, address checks.

RFC 5321 §5.1 (locating the target host), RFC 7505 (null MX).
"""
from __future__ import annotations

import ipaddress
import logging
import random
from dataclasses import dataclass

from mailcore import dns as maildns
from mailcore.conf import conf
from mailcore.delivery.outcome import permanent, temporary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MXHost:
    """One host to try, with its addresses (IPv6 first, then IPv4, unless MAIL_OUTBOUND_IP_VERSIONS says otherwise)."""

    name: str
    addresses: list[str]


def order_mx(records: list[tuple[int, str]], rng: random.Random | None = None) -> list[str]:
    """Hosts by ascending preference, shuffled among equal preference.

    RFC 5321 §5.1: "the MX records MUST be sorted by preference ... If there are
    multiple destinations with the same preference ... the SMTP client SHOULD
    randomize them to spread the load".
    """
    rng = rng or random.Random()
    shuffled = list(records)
    rng.shuffle(shuffled)
    return [host for _, host in sorted(shuffled, key=lambda r: r[0])]


# RFC 5321 §5.1 allows a limit on the alternate addresses tried (and asks that at least two be tried).
# Without one, a domain publishing many MX hosts, or hosts with many addresses, that never answer held
# a delivery thread for the connect timeout of each (50 hosts of 20: 16 hours).
MAX_MX_ADDRESSES = 5  # addresses tried per delivery attempt, as Postfix's smtp_mx_address_limit
MAX_MX_LOOKUPS = 10  # MX hosts whose addresses are looked up for one attempt


def mx_names(domain: str) -> list[str]:
    """The mail exchangers of `domain`, best first. Raises DeliveryError (temporary or permanent)."""
    try:
        records = maildns.mx(domain)
    except maildns.DNSError as err:
        raise _dns_failure(domain, err) from err
    if any(host == "" for _, host in records):
        # RFC 7505 §3: a null MX means the domain accepts no mail; §4.1: 550 5.1.10.
        raise permanent("5.1.10", f"{domain} accepts no mail (null MX, RFC 7505)", code=556)
    if not records:
        # RFC 5321 §5.1: no MX, so the domain itself is the implicit MX (with preference 0).
        records = [(0, domain)]
    return order_mx(records)


def usable_hosts(names: list[str], domain: str) -> list[MXHost]:
    """`names` (best first) with their usable addresses: at most MAX_MX_ADDRESSES in all, from at most
    MAX_MX_LOOKUPS hosts looked up. A temporary DeliveryError when none has one."""
    hosts: list[MXHost] = []
    room = MAX_MX_ADDRESSES
    for name in names[:MAX_MX_LOOKUPS]:
        addresses = _usable_addresses(name)[:room]
        if addresses:
            hosts.append(MXHost(name, addresses))
            room -= len(addresses)
        if not room:
            break
    if not hosts:
        raise temporary("4.4.4", f"no usable address for any mail exchanger of {domain}")
    return hosts


def _usable_addresses(host: str) -> list[str]:
    try:
        found = maildns.addresses(host, conf.outbound_address_types)
    except maildns.DNSError as err:
        log.info("no addresses for MX host %s: %s", host, err)
        return []
    allowed = [a for a in found if conf.allow_private_mx or not is_forbidden_address(a)]
    if len(allowed) < len(found):
        log.warning("MX host %s: refused private/loopback addresses %s", host, sorted(set(found) - set(allowed)))
    return allowed


def is_forbidden_address(address: str) -> bool:
    """Loopback, private, link-local, unspecified, multicast or reserved: never a destination found in DNS."""
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


def _dns_failure(domain: str, err: maildns.DNSError) -> Exception:
    if err.temporary:
        # RFC 5321 §5.1: a temporary resolution failure means try again later.
        return temporary("4.4.3", f"DNS lookup for {domain} failed: {err.reason}")
    # RFC 3463 §3.2 X.1.2: bad destination system address (the domain does not exist).
    return permanent("5.1.2", f"domain {domain} does not exist ({err.reason})", code=550)
