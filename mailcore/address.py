"""Mail addresses: the one parser and normaliser (RFC 5321 §4.1.2, RFC 6531 for UTF-8).

Domains compare case-insensitively and are kept in their IDNA A-label form
(RFC 5890); local parts keep their case (RFC 5321 §2.4) but this system, like
every mainstream server, matches them case-insensitively.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import idna

# RFC 5321 §4.5.3.1.1 and §4.5.3.1.2: local part 64 octets, domain 255 octets.
MAX_LOCAL_PART_OCTETS = 64
MAX_DOMAIN_OCTETS = 255

# RFC 5321 §4.1.2 Dot-string: atext runs separated by single dots. UTF-8 allowed (RFC 6531 §3.3).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010FFFF]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(\.{_ATEXT}+)*")
_QUOTED_STRING = re.compile(r'"([\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010FFFF]|\\[\x20-\x7e])*"')
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# The same in ASCII only (RFC 5322 §3.2.3): what the fast paths for the usual SMTP paths and
# header addresses read without a full parser, leaving everything else to it.
ASCII_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
ASCII_DOT_ATOM = rf"{ASCII_ATEXT}+(?:\.{ASCII_ATEXT}+)*"


class AddressError(ValueError):
    """A malformed address or domain; the message says what is wrong."""


@dataclass(frozen=True)
class Address:
    """A parsed address: local part as given, domain as lowercase A-label."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def key(self) -> str:
        """The form used for lookups and uniqueness: case-folded local part, A-label domain."""
        return f"{self.local.lower()}@{self.domain}"

    @property
    def is_quoted(self) -> bool:
        return self.local.startswith('"')


def normalize_domain(domain: str) -> str:
    """Return `domain` as a lowercase IDNA A-label, or raise AddressError."""
    text = domain.strip().rstrip(".")
    if not text:
        raise AddressError("empty domain")
    if text.startswith("[") and text.endswith("]"):
        raise AddressError(f"address literal {text} is not accepted here")
    try:
        ascii_domain = text.lower() if text.isascii() else idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as err:
        raise AddressError(f"invalid international domain {text!r}: {err}") from err
    if len(ascii_domain) > MAX_DOMAIN_OCTETS:
        raise AddressError("domain longer than 255 octets")
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise AddressError(f"invalid domain {text!r}")
    return ascii_domain


def display_domain(domain: str) -> str:
    """The Unicode (U-label) form of a stored A-label domain, for people."""
    try:
        return idna.decode(domain)
    except idna.IDNAError:
        return domain


def parse_address(text: str) -> Address:
    """Parse `local@domain` (optionally in angle brackets) or raise AddressError with the reason."""
    raw = text.strip()
    if raw.startswith("<") and raw.endswith(">"):
        raw = raw[1:-1]
    if raw.startswith("@"):
        # RFC 5321 §4.1.2 source routes (@a,@b:user@c) are obsolete; never honour them.
        raise AddressError("source routes are not accepted")
    local, sep, domain = raw.rpartition("@")
    if not sep or not local:
        raise AddressError(f"{text!r} is not of the form local@domain")
    _check_local_part(local)
    return Address(local=local, domain=normalize_domain(domain))


def _check_local_part(local: str) -> None:
    if len(local.encode("utf-8")) > MAX_LOCAL_PART_OCTETS:
        raise AddressError("local part longer than 64 octets")
    if not (_DOT_STRING.fullmatch(local) or _QUOTED_STRING.fullmatch(local)):
        raise AddressError(f"invalid local part {local!r}")


def split_catch_all(text: str) -> str | None:
    """If `text` is a catch-all source `@domain`, return the normalised domain, else None."""
    raw = text.strip()
    if raw.startswith("@") and raw.count("@") == 1:
        return normalize_domain(raw[1:])
    return None
