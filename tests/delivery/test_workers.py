"""Claiming, leases and wake-ups: concurrent workers, the sweep, the in-process runner, a real Celery worker."""
from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.utils import timezone

from mailcore.delivery import claims, queue, runner, worker
from mailcore.models import OutboundRecipient
from tests.support import celery_worker
from tests.support.dnsserver import DNSServer
from tests.support.smtpreceiver import SMTPReceiver
from tests.support.waiting import wait_for

MESSAGE = b"From: alice@example.test\r\nSubject: load\r\n\r\nbody\r\n"
ROOT = Path(__file__).resolve().parents[2]


def in_thread(fn, *args):
    try:
        return fn(*args)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_the_same_messages_deliver_each_recipient_once(remote):
    ids = [queue.enqueue(MESSAGE, "alice@example.test", [f"u{m}-{n}@remote.test" for n in range(3)]) for m in range(8)]
    threads = [threading.Thread(target=in_thread, args=(worker.deliver_message, i)) for i in ids for _ in range(2)]
    threads += [threading.Thread(target=in_thread, args=(worker.deliver_due,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    delivered = Counter(r for m in remote.messages for r in m.recipients)
    assert len(delivered) == 24 and set(delivered.values()) == {1}
    assert set(OutboundRecipient.objects.values_list("state", flat=True)) == {"delivered"}


def test_rows_leased_by_a_live_worker_are_not_claimed_again(remote):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    assert len(claims.claim("worker-a", message_id=message_id)) == 1
    assert claims.claim("worker-b", message_id=message_id) == []
    assert worker.deliver_message(message_id) == 0 and remote.messages == []


def test_rows_of_a_killed_worker_are_delivered_after_the_lease_expires(remote):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    claims.claim("killed-worker", message_id=message_id)
    assert claims.due_message_ids() == []  # leased: the sweep leaves it alone
    OutboundRecipient.objects.update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert claims.due_message_ids() == [message_id]
    assert worker.deliver_message(message_id) == 1
    assert [r.state for r in OutboundRecipient.objects.all()] == ["delivered"] and len(remote.messages) == 1


@pytest.mark.skipif(bool(django_settings.CELERY_BROKER_URL), reason="with a broker the sweep sends real tasks")
def test_a_lost_wake_up_is_recovered_by_the_sweep(remote):
    from mailcore.tasks import sweep_queue

    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])  # no on_commit: wake-up lost
    assert remote.messages == []
    assert sweep_queue() == 1 and len(remote.messages) == 1
    assert OutboundRecipient.objects.get(message_id=message_id).state == "delivered"


@pytest.mark.django_db(transaction=True)
def test_in_process_runner_delivers_on_enqueue_without_a_broker(remote, settings):
    settings.CELERY_BROKER_URL = ""

    async def scenario() -> None:
        job = asyncio.create_task(runner.delivery_runner())
        await asyncio.sleep(0.2)  # the runner is idle, waiting for a wake-up
        await asyncio.to_thread(in_thread, queue.enqueue, MESSAGE, "alice@example.test", ["bob@remote.test"])
        try:
            for _ in range(200):
                if remote.messages:
                    break
                await asyncio.sleep(0.05)
        finally:
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)

    started = time.monotonic()
    asyncio.run(scenario())
    assert len(remote.messages) == 1
    assert time.monotonic() - started < runner.SWEEP_INTERVAL  # woken by enqueue, not by the minute sweep


def _worker_env(settings, blob_dir: Path, dns_server: DNSServer, receiver: SMTPReceiver, queue_name: str) -> dict:
    return celery_worker.worker_environment(
        blob_dir, queue_name, MAIL_DNS_NAMESERVERS=dns_server.nameserver, MAIL_DNS_TIMEOUT="0.5",
        MAIL_ALLOW_PRIVATE_MX="1", MAIL_OUTBOUND_PORT=str(receiver.port), MAIL_HOSTNAME="mail.example.test",
    )


@pytest.mark.slow
@pytest.mark.skipif(not django_settings.CELERY_BROKER_URL, reason="needs CELERY_BROKER_URL (CI sets Redis)")
@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_delivers_queued_mail(remote, settings, blob_dir, dns_server):
    from config.celery import app
    from mailcore.tasks import sweep_queue

    queue_name = app.conf.task_default_queue
    env = _worker_env(settings, blob_dir, dns_server, remote, queue_name)
    process = subprocess.Popen(celery_worker.worker_command(queue_name), cwd=ROOT, env=env)
    try:
        ids = [queue.enqueue(MESSAGE, "alice@example.test", [f"u{n}@remote.test"]) for n in range(5)]
        assert wait_for(lambda: len(remote.messages) == 5, 60)
        assert wait_for(lambda: OutboundRecipient.objects.filter(message_id__in=ids, state="delivered").count() == 5)
        # A lost wake-up, to a domain of its own: a task still draining remote.test would take it too.
        dns_server.records["late.test"] = {"MX": ["10 mx.remote.test."]}
        hooks, queue._wake_hooks[:] = list(queue._wake_hooks), []
        try:  # only the sweep's task reaches the worker
            lost = queue.enqueue(MESSAGE, "alice@example.test", ["lost@late.test"])
        finally:
            queue._wake_hooks[:] = hooks
        time.sleep(0.5)
        assert len(remote.messages) == 5
        assert sweep_queue() == 1
        assert wait_for(lambda: OutboundRecipient.objects.get(message_id=lost).state == "delivered", 60)
    finally:
        process.terminate()
        process.wait(20)
