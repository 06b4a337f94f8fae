"""The outbound queue's entry point: enqueue commits rows, then wakes a delivery worker.

The rows are the truth; the wake-up (a Celery task, or the in-process runner)
only makes delivery prompt. A lost wake-up delays mail until the periodic sweep.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import Field, Model
from django.utils import timezone

from mailcore.address import AddressError, parse_address
from mailcore.dsnparams import NOTHING_ASKED, Request
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


def enqueue(raw: bytes, sender: str, recipients: Sequence[str], account_id: int | None = None,
            request: Request = NOTHING_ASKED) -> int:
    """Queue `raw` for remote delivery to `recipients`; durable when it returns. Returns the message id.

    `request` is what the sender asked of delivery reports (RFC 3461), by
    recipient as given. Raises AddressError for a malformed recipient (nothing is
    queued then) and mailcore.store.StorageFailure when the blob cannot be written.
    """
    parsed = [parse_address(r) for r in recipients]
    if not parsed:
        raise AddressError("no recipients")
    data, digest = store_blob(raw)
    needs_utf8 = not sender.isascii() or any(not str(a).isascii() for a in parsed) or not _headers_ascii(data)
    domains = list(dict.fromkeys(a.domain for a in parsed))
    # No savepoint of its own: it runs whole in its caller's transaction (the group commit's per-call savepoint).
    with transaction.atomic(savepoint=False):
        message = {"blob": digest, "size": len(data), "sender": sender, "account": account_id,
                   "smtputf8": needs_utf8, "ret": request.ret, "envid": request.envid}
        asked = [request.of(r) for r in recipients]
        rows = [(str(a), a.domain, wants.notify, wants.orcpt) for a, wants in zip(parsed, asked, strict=True)]
        message_id = _insert(message, rows, timezone.now())
        transaction.on_commit(lambda: _wake(message_id, domains))
    return message_id


# Plain SQL, the same rows the ORM wrote (values converted by the fields themselves): on PostgreSQL one
# statement for the message and its recipients (a data-modifying WITH), on SQLite two. In a group commit
# every statement is a round trip made while the other callers wait.
_MESSAGE_FIELDS = ("blob", "size", "sender", "account", "smtputf8", "ret", "envid", "created_at")
_RECIPIENT_FIELDS = ("state", "attempts", "next_attempt_at", "lease_owner", "mx_host", "last_reply",
                     "delay_notified", "esp_message_id", "created_at", "updated_at")


def _insert(message: dict[str, object], recipients: list[tuple[str, str, str, str]], now: dt.datetime) -> int:
    """INSERT the message row and one row per (address, domain, notify, orcpt); returns the message id."""
    quote = connection.ops.quote_name
    m_fields = [_field(OutboundMessage, name) for name in _MESSAGE_FIELDS]
    m_params = [f.get_db_prep_save({**message, "created_at": now}[f.name], connection) for f in m_fields]
    m_columns = ", ".join(quote(str(f.column)) for f in m_fields)
    m_insert = (f"INSERT INTO {quote(OutboundMessage._meta.db_table)} ({m_columns}) "
                f"VALUES ({', '.join(['%s'] * len(m_fields))}) RETURNING id")
    constant = {"state": OutboundRecipient.QUEUED, "attempts": 0, "next_attempt_at": now, "lease_owner": "",
                "mx_host": "", "last_reply": "", "delay_notified": False, "esp_message_id": "", "created_at": now,
                "updated_at": now}
    r_fields = [_field(OutboundRecipient, name) for name in _RECIPIENT_FIELDS]
    r_params = [f.get_db_prep_save(constant[f.name], connection) for f in r_fields]
    r_columns = "message_id, address, domain, notify, orcpt, lease_expires_at, " + ", ".join(
        quote(str(f.column)) for f in r_fields)
    r_table = quote(OutboundRecipient._meta.db_table)
    marks = ", ".join(["%s"] * len(r_fields))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            values = ", ".join(["(%s, %s, %s, %s)"] * len(recipients))
            cursor.execute(
                f"WITH m AS ({m_insert}) INSERT INTO {r_table} ({r_columns}) "
                f"SELECT m.id, v.address, v.domain, v.notify, v.orcpt, NULL, {marks} "
                f"FROM m CROSS JOIN (VALUES {values}) AS v(address, domain, notify, orcpt) RETURNING message_id",
                m_params + r_params + [value for row in recipients for value in row],
            )
            return int(cursor.fetchone()[0])
        cursor.execute(m_insert, m_params)
        message_id = int(cursor.fetchone()[0])
        rows = ", ".join([f"(%s, %s, %s, %s, %s, NULL, {marks})"] * len(recipients))
        cursor.execute(f"INSERT INTO {r_table} ({r_columns}) VALUES {rows}",
                       [v for row in recipients for v in (message_id, *row, *r_params)])
        return message_id


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    return cast("Field[Any, Any]", model._meta.get_field(name))


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
