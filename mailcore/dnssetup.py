"""The DNS records a hosted domain should publish, and a live check of what it does publish.

`expected_records(domain)` lists them (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT,
RFC 6186 SRV records, the autoconfig/autodiscover/mta-sts host names);
`check_records(domain)` resolves each through mailcore.dns (so it honours
MAIL_DNS_NAMESERVERS) and says pass, missing, wrong (with the difference) or
error (the lookup itself failed). The admin's DNS page shows both.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from mailcore import dns as maildns
from mailcore.clientconfig import SERVICE_TABLE
from mailcore.conf import conf
from mailcore.models import DkimKey

MX_PREFERENCE = 10
MTA_STS_POLICY_HOST = "mta-sts"
# RFC 6186 §3.1, RFC 8314 §5.1: the SRV service label of each listener; implicit TLS gets priority 0.
SRV_LABELS = {
    "IMAPS": "_imaps._tcp", "IMAP": "_imap._tcp",
    "POP3S": "_pop3s._tcp", "POP3": "_pop3._tcp",
    "SUBMISSIONS": "_submissions._tcp", "SUBMISSION": "_submission._tcp",
}
CLIENT_HOST_LABELS = ("autoconfig", "autodiscover", MTA_STS_POLICY_HOST)
PASS, MISSING, WRONG, ERROR = "pass", "missing", "wrong", "error"
MTA_STS_ID_LENGTH = 20  # RFC 8461 §3.1: id is 1-32 letters and digits


@dataclass(frozen=True)
class Record:
    """One record to publish: owner name (absolute, no final dot), type, value in zone-file text."""

    name: str
    rtype: str
    value: str
    purpose: str

    def zone_line(self) -> str:
        value = f'"{self.value}"' if self.rtype == "TXT" else self.value
        return f"{self.name}. 3600 IN {self.rtype} {value}"


@dataclass
class CheckResult:
    record: Record
    status: str
    found: list[str] = field(default_factory=list)
    difference: str = ""


# --- what to publish ---


def mta_sts_policy(domain: str) -> str:
    """The policy file served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 §3.2)."""
    lines = ["version: STSv1", f"mode: {conf.mta_sts_mode}", f"mx: {conf.hostname}",
             f"max_age: {conf.mta_sts_max_age}"]
    return "\r\n".join(lines) + "\r\n"  # RFC 8461 §3.2: lines end in CRLF (LF is tolerated)


def mta_sts_id(domain: str) -> str:
    """Changes whenever the policy text does, so senders fetch it again (RFC 8461 §3.1)."""
    return hashlib.sha256(mta_sts_policy(domain).encode()).hexdigest()[:MTA_STS_ID_LENGTH]


def _dkim_record(domain: str) -> Record | None:
    from mailcore.delivery.dkim import newest_key, public_key_b64

    key: DkimKey | None = newest_key(domain)
    if key is None:
        return None
    # RFC 6376 §3.6.1: the key record at SELECTOR._domainkey.DOMAIN.
    return Record(f"{key.selector}._domainkey.{domain}", "TXT", f"v=DKIM1; k=rsa; p={public_key_b64(key)}",
                  "DKIM public key (newest active key, which signs once this record is found; make one with "
                  "createdkimkey)")


def _srv_records(domain: str) -> list[Record]:
    records = []
    for kind, port_name, socket_type in SERVICE_TABLE:
        port = conf.port(port_name)
        priority = 0 if socket_type == "SSL" else 10
        # RFC 6186 §3.4: a target of "." says the service is not offered at all.
        value = f"{priority} 1 {port} {conf.hostname}." if port else "0 0 0 ."
        records.append(Record(f"{SRV_LABELS[port_name]}.{domain}", "SRV", value,
                              f"{kind.upper()} {socket_type} for mail clients (RFC 6186)"))
    return records


def expected_records(domain: str) -> list[Record]:
    """Every record DOMAIN (an A-label) should publish for this server, in the order to show them."""
    host = conf.hostname
    records = [
        Record(domain, "MX", f"{MX_PREFERENCE} {host}.", "mail for the domain comes to this server"),
        Record(domain, "TXT", "v=spf1 mx -all", "SPF: only the MX hosts send for the domain (RFC 7208)"),
    ]
    own_name = host.lower().rstrip(".")
    if own_name == domain or own_name.endswith(f".{domain}"):  # the server's own name is in this domain's zone
        records.append(Record(own_name, "TXT", "v=spf1 a -all",
                              "SPF for the server's own name: its bounces (the null sender) are checked against the "
                              "HELO name, which DMARC then aligns with (RFC 7208 §2.3, RFC 7489 §4.1)"))
    dkim = _dkim_record(domain)
    if dkim is not None:
        records.append(dkim)
    records += [
        Record(f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}",
               "DMARC policy and aggregate reports (RFC 7489)"),
        Record(f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={mta_sts_id(domain)}",
               "MTA-STS: a policy is published; the id changes with it (RFC 8461)"),
        Record(f"_smtp._tls.{domain}", "TXT", f"v=TLSRPTv1; rua=mailto:postmaster@{domain}",
               "TLS reporting (RFC 8460)"),
        *_srv_records(domain),
    ]
    records += [
        Record(f"{label}.{domain}", "CNAME", f"{host}.", f"{label} web host (served by the web process)")
        for label in CLIENT_HOST_LABELS
    ]
    return records


def zone_text(records: list[Record]) -> str:
    return "\n".join(r.zone_line() for r in records) + "\n"


# --- the live check ---


def _tokens(value: str) -> list[str]:
    """Tag records (k=v; k=v) compare by tag, SPF and others by word."""
    separator = ";" if ";" in value else None
    return [t.strip().rstrip(".").lower() for t in value.split(separator) if t.strip()]


def difference(expected: str, found: list[str]) -> str:
    """What is missing from the published value and what is there but unexpected."""
    if not found:
        return f"not published; expected {expected}"
    have = set(_tokens(found[0])) if len(found) == 1 else set()
    want = set(_tokens(expected))
    if len(found) > 1:
        return f"{len(found)} records where one is expected: " + " | ".join(found)
    parts = []
    if want - have:
        parts.append("missing " + ", ".join(sorted(want - have)))
    if have - want:
        parts.append("unexpected " + ", ".join(sorted(have - want)))
    return "; ".join(parts) or "differs only in spacing or case"


def _same(expected: str, value: str) -> bool:
    return _tokens(expected) == _tokens(value)


def _check_txt(record: Record) -> CheckResult:
    tag = record.value.split(";")[0].split()[0].lower()  # v=spf1, v=DKIM1, v=DMARC1, ...
    found = [t for t in maildns.txt(record.name) if t.lower().startswith(tag)]
    if not found:
        return CheckResult(record, MISSING, [], difference(record.value, []))
    if len(found) == 1 and _same(record.value, found[0]):
        return CheckResult(record, PASS, found)
    return CheckResult(record, WRONG, found, difference(record.value, found))


def _check_mx(record: Record) -> CheckResult:
    found = [f"{pref} {host}." for pref, host in maildns.mx(record.name)]
    if not found:
        return CheckResult(record, MISSING, [], difference(record.value, []))
    if any(host == conf.hostname.lower().rstrip(".") for _pref, host in maildns.mx(record.name)):
        return CheckResult(record, PASS, found)
    return CheckResult(record, WRONG, found, f"no MX points at {conf.hostname}")


def _check_srv(record: Record) -> CheckResult:
    found = [r.to_text().lower() for r in maildns.query(record.name, "SRV")]
    if not found:
        return CheckResult(record, MISSING, [], difference(record.value, []))
    want = record.value.lower().split()[2:]  # port and target decide; priority and weight are the operator's choice
    if any(value.split()[2:] == want for value in found):
        return CheckResult(record, PASS, found)
    return CheckResult(record, WRONG, found, f"expected port and target {' '.join(want)}")


def _check_cname(record: Record) -> CheckResult:
    found = [r.to_text().lower() for r in maildns.query(record.name, "CNAME")]
    if found:
        status = PASS if record.value.lower() in found else WRONG
        return CheckResult(record, status, found, "" if status == PASS else f"expected {record.value}")
    # A host name with its own addresses is fine when they are the server's addresses.
    addresses = sorted(maildns.addresses(record.name))
    if not addresses:
        return CheckResult(record, MISSING, [], difference(record.value, []))
    if addresses == sorted(maildns.addresses(conf.hostname)):
        return CheckResult(record, PASS, addresses)
    return CheckResult(record, WRONG, addresses, f"addresses differ from {conf.hostname}'s")


CHECKERS: dict[str, Callable[[Record], CheckResult]] = {
    "TXT": _check_txt, "MX": _check_mx, "SRV": _check_srv, "CNAME": _check_cname,
}


def check_record(record: Record) -> CheckResult:
    try:
        return CHECKERS[record.rtype](record)
    except maildns.PermanentDNSError:  # NXDOMAIN: the name does not exist at all
        return CheckResult(record, MISSING, [], difference(record.value, []))
    except maildns.DNSError as err:
        return CheckResult(record, ERROR, [], err.reason)


def check_records(domain: str) -> list[CheckResult]:
    """Resolve every expected record of DOMAIN now and compare."""
    return [check_record(record) for record in expected_records(domain)]
