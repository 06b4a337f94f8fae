"""The Sender Rewriting Scheme (SRS) for mail our aliases forward to other domains.

RFC 7208 §10.1.3: a forwarder that keeps the original envelope sender makes the
next hop's SPF check fail, because our address is not among the sender domain's
permitted ones. So mail an alias forwards outside our domains leaves with the
sender rewritten into one of our hosted domains,

    SRS0=HHHHHH=TT=remote.example=carol@example.org

where HHHHHH is an HMAC (keyed from SECRET_KEY) of the rest and TT the day it was
made. A bounce to that address comes back to our MX, which checks the HMAC and the
age (at most MAX_AGE_DAYS) and forwards it to carol@remote.example. Anything else
addressed like that is an unknown user (`550 5.1.1`), so the scheme opens no relay.
Conventions as in libsrs2 (the scheme's reference implementation), with a base32
hash so that the address survives case changes. Not rewritten: the null sender
(bounces), our own domains' senders (SPF passes for them already), quoted local
parts, and senders whose rewritten local part would exceed RFC 5321's 64 octets
(kept as they are).
"""
from __future__ import annotations

import base64
import re
import time

from django.utils.crypto import constant_time_compare, salted_hmac

from mailcore.address import MAX_LOCAL_PART_OCTETS, Address, AddressError, parse_address
from mailcore.conf import conf

PREFIX = "SRS0"
SEPARATOR = "="
HASH_LENGTH = 6  # base32 characters: 30 bits
MAX_AGE_DAYS = 21  # libsrs2's default: how long a bounce to a rewritten address is accepted
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_DAY_SECONDS = 86400
_TIMESTAMP_RANGE = len(_BASE32) ** 2  # two base32 characters: days modulo 1024
_SRS0 = re.compile(rf"SRS0=([A-Z2-7]{{{HASH_LENGTH}}})=([A-Z2-7]{{2}})=([^=@]+)=(.+)", re.IGNORECASE)


def forward_sender(sender: str, forwarding_domain: str) -> str:
    """The envelope sender for a message forwarded through `forwarding_domain` (one of ours)."""
    from mailcore.directory import is_hosted

    if not sender or not conf.srs:
        return sender
    try:
        original = parse_address(sender)
    except AddressError:
        return sender
    if is_hosted(original.domain) or original.is_quoted:
        return sender
    stamp = _timestamp()
    local = SEPARATOR.join([PREFIX, _hash(stamp, original), stamp, original.domain, original.local])
    if len(local.encode()) > MAX_LOCAL_PART_OCTETS:
        return sender
    return f"{local}@{forwarding_domain}"


def reverse(address: Address) -> str | None:
    """The original sender an SRS0 address of ours stands for, or None (not SRS, forged or expired)."""
    match = _SRS0.fullmatch(address.local)
    if match is None:
        return None
    given_hash, stamp, domain, local = match.groups()
    try:
        original = parse_address(f"{local}@{domain}")
    except AddressError:
        return None
    if not constant_time_compare(given_hash.upper(), _hash(stamp.upper(), original)):
        return None
    if _age_days(stamp.upper()) > MAX_AGE_DAYS:
        return None
    return str(original)


def is_srs(address: Address) -> bool:
    return address.local[: len(PREFIX) + 1].upper() == PREFIX + SEPARATOR


def _hash(stamp: str, original: Address) -> str:
    # Separated, so that no other (domain, local part) gives the same text: a domain has no "=".
    text = SEPARATOR.join([stamp, original.domain, original.local.lower()])
    digest = salted_hmac("mailcore.srs", text, algorithm="sha256").digest()
    return base64.b32encode(digest).decode("ascii")[:HASH_LENGTH]


def _timestamp(now: float | None = None) -> str:
    days = int((time.time() if now is None else now) // _DAY_SECONDS) % _TIMESTAMP_RANGE
    return _BASE32[days // len(_BASE32)] + _BASE32[days % len(_BASE32)]


def _age_days(stamp: str) -> int:
    made = _BASE32.index(stamp[0]) * len(_BASE32) + _BASE32.index(stamp[1])
    today = int(time.time() // _DAY_SECONDS) % _TIMESTAMP_RANGE
    return (today - made) % _TIMESTAMP_RANGE
