"""Figures for the admin dashboard, read from the database: mail in and out per hour, and the queue.

Mail in: Message rows by internal date (the time the store accepted them),
leaving out Sent and Drafts copies. Mail out: outbound recipients by the time
they were queued. The queue at an hour boundary: recipients queued by then that
had not yet reached a final state (a final row's `updated_at` is when it left).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from mailcore.delivery.queue import WAITING_STATES
from mailcore.models import Message, OutboundRecipient

HOURS = 24
NOT_RECEIVED = ("\\Sent", "\\Drafts")


@dataclass
class Traffic:
    labels: list[str]  # "HH:00" UTC of each hour, oldest first
    received: list[int]
    sent: list[int]
    queue: list[int]  # waiting recipients at the end of each hour


def _hours(now: dt.datetime) -> list[dt.datetime]:
    current = now.replace(minute=0, second=0, microsecond=0)
    return [current - dt.timedelta(hours=n) for n in range(HOURS - 1, -1, -1)]


def _per_hour(rows: QuerySet[Any], field: str, starts: list[dt.datetime]) -> list[int]:
    """Rows counted per hour of `field` (the database groups them), one figure for each of `starts`."""
    grouped = rows.annotate(hour=TruncHour(field, tzinfo=dt.UTC)).values("hour").annotate(n=Count("id")).order_by()
    counts = {row["hour"].astimezone(dt.UTC): row["n"] for row in grouped}
    return [counts.get(start, 0) for start in starts]


def traffic(now: dt.datetime | None = None) -> Traffic:
    now = now or timezone.now()
    starts = _hours(now)
    since = starts[0]
    received = _per_hour(
        Message.objects.filter(internal_date__gte=since, internal_date__lte=now)
        .exclude(mailbox__special_use__in=NOT_RECEIVED),
        "internal_date", starts,
    )
    sent = _per_hour(OutboundRecipient.objects.filter(created_at__gte=since, created_at__lte=now), "created_at", starts)
    queue = [_waiting_at(min(start + dt.timedelta(hours=1), now)) for start in starts]
    return Traffic([s.strftime("%H:00") for s in starts], received, sent, queue)


def _waiting_at(moment: dt.datetime) -> int:
    left_later = Q(state__in=WAITING_STATES) | Q(updated_at__gt=moment)
    return OutboundRecipient.objects.filter(left_later, created_at__lte=moment).count()
