"""The outbound queue's entry point: enqueue commits rows, then wakes a delivery worker.

The rows are the truth; the wake-up (a Celery task, or the in-process runner)
only makes delivery prompt. A lost wake-up delays mail until the periodic sweep.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from django.db import transaction
from django.utils import timezone

from mailcore.address import AddressError, parse_address
from mailcore.models import OutboundMessage, OutboundRecipient
from mailcore.store.messages import store_blob

log = logging.getLogger(__name__)

# Called with an OutboundMessage id and its recipients' domains after its rows commit. mailcore.delivery
# sets it to send a Celery task (or poke the in-process runner); until then the sweep finds the rows.
_wake_hooks: list[Callable[[int, list[str]], None]] = []


def on_enqueue(hook: Callable[[int, list[str]], None]) -> None:
    """Register a function to call, after commit, with each newly queued message's id and domains."""
    if hook not in _wake_hooks:
        _wake_hooks.append(hook)


def enqueue(raw: bytes, sender: str, recipients: Sequence[str], account_id: int | None = None) -> int:
    """Queue `raw` for remote delivery to `recipients`; durable when it returns. Returns the message id.

    Raises AddressError for a malformed recipient (nothing is queued then) and
    mailcore.store.StorageFailure when the blob cannot be written.
    """
    parsed = [parse_address(r) for r in recipients]
    if not parsed:
        raise AddressError("no recipients")
    data, digest = store_blob(raw)
    needs_utf8 = not sender.isascii() or any(not str(a).isascii() for a in parsed) or not _headers_ascii(data)
    now = timezone.now()
    with transaction.atomic():
        message = OutboundMessage.objects.create(
            blob=digest, size=len(data), sender=sender, account_id=account_id, smtputf8=needs_utf8
        )
        OutboundRecipient.objects.bulk_create(
            [OutboundRecipient(message=message, address=str(a), domain=a.domain, next_attempt_at=now) for a in parsed]
        )
        domains = list(dict.fromkeys(a.domain for a in parsed))
        transaction.on_commit(lambda: _wake(message.pk, domains))
    return message.pk


def _headers_ascii(data: bytes) -> bool:
    end = data.find(b"\r\n\r\n")
    return (data if end < 0 else data[:end]).isascii()


def _wake(message_id: int, domains: list[str]) -> None:
    for hook in _wake_hooks:
        try:
            hook(message_id, domains)
        except Exception:  # a failed wake-up only delays mail; the sweep re-sends it
            log.exception("wake-up for outbound message %s failed; the sweep will retry", message_id)


def referenced_blobs() -> set[str]:
    """Blobs the queue still needs (for orphan collection)."""
    return set(OutboundMessage.objects.values_list("blob", flat=True))


WAITING_STATES = (OutboundRecipient.QUEUED, OutboundRecipient.DEFERRED, OutboundRecipient.SENDING)


def queue_snapshot() -> tuple[dict[str, int], float]:
    """Waiting recipients per state (every waiting state present, 0 when empty), and the oldest one's age in seconds."""
    from django.db.models import Count, Min

    waiting = OutboundRecipient.objects.filter(state__in=WAITING_STATES)
    counts = dict.fromkeys(WAITING_STATES, 0)
    counts.update({row["state"]: row["n"] for row in waiting.values("state").annotate(n=Count("id"))})
    oldest = waiting.aggregate(oldest=Min("message__created_at"))["oldest"]
    return counts, (timezone.now() - oldest).total_seconds() if oldest else 0.0
