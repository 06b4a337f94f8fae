"""Undo send: messages sent from the webmail wait here for a few seconds before submission.

`hold` commits a PendingSend row (the message and its envelope) and nothing else:
no local delivery, no outbound queue row. `release_due` takes each row whose
window has passed and, in
ONE transaction, deletes it and hands the message to
`mailcore.smtp.submission.submit` (local delivery, queue, copy in Sent). A crash
before that COMMIT leaves the row, which the next run submits; a crash after it
leaves no row. `undo` deletes a row whose window has not passed; a row is taken
either by `undo` or by `release_due`, never both (each deletes it and checks the
count; on PostgreSQL the release locks it first with FOR UPDATE SKIP LOCKED).

Who calls `release_due` (the one release): runmail's outbox job every
RELEASE_INTERVAL seconds, and with a Celery broker (CELERY_BROKER_URL) also the
task `webmail.tasks.release_held_mail`, sent on commit with the row's due time as
its ETA and run by beat every few seconds to catch a lost task. Both may run at
once: a row is released by whichever takes it first.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from mailcore import store
from mailcore.conf import conf
from mailcore.smtp.replies import SMTPError
from mailcore.smtp.submission import submit
from webmail.models import PendingSend

log = logging.getLogger(__name__)

RELEASE_INTERVAL = 1.0  # seconds between runs of the outbox job
RELEASE_BATCH = 50  # rows released per transaction run
MAX_SUMMARY_CHARS = 300


def hold(account_id: int, sender: str, recipients: list[str], message: bytes, draft: bytes) -> PendingSend:
    """Keep the message for the undo window; durable when this returns."""
    due = timezone.now() + dt.timedelta(seconds=conf.webmail_undo_send_seconds)
    summary = ", ".join(recipients)[:MAX_SUMMARY_CHARS]
    with transaction.atomic():
        row = PendingSend.objects.create(account_id=account_id, sender=sender, recipients=recipients,
                                         message=message, draft=draft, summary=summary, due_at=due)
        transaction.on_commit(lambda: schedule_release(row.pk, due))
    return row


def schedule_release(pending_id: int, due: dt.datetime) -> None:
    """With a Celery broker: a release task for when the window passes (beat catches a lost one)."""
    if not conf.celery_broker_url:
        return  # runmail's outbox job releases it
    from webmail.tasks import release_held_mail

    try:
        release_held_mail.apply_async(args=[pending_id], eta=due)
    except Exception:  # a lost wake-up only delays the message until beat's next sweep
        log.exception("could not schedule the release of held message %s; beat's sweep will release it", pending_id)


def waiting(pending_id: int) -> dt.datetime | None:
    """The due time of a held message whose window has not passed yet (None once released, undone or due)."""
    row = PendingSend.objects.filter(pk=pending_id, due_at__gt=timezone.now()).only("due_at").first()
    return row.due_at if row else None


def pending(account_id: int, pending_id: int) -> PendingSend | None:
    return PendingSend.objects.filter(pk=pending_id, account_id=account_id).first()


def undo(account_id: int, pending_id: int) -> int | None:
    """Stop a held message if its window has not passed and put its draft in Drafts, in one transaction.

    The UID of the draft, or None when it is too late (or not this account's message).
    """
    with transaction.atomic():
        row = PendingSend.objects.filter(pk=pending_id, account_id=account_id, due_at__gt=timezone.now()).first()
        if row is None:
            return None
        deleted, _kinds = PendingSend.objects.filter(pk=row.pk, due_at__gt=timezone.now()).delete()
        if not deleted:
            return None
        return _back_to_drafts(account_id, bytes(row.draft))


def release_due(limit: int = RELEASE_BATCH) -> int:
    """Submit every held message whose window has passed; how many were taken."""
    taken = 0
    while taken < limit and _release_one():
        taken += 1
    return taken


def _release_one() -> bool:
    with transaction.atomic():
        row = (PendingSend.objects.select_for_update(skip_locked=True)
               .filter(due_at__lte=timezone.now()).order_by("due_at").first())
        if row is None:
            return False
        deleted, _kinds = PendingSend.objects.filter(pk=row.pk).delete()
        if not deleted:
            return True  # taken by another runner in the meantime
        try:
            with transaction.atomic():
                result = submit(row.account_id, row.sender, row.recipients, bytes(row.message), save_to_sent=True)
            log.info("webmail released %s account=%s", result.message_id, row.account_id)
        except SMTPError as err:
            # Refused now (a recipient left, a mailbox is full): nothing is sent; the user finds it in Drafts.
            log.warning("webmail held message of account %s refused at release: %s", row.account_id, err.reply)
            _back_to_drafts(row.account_id, bytes(row.draft))
    return True


def _back_to_drafts(account_id: int, draft: bytes) -> int:
    drafts = store.folder_by_special_use(account_id, "\\Drafts")
    return store.append(drafts, draft, flags=["\\Draft", "\\Seen"]).uid


# runmail's background job ---------------------------------------------------------


def _release_in_thread() -> int:
    close_old_connections()
    try:
        return release_due()
    finally:
        connections.close_all()


async def outbox_runner() -> None:
    """Release held webmail messages when their undo window passes, until cancelled."""
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(1, thread_name_prefix="webmail-outbox")
    log.info("webmail outbox job started (undo window %ss)", conf.webmail_undo_send_seconds)
    try:
        while True:
            try:
                await loop.run_in_executor(executor, _release_in_thread)
            except Exception:  # a database hiccup must not end the job; the rows wait for the next run
                log.exception("webmail outbox run failed")
            await asyncio.sleep(RELEASE_INTERVAL)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
