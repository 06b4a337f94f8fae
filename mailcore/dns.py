"""THE resolver factory: every DNS lookup in mailcore (MX for delivery, TXT for SPF/DKIM/DMARC) starts here.

With MAIL_DNS_NAMESERVERS set (`host[:port]` entries), the system resolver is
never consulted (`Resolver(configure=False)`); tests point it at a DNS server on
loopback. Lookups return plain results or raise `TemporaryDNSError` (SERVFAIL,
timeout, no answer from any server: try again later) or `PermanentDNSError`
(NXDOMAIN: the name does not exist). "No records of that type" is an empty list.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.resolver

from mailcore.conf import conf

log = logging.getLogger(__name__)

# A whole lookup (all servers, retries included) may take this many per-server timeouts
# (MAIL_DNS_TIMEOUT seconds each).
LIFETIME_PER_TIMEOUT = 2.5
DEFAULT_DNS_PORT = 53
MAX_RESOLVERS_PER_THREAD = 4  # one plain and one caching per configuration, and a spare


class DNSError(Exception):
    """A DNS lookup failed; `temporary` says whether trying again later may succeed."""

    temporary = True

    def __init__(self, qname: str, rdtype: str, reason: str) -> None:
        super().__init__(f"{rdtype} lookup for {qname}: {reason}")
        self.qname = qname
        self.rdtype = rdtype
        self.reason = reason


class TemporaryDNSError(DNSError):
    """SERVFAIL, REFUSED, timeout, or no server answered: defer, do not bounce."""

    temporary = True


class PermanentDNSError(DNSError):
    """NXDOMAIN (or a name that cannot be a domain): the domain does not exist."""

    temporary = False


def parse_nameserver(entry: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address -> (address, port)."""
    entry = entry.strip()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest.lstrip(":") or DEFAULT_DNS_PORT)
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port)
    return entry, DEFAULT_DNS_PORT


def _configure(resolver: dns.resolver.BaseResolver) -> None:
    servers = conf.dns_nameservers
    if servers:
        parsed = [parse_nameserver(s) for s in servers if s.strip()]
        for host, _port in parsed:
            ipaddress.ip_address(host)  # a nameserver must be an address, never a name to look up
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in parsed]
    resolver.timeout = conf.dns_timeout
    resolver.lifetime = conf.dns_timeout * LIFETIME_PER_TIMEOUT
    resolver.cache = None  # each worker asks afresh; retries must see changed records


_per_thread = threading.local()  # .resolvers: {settings they were made from: Resolver}
_answer_caches: dict[tuple[tuple[str, ...], int], dns.resolver.LRUCache] = {}
_answer_caches_lock = threading.Lock()


def resolver() -> dns.resolver.Resolver:
    """A synchronous resolver configured from settings (the system's only when none are set).

    Each thread reuses one per configuration: making a Resolver costs a
    gethostname() call and more than the query it then makes. It keeps no
    answer cache (`_configure`), so reuse never serves an old record.
    """
    return _thread_resolver(cache=None)


def checks_resolver() -> dns.resolver.Resolver:
    """`resolver()` with the process's answer cache, for the MX's SPF, DKIM and DMARC lookups.

    The cache (MAIL_DNS_CACHE_SIZE entries, 0 turns it off) keeps an answer no
    longer than its TTL (RFC 1035 §3.2.1), like any caching resolver; failures
    (SERVFAIL, timeouts) are never kept, so a retry always asks again. Outbound
    delivery does not use it.
    """
    return _thread_resolver(cache=_answer_cache())


def _answer_cache() -> dns.resolver.LRUCache | None:
    size = conf.dns_cache_size
    if size <= 0:
        return None
    key = (tuple(conf.dns_nameservers), size)
    with _answer_caches_lock:
        if key not in _answer_caches:
            _answer_caches.clear()  # other servers (tests start their own): answers from before never apply
            _answer_caches[key] = dns.resolver.LRUCache(size)
        return _answer_caches[key]


def _thread_resolver(cache: dns.resolver.LRUCache | None) -> dns.resolver.Resolver:
    key = (tuple(conf.dns_nameservers), conf.dns_timeout, id(cache) if cache is not None else 0)
    made: dict[tuple[tuple[str, ...], float, int], dns.resolver.Resolver] | None = getattr(
        _per_thread, "resolvers", None
    )
    if made is None:
        made = _per_thread.resolvers = {}
    if key not in made:
        if len(made) >= MAX_RESOLVERS_PER_THREAD:
            made.clear()  # settings changed (tests do): the old resolvers are never used again
        result = dns.resolver.Resolver(configure=not conf.dns_nameservers)
        _configure(result)
        result.cache = cache
        made[key] = result
    return made[key]


def async_resolver() -> dns.asyncresolver.Resolver:
    """The asyncio twin of `resolver()`, for event-loop code (the SMTP server's SPF/DKIM/DMARC)."""
    result = dns.asyncresolver.Resolver(configure=not conf.dns_nameservers)
    _configure(result)
    return result


def _translate(qname: str, rdtype: str, err: Exception) -> DNSError:
    if isinstance(err, dns.resolver.NXDOMAIN):
        return PermanentDNSError(qname, rdtype, "NXDOMAIN")
    if isinstance(err, dns.resolver.LifetimeTimeout | dns.exception.Timeout):
        return TemporaryDNSError(qname, rdtype, "timeout")
    if isinstance(err, dns.resolver.NoNameservers):
        return TemporaryDNSError(qname, rdtype, "SERVFAIL or no server answered")
    if isinstance(err, dns.name.EmptyLabel | dns.name.LabelTooLong | dns.name.NameTooLong):
        return PermanentDNSError(qname, rdtype, f"invalid name ({err})")
    return TemporaryDNSError(qname, rdtype, f"{type(err).__name__}: {err}")


def query(qname: str, rdtype: str, res: dns.resolver.Resolver | None = None) -> list[dns.rdata.Rdata]:
    """All records of `rdtype` at `qname`; [] when the name exists without such records."""
    res = res or resolver()
    try:
        answer = res.resolve(qname, rdtype, search=False)
    except dns.resolver.NoAnswer:
        return []
    except (dns.exception.DNSException, ValueError) as err:
        raise _translate(qname, rdtype, err) from err
    return list(answer)


async def aquery(qname: str, rdtype: str, res: dns.asyncresolver.Resolver | None = None) -> list[dns.rdata.Rdata]:
    """The asyncio twin of `query()`."""
    res = res or async_resolver()
    try:
        answer = await res.resolve(qname, rdtype, search=False)
    except dns.resolver.NoAnswer:
        return []
    except (dns.exception.DNSException, ValueError) as err:
        raise _translate(qname, rdtype, err) from err
    return list(answer)


def _txt_strings(records: list[dns.rdata.Rdata]) -> list[str]:
    # RFC 7208 §3.3: a TXT record's character-strings are joined without spaces.
    return [b"".join(r.strings).decode("utf-8", "replace") for r in records]  # type: ignore[attr-defined]


def txt(qname: str, res: dns.resolver.Resolver | None = None) -> list[str]:
    """TXT records at `qname`, each as one string (its character-strings concatenated)."""
    return _txt_strings(query(qname, "TXT", res))


def tag_list(record: str) -> dict[str, str]:
    """A TXT record's `tag=value; ...` list (RFC 6376 §3.2: DKIM keys; RFC 7489 §6.4: DMARC), names lowercased."""
    tags = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags[name.strip().lower()] = value.strip()
    return tags


async def atxt(qname: str) -> list[str]:
    """The asyncio twin of `txt()`."""
    return _txt_strings(await aquery(qname, "TXT"))


def mx(qname: str) -> list[tuple[int, str]]:
    """MX records as (preference, exchange without the trailing dot); `(0, "")` is a null MX (RFC 7505)."""
    return [(r.preference, _host(r.exchange)) for r in query(qname, "MX")]  # type: ignore[attr-defined]


def _host(name: dns.name.Name) -> str:
    return "" if name == dns.name.root else name.to_text(omit_final_dot=True).lower()


def addresses(host: str, rdtypes: Sequence[str] = ("AAAA", "A")) -> list[str]:
    """The addresses of `host` of the types `rdtypes`, in that order (IPv6 then IPv4 by default); [] when it has
    none. A failed lookup of one type does not hide the other's records."""
    found: list[str] = []
    errors: list[DNSError] = []
    for rdtype in rdtypes:
        try:
            found.extend(r.to_text() for r in query(host, rdtype))
        except DNSError as err:
            errors.append(err)
    if not found and errors:
        raise errors[-1]
    return found
