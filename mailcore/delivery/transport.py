"""Which way a message leaves: direct to MX, through the smarthost, or through an ESP's API (Anymail).

MAIL_RELAY sets the default; a hosted domain may choose its own in the admin
(`Domain.transport`), and the envelope sender's domain decides for each message.
Bounces (null sender) and senders from domains not hosted here take the default.
"""
from __future__ import annotations

from mailcore.address import AddressError, normalize_domain
from mailcore.conf import conf
from mailcore.models import Domain

MX, SMARTHOST, ANYMAIL = Domain.TRANSPORT_MX, Domain.TRANSPORT_SMARTHOST, Domain.TRANSPORT_ANYMAIL
KNOWN = (MX, SMARTHOST, ANYMAIL)


def default() -> str:
    """The transport MAIL_RELAY names ("" means direct to MX)."""
    relay = conf.relay
    return relay if relay in KNOWN else MX


def for_sender(sender: str, cache: dict[str, str] | None = None) -> str:
    """The transport for mail from envelope sender `sender`; `cache` keeps one lookup per domain for a run."""
    try:
        domain = normalize_domain(sender.rpartition("@")[2])
    except AddressError:
        return default()  # the null sender (a bounce), or a domain that cannot be hosted here
    cache = {} if cache is None else cache
    if domain not in cache:
        chosen = Domain.objects.filter(name=domain).values_list("transport", flat=True).first()
        cache[domain] = chosen if chosen in KNOWN else default()
    return cache[domain]
