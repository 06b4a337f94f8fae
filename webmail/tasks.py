"""Celery tasks of the webmail (found by autodiscovery): the undo-send release.

They only carry wake-ups; the PendingSend rows are the truth and
`webmail.outbox.release_due` is the one release, shared with runmail's outbox job.
"""
from __future__ import annotations

from celery import shared_task
from django.db import close_old_connections, connection

from webmail import outbox


@shared_task(name="webmail.tasks.release_held_mail", ignore_result=True)
def release_held_mail(pending_id: int | None = None) -> int:
    """Release every held message whose undo window has passed; how many were released.

    Sent by `outbox.hold` for one message (ETA: its due time) and by beat without an id, every
    few seconds, for any whose task was lost. A task that arrives early (clocks of web and worker
    apart) schedules itself again for the message's due time.
    """
    if not connection.in_atomic_block:  # never under a caller's transaction (an eager call)
        close_old_connections()
    released = outbox.release_due()
    if pending_id is not None:
        due = outbox.waiting(pending_id)
        if due is not None:
            outbox.schedule_release(pending_id, due)
    return released
