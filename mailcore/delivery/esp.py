"""The "anymail" transport: hand a queued message to an email service provider's HTTP API via django-anymail.

No Anymail HTTP backend accepts a raw RFC 5322 message, so the queued bytes are
taken apart into what an ESP API takes (From, recipients, Subject, the other
headers, text and HTML bodies, attachments) and the ESP builds its own MIME.
What survives and what does not is listed in docs/delivery.md ("Anymail"). Our
DKIM signature is not added: the ESP rebuilds the message and signs it itself.

Anymail's normalised results become our outcomes through one table; its
exceptions are sorted into "try later" and "never" the way SMTP replies are.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from email import encoders, policy
from email.message import EmailMessage as MIMEMessage
from email.mime.base import MIMEBase
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any
from urllib.parse import urlsplit

from anymail.exceptions import (
    AnymailAPIError,
    AnymailError,
    AnymailInvalidAddress,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from anymail.message import AnymailMessage
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import get_connection

from mailcore.conf import conf
from mailcore.delivery.outcome import DELIVERED, PERMANENT, TEMPORARY, DeliveryError, Outcome, permanent, temporary

log = logging.getLogger(__name__)

# Anymail's normalised recipient statuses (anymail.message.ANYMAIL_STATUSES) -> our outcome, with the
# SMTP-style reply we record and put in a DSN. "unknown" after an answer means the ESP did not take it
# for that recipient (Postmark's 422 for another recipient's address, say): try again later.
STATUS_OUTCOMES: dict[str, tuple[str, int, str, str]] = {
    "sent": (DELIVERED, 250, "2.0.0", "accepted by"),
    "queued": (DELIVERED, 250, "2.0.0", "queued by"),
    "scheduled": (DELIVERED, 250, "2.0.0", "scheduled by"),
    "rejected": (PERMANENT, 550, "5.7.1", "recipient rejected by"),  # RFC 3463 §3.8: delivery not authorized
    "invalid": (PERMANENT, 553, "5.1.3", "recipient address invalid for"),  # RFC 3463 §3.2: bad address syntax
    "bounced": (PERMANENT, 550, "5.1.1", "recipient bounced at"),
    "failed": (TEMPORARY, 451, "4.3.0", "sending failed at"),
    "deferred": (TEMPORARY, 451, "4.4.0", "delivery deferred by"),
    "unknown": (TEMPORARY, 451, "4.3.0", "no per-recipient result from"),
}
# HTTP answers worth trying again (the rest of 4xx means this request will never succeed).
RETRYABLE_HTTP = {408, 425, 429}
# 401/403: our token or account is wrong; the operator must fix it, the mail is not at fault.
OUR_CONFIGURATION_HTTP = {401, 403}
# Headers the ESP makes from the fields we pass, or writes itself (trace fields, our own DKIM signature).
STRUCTURAL_HEADERS = {
    "from", "to", "cc", "bcc", "subject", "mime-version", "content-type", "content-transfer-encoding",
    "content-disposition", "return-path", "received", "dkim-signature", "arc-seal", "arc-message-signature",
    "arc-authentication-results", "authentication-results",
}
MAX_ESP_TEXT = 300


class EspSession:
    """One Anymail backend connection for a delivery run (its HTTP session is reused across messages)."""

    def __init__(self) -> None:
        self.backend: Any = None
        self.name = ""
        self.host = ""

    def send(self, data: bytes, sender: str, rcpts: list[str]) -> dict[str, Outcome]:
        """Send `data` to `rcpts` through the ESP; one outcome per recipient, or DeliveryError for them all."""
        backend = self._open()
        message = build_message(data, sender, rcpts)
        message.connection = backend
        try:
            backend.send_messages([message])
        except AnymailError as err:
            raise self._error(err) from err
        return self._outcomes(message, rcpts)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def _open(self) -> Any:
        if self.backend is not None:
            return self.backend
        if not conf.anymail_backend:
            raise temporary("4.3.5", "transport anymail chosen but MAIL_ANYMAIL_BACKEND is not set")
        try:
            # ignore_recipient_status: a send where every recipient is refused is reported per recipient, not raised.
            backend = get_connection(conf.anymail_backend, ignore_recipient_status=True)
        except (ImportError, ImproperlyConfigured) as err:
            raise temporary("4.3.5", f"Anymail backend {conf.anymail_backend}: {err}") from err  # RFC 3463 §3.4
        backend.open()
        self.backend, self.name = backend, str(getattr(backend, "esp_name", "ESP"))
        self.host = urlsplit(str(getattr(backend, "api_url", ""))).netloc or self.name
        return backend

    def _outcomes(self, message: AnymailMessage, rcpts: list[str]) -> dict[str, Outcome]:
        status = message.anymail_status
        by_address = {address.lower(): result for address, result in status.recipients.items()}
        response = getattr(status, "esp_response", None)
        detail = _response_text(response)
        outcomes = {}
        for rcpt in rcpts:
            result = by_address.get(rcpt.lower())
            kind, code, enhanced, verb = STATUS_OUTCOMES.get(result.status if result else "unknown",
                                                             STATUS_OUTCOMES["unknown"])
            text = f"{verb} {self.name}"
            if result is not None and result.message_id:
                text += f" (id {result.message_id})"
            elif kind != DELIVERED and detail:
                text += f": {detail}"
            esp_id = str(result.message_id or "") if result is not None and kind == DELIVERED else ""
            outcomes[rcpt] = Outcome(kind, code, enhanced, text, self.host, esp_id)
        return outcomes

    def _error(self, err: AnymailError) -> DeliveryError:
        """Whole-request failures, sorted like SMTP replies: temporary (retry) or permanent (bounce)."""
        if isinstance(err, AnymailAPIError):
            return self._api_error(err)
        if isinstance(err, AnymailInvalidAddress):
            return permanent("5.1.3", f"{self.name}: {err}", self.host, code=553)
        if isinstance(err, (AnymailUnsupportedFeature, AnymailSerializationError)):
            # RFC 3463 §3.7: the message cannot be converted to what this ESP accepts; retrying cannot help.
            return permanent("5.6.0", f"{self.name} cannot carry this message: {err}", self.host, code=554)
        return temporary("4.3.0", f"{self.name}: {err}", self.host)

    def _api_error(self, err: AnymailAPIError) -> DeliveryError:
        status = err.status_code
        detail = _response_text(getattr(err, "response", None))
        if status is None:
            return temporary("4.4.1", f"{self.name} API unreachable: {_first_line(err)}", self.host)
        text = f"{self.name} API answered HTTP {status}" + (f": {detail}" if detail else "")
        if status >= 500 or status in RETRYABLE_HTTP:
            return temporary("4.3.0", text, self.host)
        if status in OUR_CONFIGURATION_HTTP:
            return temporary("4.7.0", text, self.host)
        return permanent("5.0.0", text, self.host, code=554)


def _response_text(response: Any) -> str:
    """The ESP's answer body, on one line and short, for the reply we record and the DSN."""
    if response is None:
        return ""
    try:
        text = str(response.text)
    except Exception:  # noqa: BLE001  (a body that cannot be decoded is no reason to lose the result)
        return ""
    return " ".join(text.split())[:MAX_ESP_TEXT]


def _first_line(err: Exception) -> str:
    return " ".join(str(err).split())[:MAX_ESP_TEXT]


# Taking the message apart -------------------------------------------------------


def build_message(data: bytes, sender: str, rcpts: list[str]) -> AnymailMessage:
    """The queued bytes as an AnymailMessage for the envelope recipients `rcpts` (From: else `sender`).

    Each recipient goes in To or Cc where the header names it, else in Bcc (RFC
    5322 §3.6.3), so the ESP shows what the author wrote for this transaction's
    recipients. Other headers pass through as extra headers, first occurrence each.
    """
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    header_to = _addr_specs(parsed, "to")
    header_cc = _addr_specs(parsed, "cc")
    to = [r for r in rcpts if r.lower() in header_to]
    cc = [r for r in rcpts if r.lower() in header_cc and r not in to]
    bcc = [r for r in rcpts if r not in to and r not in cc]
    message = AnymailMessage(
        subject=str(parsed.get("subject", "")), from_email=str(parsed.get("from") or sender),
        to=to, cc=cc, bcc=bcc, headers=_extra_headers(parsed),
    )
    _set_content(message, parsed)
    return message


def _addr_specs(parsed: MIMEMessage, name: str) -> set[str]:
    values = [str(v) for v in parsed.get_all(name, [])]
    return {addr.lower() for _, addr in getaddresses(values) if addr}


def _extra_headers(parsed: MIMEMessage) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in parsed.items():
        if name.lower() in STRUCTURAL_HEADERS or name.lower() in (n.lower() for n in headers):
            continue
        headers[name] = " ".join(str(value).split())
    return headers


def _set_content(message: AnymailMessage, parsed: MIMEMessage) -> None:
    """The first text/plain and text/html bodies become body and alternative; every other part an attachment."""
    text = html = None
    for part in _leaves(parsed):
        is_body = part.get_content_disposition() != "attachment" and not part.get_filename()
        if is_body and part.get_content_type() == "text/plain" and text is None:
            text = _text(part)
        elif is_body and part.get_content_type() == "text/html" and html is None:
            html = _text(part)
        else:
            message.attach(_attachment(part))
    if text is None and html is not None:
        message.body, message.content_subtype = html, "html"
        return
    message.body = text or ""
    if html is not None:
        message.attach_alternative(html, "text/html")


def _leaves(part: MIMEMessage) -> Iterator[MIMEMessage]:
    """Non-multipart parts in order; an attached message/rfc822 stays one part (not walked into)."""
    if part.get_content_maintype() == "multipart":
        for child in part.iter_parts():
            yield from _leaves(child)  # type: ignore[arg-type]  # iter_parts yields EmailMessage parts
    else:
        yield part


def _text(part: MIMEMessage) -> str:
    """A text body decoded, with "\n" line ends (the ESP writes CRLF on the wire, RFC 5322 §2.3)."""
    try:
        text = str(part.get_content())
    except (LookupError, UnicodeDecodeError):  # an unknown or lying charset
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return text.replace("\r\n", "\n")


def _attachment(part: MIMEMessage) -> MIMEBase:
    """One part as a MIMEBase Anymail reads name, type, Content-ID and disposition (inline or not) from."""
    maintype, subtype = part.get_content_type().split("/", 1)
    if part.get_content_maintype() == "message":
        payload = b"".join(p.as_bytes(policy=policy.SMTP) for p in part.iter_parts())  # CRLF, RFC 5322 §2.1
    else:
        decoded = part.get_payload(decode=True)
        payload = decoded if isinstance(decoded, bytes) else b""
    attachment = MIMEBase(maintype, subtype)
    attachment.set_payload(payload)
    encoders.encode_base64(attachment)
    disposition = part.get_content_disposition() or ("inline" if part["content-id"] else "attachment")
    filename = part.get_filename()
    if filename:
        attachment.add_header("Content-Disposition", disposition, filename=filename)
    else:
        attachment.add_header("Content-Disposition", disposition)
    if part["content-id"]:
        attachment["Content-ID"] = str(part["content-id"])
    return attachment
