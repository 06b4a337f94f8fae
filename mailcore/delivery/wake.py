"""Waking a worker after enqueue: a Celery task when a broker is configured, else the in-process runner."""
from __future__ import annotations

from mailcore.conf import conf
from mailcore.delivery import runner


def wake(message_id: int) -> None:
    if conf.celery_broker_url:
        from mailcore.tasks import deliver_message

        deliver_message.delay(message_id)
    else:
        runner.poke()
