"""Connections kept between delivery runs (mailcore/delivery/pool.py): reuse, and recovery when the server hung up."""
from __future__ import annotations

import time

from mailcore.delivery import pool, queue, worker
from mailcore.models import OutboundRecipient
from tests.support.smtpreceiver import SMTPReceiver

MESSAGE = b"From: alice@example.test\r\nSubject: pooled\r\n\r\nbody\r\n"
SERVER_IDLE_TIMEOUT = 0.5  # seconds; the receiver hangs up on an idle client after this


def test_separate_runs_share_one_connection_to_the_same_destination(remote):
    first = queue.enqueue(MESSAGE, "alice@example.test", ["one@remote.test"])
    assert worker.deliver_message(first) == 1
    second = queue.enqueue(MESSAGE, "alice@example.test", ["two@remote.test"])
    assert worker.deliver_message(second) == 1  # a second run, as a second Celery task would be
    assert [m.recipients for m in remote.messages] == [["one@remote.test"], ["two@remote.test"]]
    assert remote.sessions == 1
    pool.close_idle(0)


def test_a_pooled_connection_the_receiver_closed_is_replaced_and_the_mail_delivered(remote, settings):
    impatient = SMTPReceiver()
    impatient.controller.SMTP_kwargs["timeout"] = SERVER_IDLE_TIMEOUT
    impatient.start()
    settings.MAIL_OUTBOUND_PORT = impatient.port
    try:
        first = queue.enqueue(MESSAGE, "alice@example.test", ["one@remote.test"])
        assert worker.deliver_message(first) == 1
        time.sleep(SERVER_IDLE_TIMEOUT * 3)  # the receiver says 421 and closes; the pool does not know yet
        second = queue.enqueue(MESSAGE, "alice@example.test", ["two@remote.test"])
        assert worker.deliver_message(second) == 1
        assert [m.recipients for m in impatient.messages] == [["one@remote.test"], ["two@remote.test"]]
        assert impatient.sessions == 2
        assert OutboundRecipient.objects.get(message_id=second).attempts == 1  # replaced within the attempt
    finally:
        pool.close_idle(0)
        impatient.stop()


def test_idle_connections_are_closed_after_the_idle_limit(remote):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["one@remote.test"])
    worker.deliver_message(message_id)
    assert pool.close_idle(pool.MAX_IDLE_SECONDS) == 0  # fresh: kept
    assert pool.close_idle(0) == 1
    assert pool.checkout(f"mx:remote.test:{remote.port}") is None
