"""Submission (RFC 6409): one function for mail our users send, used by SMTP AUTH sessions and the webmail.

`submit` checks that the sender address belongs to the account (MAIL FROM and
From header, else `553 5.7.1`), removes Bcc, adds Message-ID and Date when missing, delivers
local recipients into their mailboxes and queues remote ones, all in one
transaction: either everything is durable or nothing is. DKIM signing is not
done here; the delivery workers sign at send time.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from mailcore import directory, store
from mailcore.address import AddressError, parse_address
from mailcore.conf import conf
from mailcore.delivery import dsn as dsn_reports
from mailcore.delivery.queue import enqueue
from mailcore.dsnparams import NOTHING_ASKED, Request
from mailcore.mime import to_crlf
from mailcore.mime.headers import address_groups, first, unreadable_address_list
from mailcore.models import Account, OutboundRecipient
from mailcore.smtp import headers
from mailcore.smtp.recipients import check_recipient, delivery_address
from mailcore.smtp.replies import SMTPError

log = logging.getLogger(__name__)

SENDING_WINDOW = dt.timedelta(hours=1)
ORIGINATOR_FIELDS = ("From", "Sender")  # RFC 5322 §3.6.2: who wrote it, and who sent it (at most once each)
SENT = "\\Sent"


class SubmissionError(SMTPError):
    """Submission refused; `reply` is the SMTP reply (the webmail shows its text)."""


@dataclass
class SubmitResult:
    message_id: str
    delivered: list[str] = field(default_factory=list)  # local recipients, now in their INBOX
    queued: list[str] = field(default_factory=list)  # remote recipients, in the outbound queue
    queue_id: int | None = None


def owns_address(account_id: int, address: str) -> bool:
    """Whether `address` (or it without a +tag) delivers to the account: its own or an alias."""
    try:
        parsed = parse_address(address)
    except AddressError:
        return False
    return directory.may_send_as(account_id, parsed)


def check_sender(account_id: int, mail_from: str) -> None:
    """RFC 6409 §6.1: the MSA may refuse senders the user is not entitled to (`553 5.7.1`)."""
    if not mail_from or not owns_address(account_id, mail_from):
        raise SubmissionError(f"553 5.7.1 <{mail_from}>: Sender address is not owned by the authenticated user")


def check_from_header(account_id: int, raw: bytes) -> None:
    """Every address in the From header, and in Sender when there is one, must be the user's too (RFC 5322
    §3.6.2); each field appears once (§3.6) and is written so that every reader finds the same addresses.
    A second From, or one a mail program could read as another address, would let a user show someone
    else's address where ours checked the user's."""
    fields = headers.header_values(raw)
    for name in ORIGINATOR_FIELDS:
        if sum(1 for field_name, _ in fields if field_name == name.lower()) > 1:
            raise SubmissionError(f"550 5.6.0 Message has more than one {name} header field (RFC 5322 §3.6)")
    for name in ORIGINATOR_FIELDS:
        value = first(fields, name.lower())
        if value is None and name == "Sender":
            continue
        if value is not None and unreadable_address_list(value):
            raise SubmissionError(f"550 5.6.0 {name} header field is not a valid address list (RFC 5322 §3.4)")
        members = [m for _name, group in address_groups(value) for m in group]
        if not members:
            raise SubmissionError(f"550 5.6.0 Message has no usable {name} header field")
        for _display, local, domain in members:
            if not owns_address(account_id, f"{local}@{domain}"):
                raise SubmissionError(f"553 5.7.1 <{local}@{domain}>: {name} header address is not owned by you")


def submit(
    account_id: int,
    mail_from: str,
    recipients: Sequence[str],
    raw: bytes,
    trace: headers.TraceInfo | None = None,
    save_to_sent: bool = False,
    dsn: Request = NOTHING_ASKED,
) -> SubmitResult:
    """Accept one message from an authenticated user; durable when it returns.

    Raises SubmissionError (sender not owned, unknown local recipient, full mailbox)
    or mailcore.store.StorageFailure. `trace` (from an SMTP session) adds Received;
    the webmail passes `save_to_sent=True` to keep a copy in the Sent folder.
    `dsn` is what the sender asked of delivery reports (RFC 3461): local
    recipients that asked for success get a report now, remote ones carry it to the queue.
    """
    check_sender(account_id, mail_from)
    data = to_crlf(raw)
    check_from_header(account_id, data)
    accepted = [check_recipient(r, relay_allowed=True) for r in recipients]
    if not accepted:
        raise SubmissionError("554 5.5.1 No valid recipients")
    data = _prepare(data, mail_from, [a.address for a in accepted], trace)
    message_id = first(headers.header_values(data), "message-id") or ""
    result = SubmitResult(message_id=message_id)
    local = [a.address for a in accepted if a.local]
    remote = [a.address for a in accepted if not a.local]
    with transaction.atomic():
        if local:
            forwarded = _deliver_local(data, mail_from, local, dsn)
            remote += [r for r in forwarded if r not in remote]
            result.delivered = local
        if remote:
            check_sending_limit(account_id, len(remote))
            result.queue_id = enqueue(data, mail_from, remote, account_id, dsn)
            result.queued = remote
        if save_to_sent:
            store.append(store.folder_by_special_use(account_id, SENT), data, flags=["\\Seen"])
    transaction.on_commit(lambda: log.info(
        "account %s submitted %s: %d local, %d queued", account_id, message_id, len(local), len(remote)))
    return result


def check_sending_limit(account_id: int, remote: int) -> None:
    """`remote` more recipients outside our domains keep the account within its hourly limit (its own,
    `Account.recipients_per_hour`, else MAIL_SUBMISSION_RECIPIENTS_PER_HOUR; those of its messages queued in the
    last hour count), else 450 4.7.1 (550 5.7.1 when this message alone has more). A stolen password then sends
    that much spam an hour, not as much as the server can."""
    own = Account.objects.filter(pk=account_id).values_list("recipients_per_hour", flat=True).first()
    limit = conf.submission_recipients_per_hour if own is None else own
    if not limit:
        return
    if remote > limit:
        raise SubmissionError(f"550 5.7.1 Too many recipients outside our domains: {remote}, at most {limit} an hour")
    since = timezone.now() - SENDING_WINDOW
    sent = OutboundRecipient.objects.filter(message__account_id=account_id, message__created_at__gte=since).count()
    if sent + remote > limit:
        log.warning("account %s reached its sending limit: %d recipients outside our domains in an hour, %d more",
                    account_id, sent, remote)
        raise SubmissionError(f"450 4.7.1 Sending limit reached: at most {limit} recipients outside our domains "
                              f"an hour; try again later")


def _prepare(data: bytes, mail_from: str, recipients: list[str], trace: headers.TraceInfo | None) -> bytes:
    data = headers.remove_forged_results(data, conf.hostname)
    data = headers.remove_blind_copies(data)
    data = headers.add_missing_identity(data, conf.hostname)
    if trace is None:
        return data
    checked = [f"auth=pass smtp.auth={trace.login}"] if trace.login else []
    results = headers.authentication_results(conf.hostname, checked)
    return headers.received(trace, conf.hostname, recipients) + results + data


def _deliver_local(data: bytes, mail_from: str, local: list[str], request: Request) -> list[str]:
    """Deliver to local mailboxes; returns remote alias targets to queue. Any full mailbox aborts all."""
    stored = headers.return_path(mail_from) + data
    report = store.deliver(stored, [delivery_address(a) for a in local])
    if report.over_quota:
        raise SubmissionError(f"452 4.2.2 <{report.over_quota[0]}>: Mailbox full")
    if report.unknown:
        raise SubmissionError(f"550 5.1.1 <{report.unknown[0]}>: Recipient address rejected: no such user here")
    dsn_reports.report_local_delivery(mail_from, stored, request, local, report)
    return report.remote
