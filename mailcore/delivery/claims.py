"""The queue's state machine over OutboundRecipient rows: claim with a lease, record results, back off.

Claiming takes a write lock for the whole select-then-update: on PostgreSQL
`SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent workers take disjoint rows
without waiting; on SQLite the settings make every transaction IMMEDIATE, so
claimers queue on the database's write lock and each sees the other's leases.
A lease that expires (a killed worker) makes its rows due again.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar, cast

from django.db import InterfaceError, OperationalError, connection
from django.db.models import Field, Q
from django.utils import timezone

from mailcore.conf import conf
from mailcore.delivery.outcome import DELIVERED, PERMANENT, Outcome
from mailcore.models import DeliveryAttempt, OutboundMessage, OutboundRecipient
from mailcore.store import sql

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
R = OutboundRecipient
# How long a claim holds its rows: longer than one transaction of a usual message can take at most
# (`client.longest_transaction`: 20 minutes, and the time its data takes at 10,000 octets a second).
# A run extends the lease of the rows it is about to send (writing first the results it holds) when it
# would run out before that transaction's longest possible end: a long batch, a large message.
LEASE_SECONDS = 30 * 60
CLAIM_BATCH = 200
RETRY_JITTER = 0.2  # ±20% so retries of many messages do not arrive together
FINAL_STATES = (R.DELIVERED, R.BOUNCED, R.EXPIRED)


def _due(now: dt.datetime) -> Q:
    waiting = Q(state__in=(R.QUEUED, R.DEFERRED), next_attempt_at__lte=now)
    abandoned = Q(state=R.SENDING, lease_expires_at__lt=now)
    return waiting | abandoned


@contextlib.contextmanager
def _bookkeeping() -> Iterator[None]:
    """A transaction for lease and result writes, committed without waiting for the disk.

    Only a database crash can lose such a commit, and losing one costs a
    duplicate at worst, never a message: a lost claim makes the row due again,
    a lost result after the receiver's 250 re-sends it (the window a killed
    worker has anyway). Enqueueing, the promise to the sender, stays fully durable.
    """
    with sql.relaxed_transaction():
        yield


def claim(owner: str, *, message_id: int | None = None, domain: str | None = None,
          domains: Sequence[str] = (), limit: int = CLAIM_BATCH) -> list[OutboundRecipient]:
    """Lease up to `limit` due rows to `owner`: of one message and/or of the given domain(s) (either, when both)."""
    now = timezone.now()
    wanted = list(domains) + ([domain] if domain is not None else [])
    with _bookkeeping():
        rows = R.objects.select_for_update(skip_locked=True).filter(_due(now))
        if message_id is not None and wanted:
            rows = rows.filter(Q(message_id=message_id) | Q(domain__in=wanted))
        elif message_id is not None:
            rows = rows.filter(message_id=message_id)
        elif wanted:
            rows = rows.filter(domain__in=wanted)
        ids = list(rows.order_by("next_attempt_at", "id").values_list("id", flat=True)[:limit])
        if ids:
            R.objects.filter(id__in=ids).update(
                state=R.SENDING, lease_owner=owner, lease_expires_at=now + dt.timedelta(seconds=LEASE_SECONDS)
            )
    if not ids:
        return []
    return list(R.objects.filter(id__in=ids, lease_owner=owner).select_related("message").order_by("message_id", "id"))


def extend_lease(owner: str, rows: Sequence[OutboundRecipient], until: dt.datetime) -> list[OutboundRecipient]:
    """Hold `rows` until `until`; returns those still leased to `owner` (a row whose lease ran out and that
    another run claimed is left to it, and must not be sent here)."""
    ids = [row.pk for row in rows]
    with _bookkeeping():
        R.objects.filter(pk__in=ids, lease_owner=owner, state=R.SENDING).update(lease_expires_at=until)
        ours = _still_leased(ids, owner)
    held = [row for row in rows if row.pk in ours]
    for row in held:
        row.lease_expires_at = until
    return held


def next_due_domain() -> str | None:
    """The domain of the row that has waited longest among those due now."""
    due = R.objects.filter(_due(timezone.now())).order_by("next_attempt_at", "id")
    return due.values_list("domain", flat=True).first()


def due_message_ids(limit: int = 10_000) -> list[int]:
    """Messages with a row due now or an expired lease (what the sweep wakes)."""
    ids = R.objects.filter(_due(timezone.now())).order_by("message_id").values_list("message_id", flat=True).distinct()
    return list(ids[:limit])


def next_due_at() -> dt.datetime | None:
    """When the next waiting row becomes due (for the in-process runner's sleep)."""
    return R.objects.filter(state__in=(R.QUEUED, R.DEFERRED)).order_by("next_attempt_at").values_list(
        "next_attempt_at", flat=True
    ).first()


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempts` (1-based): the schedule, the last entry repeating, with jitter."""
    schedule = conf.retry_schedule
    base = schedule[min(attempts, len(schedule)) - 1]
    return base * (rng or random.Random()).uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)


def is_expired(message: OutboundMessage, now: dt.datetime) -> bool:
    return (now - message.created_at).total_seconds() >= conf.queue_lifetime


def needs_delay_warning(row: OutboundRecipient, now: dt.datetime) -> bool:
    if row.delay_notified or not row.message.sender:
        return False
    return (now - row.message.created_at).total_seconds() >= conf.delay_warning


def reconnecting(fn: Callable[P, T]) -> Callable[P, T]:
    """Run `fn` again on a fresh database connection when the first one was dropped.

    A result arrives after the receiver's reply: losing it to a dropped
    connection (database restart, failover, idle kill) would leave the row
    leased and the mail sent twice after the lease expires. Only outside a
    transaction, and once: these writes are idempotent (guarded by the lease).
    """
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (InterfaceError, OperationalError) as err:
            if connection.in_atomic_block:
                raise
            log.warning("database connection lost in %s (%s); retrying on a new one", fn.__name__, err)
            connection.close()
            return fn(*args, **kwargs)
    return wrapper


@dataclasses.dataclass
class Result:
    """One recipient's outcome from one attempt, to be recorded by `record_many`."""

    row: OutboundRecipient
    outcome: Outcome
    transport: str = ""


@reconnecting
def record_many(results: Sequence[Result], owner: str) -> list[str]:
    """Store attempts' outcomes and history rows in one transaction; the rows' new states, in order.

    Only rows still leased to `owner` are written (a row whose lease ran out and
    was claimed by another worker is left to it: its state is returned as sending).
    Plain SQL: one UPDATE per row sent as one batch (psycopg pipelines
    `executemany`), and one multi-row INSERT of the history.
    """
    if not results:
        return []
    now = timezone.now()
    changes = [_result_fields(r, now) for r in results]
    with _bookkeeping():
        ours = _still_leased([r.row.pk for r in results], owner)
        written = [(r, f) for r, f in zip(results, changes, strict=True) if r.row.pk in ours]
        _update_results(written, owner, now)
        DeliveryAttempt.objects.bulk_create([
            DeliveryAttempt(
                recipient_id=r.row.pk, message_id=r.row.message_id, address=r.row.address, attempted_at=now,
                transport=r.transport, mx_host=r.outcome.host[:255], reply=r.outcome.reply[:2000],
                outcome=str(f["state"]),
            )
            for r, f in written
        ])
    states = []
    for result, fields in zip(results, changes, strict=True):
        for name, value in fields.items():
            setattr(result.row, name, value)
        states.append(str(fields["state"]) if result.row.pk in ours else R.SENDING)
    return states


def _result_fields(result: Result, now: dt.datetime) -> dict[str, object]:
    row, outcome = result.row, result.outcome
    fields: dict[str, object] = {
        "attempts": row.attempts + 1, "last_reply": outcome.reply[:2000], "mx_host": outcome.host[:255],
        "esp_message_id": outcome.esp_id[:255], "lease_owner": "", "lease_expires_at": None,
        "next_attempt_at": row.next_attempt_at, "updated_at": now,
    }
    if outcome.kind == DELIVERED:
        fields["state"] = R.DELIVERED
    elif outcome.kind == PERMANENT:
        fields["state"] = R.BOUNCED
    elif is_expired(row.message, now):
        fields["state"] = R.EXPIRED
    else:
        fields["state"] = R.DEFERRED
        fields["next_attempt_at"] = now + dt.timedelta(seconds=retry_delay(row.attempts + 1))
    return fields


def _still_leased(ids: list[int], owner: str) -> set[int]:
    """Which of `ids` `owner` still holds, locked until the commit (PostgreSQL; SQLite's lock is the whole database)."""
    rows = R.objects.filter(pk__in=ids, lease_owner=owner)
    if connection.features.has_select_for_update:
        rows = rows.select_for_update()
    return set(rows.values_list("pk", flat=True))


_RESULT_COLUMNS = ("attempts", "last_reply", "mx_host", "esp_message_id", "lease_owner", "lease_expires_at",
                   "next_attempt_at", "state", "updated_at")


def _update_results(written: list[tuple[Result, dict[str, object]]], owner: str, now: dt.datetime) -> None:
    if not written:
        return
    fields = [cast("Field[Any, Any]", R._meta.get_field(name)) for name in _RESULT_COLUMNS]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(str(f.column))} = %s" for f in fields)
    statement = f"UPDATE {quote(R._meta.db_table)} SET {assignments} WHERE id = %s AND lease_owner = %s"
    params = [
        [f.get_db_prep_save(values[f.name], connection) for f in fields] + [result.row.pk, owner]
        for result, values in written
    ]
    with connection.cursor() as cursor:
        cursor.executemany(statement, params)


@reconnecting
def mark_delay_notified(rows: Iterable[OutboundRecipient]) -> None:
    R.objects.filter(pk__in=[r.pk for r in rows]).update(delay_notified=True)


def retry_now() -> int:
    """Make every deferred row due at once (flushq); returns how many."""
    return R.objects.filter(state=R.DEFERRED).update(next_attempt_at=timezone.now())
