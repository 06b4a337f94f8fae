"""Bounces and delay warnings: RFC 3464 delivery status notifications, sent to the envelope sender.

A DSN comes from MAILER-DAEMON@<hostname> with the null reverse path (RFC 5321
§4.5.5), so it is never itself bounced: a message whose sender is empty gets no DSN.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from email.utils import format_datetime

from django.utils import timezone

from mailcore import store
from mailcore.address import AddressError, parse_address
from mailcore.conf import conf
from mailcore.directory import is_hosted
from mailcore.mime.headers import split_header
from mailcore.models import OutboundMessage, OutboundRecipient

log = logging.getLogger(__name__)

FAILED, DELAYED = "failed", "delayed"  # RFC 3464 §2.3.3 action-value
EXPIRED_STATUS = "4.4.7"  # RFC 3463 §3.5: delivery time expired
_SUBJECTS = {FAILED: "Undelivered Mail Returned to Sender", DELAYED: "Delayed Mail (still being retried)"}
_INTRO = {
    FAILED: "Your message could not be delivered to the recipients below. This is permanent.",
    DELAYED: "Your message has not been delivered yet to the recipients below. Delivery is still being "
    "attempted; you need not send it again.",
}


def build_dsn(message: OutboundMessage, rows: Sequence[OutboundRecipient], action: str, original: bytes) -> bytes:
    """A multipart/report DSN (RFC 3464 §2, RFC 6522) for `rows` of `message`."""
    hostname = conf.hostname
    boundary = f"=_dsn_{uuid.uuid4().hex}"
    now = timezone.now()
    headers = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{message.sender}>",
        f"Subject: {_SUBJECTS[action]}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: <{uuid.uuid4().hex}@{hostname}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    human = [_INTRO[action], ""] + [f"  <{r.address}>: {r.last_reply or 'no reply'}" for r in rows]
    status = [f"Reporting-MTA: dns; {hostname}", f"Arrival-Date: {format_datetime(message.created_at)}", ""]
    for row in rows:
        status += [*_recipient_fields(row, action), ""]
    parts = [
        "\r\n".join(headers), "",
        f"--{boundary}", "Content-Type: text/plain; charset=utf-8", "", "\r\n".join(human), "",
        f"--{boundary}", "Content-Type: message/delivery-status", "", "\r\n".join(status),
        f"--{boundary}", "Content-Type: text/rfc822-headers", "",
    ]
    body = "\r\n".join(parts).encode("utf-8") + b"\r\n" + _original_headers(original)
    return body + f"\r\n--{boundary}--\r\n".encode("ascii")


def _recipient_fields(row: OutboundRecipient, action: str) -> list[str]:
    # RFC 3464 §2.3: per-recipient fields.
    fields = [f"Final-Recipient: rfc822; {row.address}", f"Action: {action}", f"Status: {_status(row, action)}"]
    if row.mx_host:
        fields.append(f"Remote-MTA: dns; {row.mx_host}")
    if row.last_reply:
        fields.append(f"Diagnostic-Code: smtp; {' '.join(row.last_reply.split())}")
    fields.append(f"Last-Attempt-Date: {format_datetime(row.updated_at or timezone.now())}")
    return fields


def _status(row: OutboundRecipient, action: str) -> str:
    if row.state == OutboundRecipient.EXPIRED:
        return EXPIRED_STATUS
    token = row.last_reply.split(" ")[1] if row.last_reply.count(" ") >= 1 else ""
    parts = token.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return token
    return "4.0.0" if action == DELAYED else "5.0.0"


def _original_headers(original: bytes) -> bytes:
    end, _ = split_header(original)
    return original[:end].rstrip(b"\r\n") + b"\r\n"


def notify_sender(message: OutboundMessage, rows: Sequence[OutboundRecipient], action: str) -> None:
    """Send a DSN about `rows` to the message's sender: into a local INBOX, or queued when remote."""
    if not rows or not message.sender:
        return  # RFC 5321 §4.5.5: never send a DSN for a message with a null reverse path
    original = store.read_blob(message.blob)
    dsn = build_dsn(message, rows, action, original)
    try:
        domain = parse_address(message.sender).domain
    except AddressError:
        log.warning("outbound #%s: sender <%s> is malformed; DSN dropped", message.pk, message.sender)
        return
    from mailcore.delivery.queue import enqueue

    if is_hosted(domain):
        report = store.deliver(dsn, [message.sender])
        if not report.all_delivered:
            log.warning("outbound #%s: DSN to <%s> not stored: %s", message.pk, message.sender, report)
        if report.remote:  # the sender is an alias that forwards, or an SRS address of ours
            enqueue(dsn, "", report.remote)
        return
    enqueue(dsn, "", [message.sender])
