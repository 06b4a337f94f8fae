"""MX delivery: a message from another server, for our domains, into local mailboxes (DESIGN step 6).

Synchronous; the MX handler runs `check_and_prepare` in a thread and then
`deliver_inbound` through `mailcore.store.aio.run_durable` (the group commit).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from mailcore import srs, store
from mailcore.address import parse_address
from mailcore.conf import conf
from mailcore.delivery import dsn
from mailcore.delivery.queue import enqueue
from mailcore.dsnparams import NOTHING_ASKED, Request
from mailcore.mime import to_crlf
from mailcore.smtp import headers
from mailcore.smtp.recipients import delivery_address
from mailcore.smtp.verification import Verdict, verify_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedInbound:
    """A message from the MX with our trace fields, stored durably and parsed, before any row is written."""

    blob: store.StoredBlob  # Return-Path, Received, Authentication-Results, then the message: what mailboxes get
    return_path_length: int

    @property
    def forwarded(self) -> bytes:
        """What an alias forwarding outside our domains sends on: all but Return-Path (RFC 5321 §4.4)."""
        return self.blob.data[self.return_path_length:]


def prepare_inbound(
    raw: bytes, mail_from: str, recipients: Sequence[str], trace: headers.TraceInfo, results: Sequence[str]
) -> PreparedInbound:
    """Add trace fields, then store the blob durably and parse it: what needs no transaction.

    Forged Authentication-Results claiming our name are removed and ours
    (`results`, RFC 8601) prepended with Received (RFC 5321 §4.4) and Return-Path.
    The session runs this in its own thread (or SMTP worker process), so that
    the group commit's one thread has only rows left to write. Raises StorageFailure.
    """
    return_path = headers.return_path(mail_from)
    data = b"".join((  # one copy of a message that may be 50 MB
        return_path,
        headers.received(trace, conf.hostname, list(recipients)),
        headers.authentication_results(conf.hostname, results),
        headers.remove_forged_results(to_crlf(raw), conf.hostname),
    ))
    return PreparedInbound(store.store_parsed(data), len(return_path))


def check_and_prepare(
    raw: bytes, mail_from: str, ip: str, helo: str, recipients: Sequence[str], trace: headers.TraceInfo
) -> tuple[Verdict, PreparedInbound | None]:
    """SPF, DKIM and DMARC, then `prepare_inbound` with their results; no message prepared (None)
    when DMARC says reject and MAIL_DMARC_REJECT follows it."""
    verdict = verify_message(raw, mail_from, ip, helo)
    if verdict.reject and conf.dmarc_reject:
        return verdict, None
    return verdict, prepare_inbound(raw, mail_from, recipients, trace, verdict.results)


def deliver_inbound(
    prepared: PreparedInbound, mail_from: str, recipients: Sequence[str], request: Request = NOTHING_ASKED
) -> store.DeliveryReport:
    """Deliver a prepared message; durable when it returns, all or nothing.

    Recipients whose NOTIFY asked for success get a report (RFC 3461), in the same transaction.
    Raises mailcore.store.OverQuota when any mailbox is full (nothing is kept
    then, so the sender's retry makes no duplicates) and StorageFailure.
    """
    # No savepoint of its own: it runs as a whole in its caller's (group commit's per-call savepoint).
    with transaction.atomic(savepoint=False):
        report = store.deliver_stored(prepared.blob, [delivery_address(r) for r in recipients])
        if report.over_quota:
            raise store.OverQuota(f"{report.over_quota[0]}: mailbox full")
        if report.remote:  # an alias forwards outside our domains, or a bounce comes back through SRS
            forwarder = srs.forward_sender(mail_from, _forwarding_domain(recipients))
            enqueue(prepared.forwarded, forwarder, report.remote, None)
        dsn.report_local_delivery(mail_from, prepared.blob.data, request, recipients, report)
    if report.unknown:
        log.warning("recipients vanished between RCPT and DATA: %s", ", ".join(report.unknown))
    return report


def _forwarding_domain(recipients: Sequence[str]) -> str:
    """The hosted domain forwarded mail is sent from (for SRS): the first recipient's."""
    return parse_address(delivery_address(recipients[0])).domain
