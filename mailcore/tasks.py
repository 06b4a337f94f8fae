"""Celery tasks (found by autodiscovery). They only carry wake-ups; the queue rows are the truth.

Tasks are idempotent: a task for a message whose rows are already leased or
delivered does nothing, so a duplicate or re-delivered task is harmless.
"""
from __future__ import annotations

import logging

from celery import shared_task
from django.db import close_old_connections, connection

from mailcore import importjobs
from mailcore.delivery import claims, operator, worker
from mailcore.delivery.wake import taken

log = logging.getLogger(__name__)


@shared_task(name="mailcore.tasks.deliver_message", ignore_result=True)
def deliver_message(message_id: int | None, domains: list[str] | None = None) -> int:
    """Deliver what is due of one outbound message, then other due mail to `domains` (default: its own).

    A wake-up for `domains` (mailcore.delivery.wake) is marked pending until this
    task starts: the marks go first, so whatever is queued meanwhile is claimed below.
    """
    if domains:
        taken(domains)
    if not connection.in_atomic_block:  # never under a caller's transaction (an eager call)
        close_old_connections()  # the kept connection: past CONN_MAX_AGE or broken -> closed; else pinged first
    return worker.deliver_message(message_id, domains)


@shared_task(name="mailcore.tasks.sweep_queue", ignore_result=True)
def sweep_queue() -> int:
    """Beat, every minute: one task per message that is due or whose lease expired (lost wake-ups)."""
    ids = claims.due_message_ids()
    for message_id in ids:
        deliver_message.delay(message_id)
    if ids:
        log.info("sweep woke %d outbound message(s)", len(ids))
    return len(ids)


@shared_task(name="mailcore.tasks.purge_queue", ignore_result=True)
def purge_queue() -> int:
    """Beat, hourly: delete finished queue rows older than MAIL_QUEUE_RETENTION."""
    return operator.purge_finished()


@shared_task(name="mailcore.tasks.run_import", ignore_result=True)
def run_import(job_id: int) -> str:
    """Run one queued import job (mailcore.importjobs); a job no longer queued is left alone."""
    if not connection.in_atomic_block:
        close_old_connections()
    return importjobs.run_job(job_id)


@shared_task(name="mailcore.tasks.sweep_imports", ignore_result=True)
def sweep_imports() -> int:
    """Beat, every minute: one task per queued import job (lost wake-ups; a duplicate finds it claimed)."""
    ids = importjobs.queued_job_ids()
    for job_id in ids:
        run_import.delay(job_id)
    return len(ids)
