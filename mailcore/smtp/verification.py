"""End-of-DATA checks on the MX: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489).

Placeholder until the checks land: reports `none`, never rejects.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Verdict:
    results: list[str] = field(default_factory=list)  # Authentication-Results resinfo items
    reject: bool = False  # DMARC p=reject and the message failed
    from_domain: str = ""


async def verify(raw: bytes, mail_from: str, ip: str, helo: str) -> Verdict:
    return Verdict()
