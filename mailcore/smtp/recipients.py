"""Who may receive mail through us: the recipient checks shared by MX, submission and the webmail.

Synchronous (directory and store reads); event-loop code calls `check_recipient`
through `mailcore.store.aio.run`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailcore import directory, store
from mailcore.address import Address, AddressError, parse_address
from mailcore.conf import conf
from mailcore.smtp.replies import SMTPError

POSTMASTER = "postmaster"
# Local-part characters that old mailers treat as routing (RFC 5321 §3.6.1 and Appendix C:
# the "%-hack" and UUCP "!" bang paths); they never relay here.
ROUTING_CHARACTERS = ("%", "!")
RELAY_DENIED = "554 5.7.1 <{address}>: Relay access denied"


@dataclass(frozen=True)
class Accepted:
    """A recipient the server took: the address as given and whether it is delivered here."""

    address: str
    local: bool


def parse_recipient(text: str) -> Address:
    """Parse a RCPT address, refusing address tricks that could route mail elsewhere."""
    if text.lower() == POSTMASTER:
        text = postmaster_address()
    try:
        address = parse_address(text)
    except AddressError as err:
        raise SMTPError(f"501 5.1.3 Bad recipient address syntax: {err}") from None
    if address.is_quoted and "@" in address.local:
        raise SMTPError(RELAY_DENIED.format(address=address))
    if any(c in address.local for c in ROUTING_CHARACTERS):
        raise SMTPError(RELAY_DENIED.format(address=address))
    return address


def postmaster_address() -> str:
    """Where a bare <Postmaster> goes (RFC 5321 §4.5.1: it MUST be accepted without a domain): MAIL_POSTMASTER,
    else postmaster@ the hosted domain MAIL_HOSTNAME is in (mail.example.org: example.org), else of the first
    domain hosted (each has a postmaster, `directory.create_account`)."""
    if conf.postmaster:
        return conf.postmaster
    labels = conf.hostname.lower().rstrip(".").split(".")
    for start in range(len(labels) - 1):
        if directory.is_hosted(".".join(labels[start:])):
            return f"{POSTMASTER}@{'.'.join(labels[start:])}"
    first = directory.first_hosted_domain()
    return f"{POSTMASTER}@{first or conf.hostname}"


def check_recipient(text: str, relay_allowed: bool, size_hint: int = 0) -> Accepted:
    """Accept or refuse one recipient (raises SMTPError with the reply).

    MX (`relay_allowed=False`): only hosted domains; submission also takes remote ones.
    Hosted: the address must resolve (`550 5.1.1`), postmaster always does
    (RFC 5321 §4.5.1), and a full mailbox gives `452 4.2.2`.
    """
    with directory.remembering_lookups():  # the domain is looked up once, not by each step
        return _check_recipient(parse_recipient(text), relay_allowed, size_hint)


def _check_recipient(address: Address, relay_allowed: bool, size_hint: int) -> Accepted:
    if not directory.is_hosted(address.domain):
        if not relay_allowed:
            raise SMTPError(RELAY_DENIED.format(address=address))
        return Accepted(str(address), local=False)
    route = directory.resolve(address)
    if route.unknown and address.local.lower() == POSTMASTER and conf.postmaster:
        route = directory.resolve(conf.postmaster)
    if route.unknown:
        raise SMTPError(f"550 5.1.1 <{address}>: Recipient address rejected: no such user here")
    for account_id in route.accounts:
        used, limit = store.quota(account_id)
        if limit and used + size_hint >= limit:
            raise SMTPError(f"452 4.2.2 <{address}>: Mailbox full")
    return Accepted(str(address), local=True)


def delivery_address(address: str) -> str:
    """The address handed to the store: unresolvable postmaster goes to MAIL_POSTMASTER."""
    parsed = parse_address(address)
    if parsed.local.lower() == POSTMASTER and conf.postmaster and directory.resolve(parsed).unknown:
        return conf.postmaster
    return address


def mailboxes_reached(recipients: Sequence[str], report: store.DeliveryReport) -> dict[str, int]:
    """How many local mailboxes each recipient (as accepted at RCPT) reached; 0 for one only forwarded elsewhere.

    Recipients the store found unknown or over quota are left out.
    """
    reached = {}
    for rcpt in recipients:
        address = delivery_address(rcpt)
        if address not in report.unknown and address not in report.over_quota:
            reached[rcpt] = len(report.delivered.get(address, []))
    return reached
