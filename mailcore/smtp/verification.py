"""End-of-DATA checks on the MX: SPF (RFC 7208), DKIM (RFC 6376, dkimpy) and DMARC (RFC 7489).

Every lookup goes through mailcore.dns (MAIL_DNS_NAMESERVERS). The checks are
blocking library calls: the MX runs `verify_message` in a thread of its own
(`inbound.check_and_prepare`), not a store thread. The outcome is
a list of Authentication-Results items (RFC 8601 §2.7) and whether DMARC says reject.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import dkim
from publicsuffixlist import PublicSuffixList

from mailcore import dns
from mailcore.mime.headers import address_groups, at_sign_domains, split_header
from mailcore.smtp.headers import clean, header_values
from mailcore.smtp.spfcheck import check_spf

log = logging.getLogger(__name__)

DMARC_PREFIX = "_dmarc"
MAX_AUTHOR_DOMAINS = 10  # From domains checked in one message; more refuses it like a DMARC reject
# DKIM signatures verified in one message (RFC 6376 §6.1 lets verifiers limit them): each costs a key
# lookup and a hash of the whole body, so a message with a thousand of them would cost a thousand.
# Real mail has one to four (author, ESP, mailing list, forwarder).
MAX_DKIM_SIGNATURES = 8
# dkimpy unfolds a header field by adding each line to a copy of it (a 1 MB header of 262,000 folded
# lines: 4.6 s); real headers have a few hundred lines at most.
MAX_DKIM_HEADER_LINES = 10_000
_psl = PublicSuffixList()


@dataclass
class Verdict:
    results: list[str] = field(default_factory=list)  # Authentication-Results resinfo items
    reject: bool = False  # the message failed DMARC and the domain's policy is p=reject
    from_domain: str = ""
    refusal: str = ""  # why, for the 550 5.7.1 reply


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass, fail, neutral, policy, temperror, permerror (RFC 8601 §2.7.1)
    domain: str
    selector: str
    comment: str = ""  # instead of domain and selector, for signatures not verified


class _DNSTempFail(Exception):
    """A DKIM key lookup failed temporarily (dkimpy calls our dnsfunc)."""


def verify_message(raw: bytes, mail_from: str, ip: str, helo: str) -> Verdict:
    spf_result, identity = check_spf(ip, mail_from, helo)
    dkim_results = check_dkim(raw)
    verdict = Verdict(results=[_spf_item(spf_result, identity, mail_from)])
    verdict.results += [_dkim_item(d) for d in dkim_results] or ["dkim=none"]
    domains = from_domains(raw)
    if not domains:
        verdict.results.append("dmarc=none (no From domain)")
        return verdict
    verdict.from_domain = domains[0]
    if len(domains) > MAX_AUTHOR_DOMAINS:  # each costs DMARC lookups; beyond, one could hide among the many
        verdict.results.append(f"dmarc=permerror (more than {MAX_AUTHOR_DOMAINS} author domains)")
        verdict.reject, verdict.refusal = True, f"more than {MAX_AUTHOR_DOMAINS} author domains (RFC 7489 §6.6.1)"
        return verdict
    spf_domain = identity.rpartition("@")[2].lower() if spf_result == "pass" else ""
    dkim_domains = [d.domain for d in dkim_results if d.result == "pass"]
    for from_domain in domains:  # RFC 7489 §6.6.1: with several author domains, each one's policy applies
        result, policy = check_dmarc(from_domain, spf_domain, dkim_domains)
        verdict.results.append(f"dmarc={result} header.from={from_domain}")
        if result == "fail" and policy == "reject" and not verdict.reject:
            verdict.reject, verdict.from_domain = True, from_domain
            verdict.refusal = f"DMARC policy of {from_domain} says reject"
    return verdict


def _spf_item(result: str, identity: str, mail_from: str) -> str:
    # RFC 8601 §2.7.2: smtp.mailfrom, or smtp.helo when the null sender made us check HELO.
    prop = f"smtp.mailfrom={clean(identity)}" if mail_from else f"smtp.helo={clean(identity.partition('@')[2])}"
    return f"spf={result} {prop}"


def _dkim_item(d: DkimResult) -> str:
    if d.comment:
        return f"dkim={d.result} ({d.comment})"
    return f"dkim={d.result} header.d={clean(d.domain)} header.s={clean(d.selector)}"


# DKIM ----------------------------------------------------------------------------------------


def _dkim_txt(name: bytes, timeout: float = 5) -> bytes | None:
    """dkimpy's dnsfunc: the TXT record at `name` as bytes, None when there is none."""
    try:
        records = dns.txt(name.decode("ascii", "replace").rstrip("."), dns.checks_resolver())
    except dns.PermanentDNSError:
        return None
    except dns.DNSError as err:
        raise _DNSTempFail(str(err)) from err
    return records[0].encode() if records else None


def check_dkim(raw: bytes) -> list[DkimResult]:
    """Verify each DKIM-Signature (RFC 6376 §6), up to MAX_DKIM_SIGNATURES; one result per signature
    verified, and one `dkim=policy` for all those beyond."""
    count = sum(1 for name, _value in header_values(raw) if name == "dkim-signature")
    if not count:
        return []
    if raw.count(b"\n", 0, split_header(raw)[0]) > MAX_DKIM_HEADER_LINES:
        return [DkimResult("permerror", "", "", f"header of more than {MAX_DKIM_HEADER_LINES} lines not verified")]
    try:
        verifier = dkim.DKIM(raw)  # parses the message once, for all of its signatures
    except dkim.DKIMException as err:  # a header line dkimpy cannot read (no colon, say): nothing can verify
        log.info("DKIM: message not verifiable: %s", err)
        return [DkimResult("permerror", "", "", "header cannot be parsed")]
    results = []
    for index in range(min(count, MAX_DKIM_SIGNATURES)):
        verifier.domain = verifier.selector = b""  # set again by verify() from this signature's d= and s=
        try:
            result = "pass" if verifier.verify(idx=index, dnsfunc=_dkim_txt) else "fail"
        except _DNSTempFail:
            result = "temperror"
        except dkim.ValidationError as err:
            # RFC 6376 §6.1.3: a body hash mismatch is a failed verification, not a broken signature.
            result = "fail" if "body hash mismatch" in str(err) else "permerror"
        except dkim.DKIMException:
            result = "permerror"
        domain, selector = getattr(verifier, "domain", b""), getattr(verifier, "selector", b"")
        results.append(DkimResult(result, _text(domain), _text(selector)))
    if count > MAX_DKIM_SIGNATURES:
        skipped = count - MAX_DKIM_SIGNATURES
        results.append(DkimResult("policy", "", "", f"{skipped} more signatures not verified"))
    return results


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").lower()
    return (value or "").lower()


# DMARC ---------------------------------------------------------------------------------------


def from_domains(raw: bytes) -> list[str]:
    """RFC 7489 §6.6.1: the RFC5322.From domains, each once, lowercased: those of every address in every From
    field, and any other text after an "@" there, which a mail program may show as the author's address
    (a second From field, `Alice <a@x> <b@y>`). Domain literals have no DMARC record and are left out."""
    values = [value for name, value in header_values(raw) if name == "from"]
    read = [member[2] for value in values for _name, group in address_groups(value) for member in group]
    seen = read + [domain for value in values for domain in at_sign_domains(value)]
    return list(dict.fromkeys(d.lower().rstrip(".") for d in seen if d and not d.startswith("[")))


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: one label below the public suffix."""
    return _psl.privatesuffix(domain) or domain


def _aligned(domain: str, from_domain: str, mode: str) -> bool:
    # RFC 7489 §3.1: strict needs equal names, relaxed equal organizational domains.
    if not domain:
        return False
    if mode == "s":
        return domain == from_domain
    return organizational_domain(domain) == organizational_domain(from_domain)


def dmarc_record(from_domain: str) -> tuple[dict[str, str], bool]:
    """RFC 7489 §6.6.3: the policy at _dmarc.<From domain>, else at the organizational domain.

    Returns (tags, found at the organizational domain).
    """
    org = organizational_domain(from_domain)
    for domain in dict.fromkeys([from_domain, org]):
        for record in _txt_or_empty(f"{DMARC_PREFIX}.{domain}"):
            tags = dns.tag_list(record)
            if tags.get("v") == "DMARC1" and "p" in tags:
                return tags, domain != from_domain
    return {}, False


def _txt_or_empty(name: str) -> list[str]:
    try:
        return dns.txt(name, dns.checks_resolver())
    except dns.PermanentDNSError:
        return []


def check_dmarc(from_domain: str, spf_domain: str, dkim_domains: list[str]) -> tuple[str, str]:
    """(result, policy): pass/fail/none/temperror, and the policy that applies on fail."""
    try:
        tags, inherited = dmarc_record(from_domain)
    except dns.DNSError:
        return "temperror", ""
    if not tags:
        return "none", ""
    spf_ok = _aligned(spf_domain, from_domain, tags.get("aspf", "r"))
    dkim_ok = any(_aligned(d, from_domain, tags.get("adkim", "r")) for d in dkim_domains)
    policy = (tags.get("sp") if inherited else None) or tags["p"]
    if spf_ok or dkim_ok:
        return "pass", ""
    return "fail", sampled_policy(policy.lower(), tags.get("pct", ""))


# RFC 7489 §6.6.4: messages outside the pct= sample get the next less strict policy.
_LESS_STRICT = {"reject": "quarantine", "quarantine": "none"}


def sampled_policy(policy: str, pct: str, draw: Callable[[], float] = random.random) -> str:
    """The policy for one failing message under `pct=` (RFC 7489 §6.3; absent or invalid: 100)."""
    try:
        percent = int(pct)
    except ValueError:
        return policy
    if percent >= 100 or draw() * 100 < max(percent, 0):
        return policy
    return _LESS_STRICT.get(policy, policy)
