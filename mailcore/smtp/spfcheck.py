"""SPF (RFC 7208) through pyspf, with its DNS routed through mailcore.dns (MAIL_DNS_NAMESERVERS).

pyspf looks names up with its module-level `DNSLookup(name, qtype, strict, timeout)`;
we point it at `_lookup`, so no SPF query ever reaches the system resolver.
"""
from __future__ import annotations

from typing import Any

import spf

from mailcore import dns

# RFC 7208 §4.6.4: at most 10 DNS-querying terms; pyspf enforces that. This bounds the wall time.
SPF_TIMEOUT_SECONDS = 20


def _lookup(name: str, qtype: str, strict: bool = True, timeout: float = SPF_TIMEOUT_SECONDS) -> list[Any]:
    """pyspf's DNS interface: [((name, type), value), ...]; NXDOMAIN is empty; failures are TempError."""
    try:
        records = dns.query(name, qtype, dns.checks_resolver())
    except dns.PermanentDNSError:
        return []
    except dns.DNSError as err:
        raise spf.TempError(f"DNS {err}") from err
    return [((name, qtype), _value(qtype, r)) for r in records]


def _value(qtype: str, record: Any) -> Any:
    if qtype in ("A", "AAAA"):
        return record.address
    if qtype == "MX":
        return (record.preference, record.exchange)
    if qtype == "PTR":
        return record.target.to_text(True)
    if qtype in ("TXT", "SPF"):
        return record.strings
    return record.to_text()


spf.DNSLookup = _lookup


def check_spf(ip: str, mail_from: str, helo: str) -> tuple[str, str]:
    """(result, checked identity): RFC 7208 §2.4 MAIL FROM, or postmaster@HELO for the null sender."""
    identity = mail_from or f"postmaster@{helo}"
    result, _explanation = spf.check2(i=ip, s=identity, h=helo or "unknown", timeout=SPF_TIMEOUT_SECONDS)
    return str(result), identity
