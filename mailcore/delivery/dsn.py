"""Bounces, delay warnings and success reports: RFC 3464 delivery status notifications to the envelope sender.

Which reports a recipient gets is the sender's choice (RFC 3461 NOTIFY, read in
`mailcore.smtp.dsnparams`): without one, failures and delays; success only when asked.

A DSN comes from MAILER-DAEMON@<hostname> with the null reverse path (RFC 5321
§4.5.5), so it is never itself bounced: a message whose sender is empty gets no DSN.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import format_datetime

from django.utils import timezone

from mailcore import store
from mailcore.address import AddressError, parse_address
from mailcore.conf import conf
from mailcore.directory import is_hosted
from mailcore.dsnparams import DELAY, FAILURE, FULL, SUCCESS, RecipientRequest, Request
from mailcore.mime.headers import split_header
from mailcore.models import OutboundMessage, OutboundRecipient
from mailcore.smtp.headers import return_path
from mailcore.smtp.recipients import mailboxes_reached

log = logging.getLogger(__name__)

# RFC 3464 §2.3.3 action-value
FAILED, DELAYED, DELIVERED, RELAYED, EXPANDED = "failed", "delayed", "delivered", "relayed", "expanded"
EVENT = {FAILED: FAILURE, DELAYED: DELAY, DELIVERED: SUCCESS, RELAYED: SUCCESS, EXPANDED: SUCCESS}  # RFC 3461 §4.1
EXPIRED_STATUS = "4.4.7"  # RFC 3463 §3.5: delivery time expired
_SUBJECTS = {
    FAILED: "Undelivered Mail Returned to Sender",
    DELAYED: "Delayed Mail (still being retried)",
    SUCCESS: "Successful Mail Delivery Report",
}
_INTRO = {
    FAILED: "Your message could not be delivered to the recipients below. This is permanent.",
    DELAYED: "Your message has not been delivered yet to the recipients below. Delivery is still being "
    "attempted; you need not send it again.",
    SUCCESS: "Your message has reached the recipients below, as you asked to be told.",
}
_SUCCESS_TEXT = {
    DELIVERED: "delivered to the mailbox",
    EXPANDED: "delivered, and forwarded on to further addresses (no reports from there)",
    RELAYED: "handed to a server that sends no delivery reports (none will follow)",
}


@dataclass(frozen=True)
class Entry:
    """One recipient's part of a report (RFC 3464 §2.3)."""

    address: str
    action: str
    status: str
    orcpt: str = ""  # "addr-type;address" as the sender gave it (RFC 3461 §4.2)
    remote_mta: str = ""
    diagnostic: str = ""  # the remote server's reply
    last_attempt: dt.datetime | None = None


@dataclass(frozen=True)
class Original:
    """The message a report is about: its sender, bytes, arrival and what its sender asked (RFC 3461)."""

    sender: str
    data: bytes
    arrived: dt.datetime
    envid: str = ""
    ret: str = ""


def build_dsn(original: Original, entries: Sequence[Entry]) -> bytes:
    """A multipart/report DSN (RFC 3464 §2, RFC 6522) about `entries`, to the original's sender."""
    hostname = conf.hostname
    boundary = f"=_dsn_{uuid.uuid4().hex}"
    kind = _kind(entries)
    headers = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{original.sender}>",
        f"Subject: {_SUBJECTS[kind]}",
        f"Date: {format_datetime(timezone.now())}",
        f"Message-ID: <{uuid.uuid4().hex}@{hostname}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    human = [_INTRO[kind], ""] + [f"  <{e.address}>: {_SUCCESS_TEXT.get(e.action) or e.diagnostic or 'no reply'}"
                                  for e in entries]
    status = [f"Reporting-MTA: dns; {hostname}"]
    if original.envid:
        status.append(f"Original-Envelope-Id: {original.envid}")  # RFC 3464 §2.2.1
    status += [f"Arrival-Date: {format_datetime(original.arrived)}", ""]
    for entry in entries:
        status += [*_recipient_fields(entry), ""]
    # RFC 3461 §4.3: RET=FULL asks for the whole message in a failure report; otherwise its header.
    whole = kind == FAILED and original.ret == FULL
    parts = [
        "\r\n".join(headers), "",
        f"--{boundary}", "Content-Type: text/plain; charset=utf-8", "", "\r\n".join(human), "",
        f"--{boundary}", "Content-Type: message/delivery-status", "", "\r\n".join(status),
        f"--{boundary}", f"Content-Type: {'message/rfc822' if whole else 'text/rfc822-headers'}", "",
    ]
    returned = original.data if whole else _original_headers(original.data)
    body = "\r\n".join(parts).encode("utf-8") + b"\r\n" + returned.rstrip(b"\r\n") + b"\r\n"
    return body + f"\r\n--{boundary}--\r\n".encode("ascii")


def _kind(entries: Sequence[Entry]) -> str:
    actions = {e.action for e in entries}
    return FAILED if FAILED in actions else DELAYED if DELAYED in actions else SUCCESS


def _recipient_fields(entry: Entry) -> list[str]:
    # RFC 3464 §2.3: per-recipient fields.
    fields = [f"Original-Recipient: {entry.orcpt}"] if entry.orcpt else []
    fields += [f"Final-Recipient: rfc822; {entry.address}", f"Action: {entry.action}", f"Status: {entry.status}"]
    if entry.remote_mta:
        fields.append(f"Remote-MTA: dns; {entry.remote_mta}")
    if entry.diagnostic:
        fields.append(f"Diagnostic-Code: smtp; {' '.join(entry.diagnostic.split())}")
    fields.append(f"Last-Attempt-Date: {format_datetime(entry.last_attempt or timezone.now())}")
    return fields


def _row_entry(row: OutboundRecipient, action: str) -> Entry:
    return Entry(row.address, action, _status(row, action), orcpt=row.orcpt, remote_mta=row.mx_host,
                 diagnostic=row.last_reply, last_attempt=row.updated_at)


def _status(row: OutboundRecipient, action: str) -> str:
    if row.state == OutboundRecipient.EXPIRED:
        return EXPIRED_STATUS
    token = row.last_reply.split(" ")[1] if row.last_reply.count(" ") >= 1 else ""
    parts = token.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return token
    return {FAILED: "5.0.0", DELAYED: "4.0.0"}.get(action, "2.0.0")


def _original_headers(original: bytes) -> bytes:
    end, _ = split_header(original)
    return original[:end].rstrip(b"\r\n") + b"\r\n"


def notify_sender(message: OutboundMessage, rows: Sequence[OutboundRecipient], action: str) -> None:
    """Report `action` about `rows` to the message's sender, for the rows whose NOTIFY asks for it (RFC 3461 §4.1)."""
    wanted = [row for row in rows if RecipientRequest(row.notify).wants(EVENT[action])]
    if not wanted or not message.sender:
        return  # RFC 5321 §4.5.5: never send a DSN for a message with a null reverse path
    original = Original(message.sender, store.read_blob(message.blob), message.created_at, message.envid, message.ret)
    send_report(original, [_row_entry(row, action) for row in wanted], f"outbound #{message.pk}")


def report_local_delivery(sender: str, stored: bytes, request: Request, recipients: Sequence[str],
                          report: store.DeliveryReport) -> None:
    """Success reports for the recipients delivered here whose NOTIFY asks for one (RFC 3461 §5.2.3).

    A recipient that reached one mailbox is "delivered"; one that reached none
    (an alias that forwards elsewhere) or several is "expanded" (RFC 3464
    §2.3.3), and the copies sent on carry no request of their own (§5.2.7.3).
    """
    wanted = [r for r in recipients if request.of(r).wants(SUCCESS)]
    if not wanted or not sender:
        return
    entries = [
        Entry(address, DELIVERED if count == 1 else EXPANDED, "2.0.0", orcpt=request.of(address).orcpt)
        for address, count in mailboxes_reached(wanted, report).items()
    ]
    if entries:
        send_report(Original(sender, stored, timezone.now(), request.envid, request.ret), entries, "local delivery")


def send_report(original: Original, entries: Sequence[Entry], about: str) -> None:
    """Send a DSN to the original's sender: into a local INBOX, or queued when remote."""
    dsn = build_dsn(original, entries)
    try:
        domain = parse_address(original.sender).domain
    except AddressError:
        log.warning("%s: sender <%s> is malformed; DSN dropped", about, original.sender)
        return
    from mailcore.delivery.queue import enqueue

    if is_hosted(domain):
        report = store.deliver(return_path("") + dsn, [original.sender])
        if not report.all_delivered:
            log.warning("%s: DSN to <%s> not stored: %s", about, original.sender, report)
        if report.remote:  # the sender is an alias that forwards, or an SRS address of ours
            enqueue(dsn, "", report.remote)
        return
    enqueue(dsn, "", [original.sender])
