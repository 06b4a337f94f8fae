"""A Celery queue of a test run's own, so that tasks sent by tests never reach real workers' queues."""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def private_celery_queue(prefix: str) -> Iterator[str]:
    """Send tasks to a fresh queue named `prefix-<random>` while inside; delete it on the broker after."""
    from config.celery import app

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    previous, app.conf.task_default_queue = app.conf.task_default_queue, name
    try:
        yield name
    finally:
        app.conf.task_default_queue = previous
        if app.conf.broker_url and not app.conf.task_always_eager:
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(name)
