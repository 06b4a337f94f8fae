"""What an operator does to the queue (admin actions, commands, the purge job): retry, bounce, purge.

Only rows nobody is delivering right now are touched: waiting rows (queued,
deferred) and rows whose lease ran out. A row a live worker holds is left
alone; the worker's own result decides it (writes are guarded by the lease).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from mailcore.conf import conf
from mailcore.delivery import dsn
from mailcore.delivery.queue import WAITING_STATES
from mailcore.models import OutboundMessage, OutboundRecipient

log = logging.getLogger(__name__)

R = OutboundRecipient
# RFC 3463 §3.2 X.0.0 with a reply text that says who decided (shown in the DSN's Diagnostic-Code).
ADMIN_BOUNCE_REPLY = "550 5.0.0 returned to the sender by the mail administrator"
PURGE_BATCH = 1000  # messages deleted per statement, so one purge never holds a huge transaction


def _not_in_flight(message_ids: Iterable[int], now: dt.datetime) -> QuerySet[OutboundRecipient]:
    waiting = Q(state__in=(R.QUEUED, R.DEFERRED))
    abandoned = Q(state=R.SENDING, lease_expires_at__lt=now)
    return R.objects.filter(waiting | abandoned, message_id__in=list(message_ids))


def retry(message_ids: Iterable[int]) -> int:
    """Make the waiting recipients of these messages due now and wake a worker; returns how many rows."""
    ids = list(message_ids)
    count = _not_in_flight(ids, timezone.now()).update(next_attempt_at=timezone.now())
    from mailcore.delivery.wake import wake

    for message_id in ids:
        wake(message_id)
    return count


def bounce(message_ids: Iterable[int]) -> int:
    """Give up on the waiting recipients of these messages: bounced, with a DSN to each sender."""
    total = 0
    for message in OutboundMessage.objects.filter(pk__in=list(message_ids)):
        with transaction.atomic():
            rows = list(_not_in_flight([message.pk], timezone.now()).select_for_update())
            R.objects.filter(pk__in=[r.pk for r in rows]).update(
                state=R.BOUNCED, last_reply=ADMIN_BOUNCE_REPLY, lease_owner="", lease_expires_at=None,
            )
        for row in rows:
            row.state, row.last_reply = R.BOUNCED, ADMIN_BOUNCE_REPLY
        dsn.notify_sender(message, rows, dsn.FAILED)  # the sender learns of it, unless NOTIFY said otherwise
        log.info("outbound #%s: %d recipient(s) bounced by the administrator", message.pk, len(rows))
        total += len(rows)
    return total


def finished_before(cutoff: dt.datetime) -> QuerySet[OutboundMessage]:
    """Messages whose every recipient is final (delivered, bounced, expired) since before `cutoff`."""
    return (
        OutboundMessage.objects.exclude(recipients__state__in=WAITING_STATES)
        .annotate(last_change=Max("recipients__updated_at"))
        .filter(Q(last_change__lt=cutoff) | Q(last_change__isnull=True, created_at__lt=cutoff))
    )


def purge_finished(now: dt.datetime | None = None) -> int:
    """Delete finished messages older than MAIL_QUEUE_RETENTION (0: keep forever); returns how many.

    Their blobs become unreferenced by the queue and `gcblobs` collects them
    when no mailbox holds the same message.
    """
    if conf.queue_retention <= 0:
        return 0
    cutoff = (now or timezone.now()) - dt.timedelta(seconds=conf.queue_retention)
    purged = 0
    while True:
        ids = list(finished_before(cutoff).values_list("pk", flat=True)[:PURGE_BATCH])
        if not ids:
            break
        OutboundMessage.objects.filter(pk__in=ids).delete()
        purged += len(ids)
    if purged:
        log.info("purged %d finished outbound message(s) older than %ss", purged, conf.queue_retention)
    return purged
