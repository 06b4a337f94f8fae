"""What an ESP learns after it accepted a message, fed back to the queue and the sender (Anymail's tracking webhooks).

The anymail transport records a recipient as delivered when the ESP's API takes
the message (`esp.py`); the ESP's own bounce address then gets the remote
server's bounces, not our sender. The ESP reports them to its tracking webhook
(`/anymail/<esp>/tracking/`, Anymail's views), and Anymail sends the `tracking`
signal. An event saying the ESP gave up on a recipient (bounced, rejected,
failed) turns that recipient's row from delivered into bounced and sends the
sender a DSN (RFC 3464), as a bounce at send time would, in one transaction: a
failure answers the ESP with HTTP 500 and it calls again. Events about other
messages, repeated events and every other kind of event change nothing.

An event can come before the send's own result is written (the ESP's bounce
raced its API's answer, or the result waits for its batch): no delivered row has
the ESP's id yet. While a row for that recipient is still being sent, the event
raises `NotYetRecorded`, which the webhook answers with 503 and Retry-After
(`retry_later`): the ESP calls again, and by then the row has its id.

Only events from a webhook that authenticated its caller are believed: with
`WEBHOOK_SECRET` in `ANYMAIL` (HTTP basic auth), or from an ESP whose Anymail
view always checks a signature (Mailgun, Mandrill, ...). Anyone could post the rest.
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from anymail.signals import AnymailTrackingEvent, EventType
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.utils import timezone

from mailcore import logs
from mailcore.delivery import dsn
from mailcore.delivery.transport import ANYMAIL
from mailcore.models import DeliveryAttempt, OutboundRecipient

log = logging.getLogger(__name__)
R = OutboundRecipient

# Events that mean the ESP gave up on the recipient, and the RFC 3463 status used when the receiving
# server's reply, as the ESP passes it on, carries none: §3.1 X.0.0 other, §3.8 X.7.1 not authorized.
GAVE_UP = {EventType.BOUNCED: "5.0.0", EventType.REJECTED: "5.7.1", EventType.FAILED: "5.0.0"}
# How ESPs pass a receiving server's reply on: "smtp; 550 5.1.1 ...", "550-5.2.2 ...", "5.1.1 ..." (Mailgun).
_DIAGNOSTIC_TYPE = re.compile(r"smtp;\s*", re.IGNORECASE)  # RFC 3464 §2.3.6
_PERMANENT_CODE = re.compile(r"(5\d\d)(?:[ -]|$)")
_PERMANENT_STATUS = re.compile(r"5\.\d{1,3}\.\d{1,3}")  # RFC 3463 §2
MAX_DETAIL = 500
RETRY_AFTER_SECONDS = 60


class NotYetRecorded(Exception):
    """The event's recipient is still being sent: the ESP's id for it is not written yet."""


def on_tracking(sender: type[Any], event: AnymailTrackingEvent, esp_name: str, **_: Any) -> None:
    """Anymail's `tracking` signal: a late failure of a recipient we sent through `esp_name`."""
    if event.event_type not in GAVE_UP or not event.message_id or not event.recipient:
        return
    if not _authenticated(sender):
        log.warning("ignored a %s %s event: the webhook is not authenticated (set WEBHOOK_SECRET in ANYMAIL)",
                    esp_name, event.event_type)
        return
    reply = late_reply(esp_name, event.event_type, event.mta_response or "", event.description or "")
    record_late_failure(str(event.message_id), str(event.recipient), reply)


def _authenticated(view: type[Any]) -> bool:
    """Whether Anymail checked the caller: basic auth is configured, or the view checks a signature instead."""
    secret = getattr(settings, "ANYMAIL", {}).get("WEBHOOK_SECRET")
    return bool(secret) or not getattr(view, "warn_if_no_basic_auth", True)


def late_reply(esp_name: str, event_type: str, mta_response: str, description: str) -> str:
    """The reply recorded for the recipient and quoted in the DSN: with the receiving server's permanent code and
    enhanced status (RFC 3463) when the ESP passes them on, else 550 and the event's status."""
    said = " ".join(mta_response.split())[:MAX_DETAIL]
    detail = said or " ".join(description.split())[:MAX_DETAIL] or "no detail given"
    code, status = 550, GAVE_UP[event_type]
    rest = said[prefix.end():] if (prefix := _DIAGNOSTIC_TYPE.match(said)) else said
    if match := _PERMANENT_CODE.match(rest):
        code, rest = int(match[1]), rest[match.end():]
    first = rest.split(" ", 1)[0]
    if _PERMANENT_STATUS.fullmatch(first):
        status = first
    return f"{code} {status} {esp_name} reported the message {event_type} after accepting it: {detail}"


def record_late_failure(esp_message_id: str, address: str, reply: str) -> int:
    """Bounce the delivered recipients `address` of the ESP's message `esp_message_id`, with a DSN; how many."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            R.objects.select_for_update().select_related("message")
            .filter(esp_message_id=esp_message_id, address__iexact=address, state=R.DELIVERED)
        )
        if not rows:
            if _being_sent(address, now):
                raise NotYetRecorded(f"{address} is still being sent; ESP message {esp_message_id} not recorded yet")
            log.info("no delivered recipient %s of ESP message %s: event ignored", address, esp_message_id)
            return 0
        R.objects.filter(pk__in=[r.pk for r in rows]).update(state=R.BOUNCED, last_reply=reply, updated_at=now)
        DeliveryAttempt.objects.bulk_create([
            DeliveryAttempt(recipient_id=r.pk, message_id=r.message_id, address=r.address, attempted_at=now,
                            transport=ANYMAIL, mx_host=r.mx_host, reply=reply, outcome=R.BOUNCED)
            for r in rows
        ])
        for row in rows:
            row.state, row.last_reply, row.updated_at = R.BOUNCED, reply, now
            dsn.notify_sender(row.message, [row], dsn.FAILED)  # the sender learns of it, unless NOTIFY said otherwise
            logs.event(log, "delivery.late_failure", queue=row.message_id, sender=row.message.sender,
                       recipient=row.address, result=R.BOUNCED, reply=reply, host=row.mx_host or "-")
    return len(rows)


def _being_sent(address: str, now: Any) -> bool:
    """Whether a worker holds a row for `address` whose result it has not written yet."""
    return R.objects.filter(address__iexact=address, state=R.SENDING, lease_expires_at__gt=now).exists()


def retry_later(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """`view` (an Anymail webhook), answering 503 with Retry-After when an event came before its send's result."""
    @functools.wraps(view)  # keeps csrf_exempt: the ESPs post without a CSRF token
    def answering(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotYetRecorded as early:
            log.info("ESP event answered 503, to come again: %s", early)
            return HttpResponse(f"{early}\n", status=503, content_type="text/plain",
                                headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return answering


def webhook_urls() -> tuple[list[URLPattern], str]:
    """Anymail's webhook URLs (namespace "anymail"), each view wrapped in `retry_later`; for `include()`."""
    from anymail import urls

    wrapped = [URLPattern(p.pattern, retry_later(p.callback), p.default_args, p.name) for p in urls.urlpatterns]
    return wrapped, urls.app_name
