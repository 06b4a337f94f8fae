"""Throughput machinery that must not cost correctness: group-committed enqueue, batched results, drains, wake-ups."""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from django.conf import settings as django_settings

from mailcore import store
from mailcore.delivery import claims, queue, runner, worker
from mailcore.delivery.outcome import DELIVERED, Outcome
from mailcore.models import DeliveryAttempt, OutboundMessage, OutboundRecipient
from mailcore.store import aio

MESSAGE = b"From: alice@example.test\r\nSubject: batch %d\r\n\r\nbody\r\n"


def _enqueue(n: int, domain: str = "remote.test") -> int:
    return queue.enqueue(MESSAGE % n, "alice@example.test", [f"u{n}@{domain}"])


@pytest.mark.django_db(transaction=True)
def test_group_committed_enqueues_from_concurrent_sessions_are_durable_and_delivered_once(remote, settings):
    settings.CELERY_BROKER_URL = ""
    woken: list[int] = []
    queue.on_enqueue(lambda message_id, domains: woken.append(message_id))

    async def session(first: int) -> list[int]:
        return [await aio.run_durable(queue.enqueue, MESSAGE % n, "alice@example.test", [f"u{n}@remote.test"])
                for n in range(first, 40, 8)]

    async def sessions() -> list[list[int]]:
        return await asyncio.gather(*(session(i) for i in range(8)))

    try:
        ids = [i for ids in asyncio.run(sessions()) for i in ids]
    finally:
        queue._wake_hooks.pop()
        aio.shutdown()
    assert len(set(ids)) == 40 and sorted(woken) == sorted(ids)  # each woken once, after its commit
    for message in OutboundMessage.objects.filter(pk__in=ids):
        assert store.read_blob(message.blob).endswith(b"body\r\n")
    while worker.deliver_due():
        pass
    delivered = Counter(r for m in remote.messages for r in m.recipients)
    assert len(delivered) == 40 and set(delivered.values()) == {1}


@pytest.mark.django_db(transaction=True)
def test_a_drain_stopped_by_a_worn_out_connection_wakes_its_domain_again(remote, monkeypatch):
    monkeypatch.setattr(worker, "DRAIN_BATCH", 2)
    monkeypatch.setattr(worker, "MAX_TRANSACTIONS_PER_CONNECTION", 3)
    pokes: list[int] = []
    monkeypatch.setattr(runner, "_poke", lambda: pokes.append(1))  # no broker: a wake-up pokes the runner
    monkeypatch.setattr(django_settings, "CELERY_BROKER_URL", "")
    for n in range(7):
        _enqueue(n)
    pokes.clear()
    with worker.Run() as run:
        assert run.message(None, ["remote.test"]) == 4  # 2 claimed, 2 more, then the connection is worn out
    assert run.unfinished == {"remote.test"}
    assert worker.deliver_message(None, ["remote.test"]) == 3 and pokes == []  # drained to the end: no wake-up
    assert len(remote.messages) == 7
    for n in range(7, 10):
        _enqueue(n)
    pokes.clear()
    monkeypatch.setattr(worker, "MAX_TRANSACTIONS_PER_CONNECTION", 1)
    worker.pool.close_idle(0)
    assert worker.deliver_message(None, ["remote.test"]) == 2 and pokes == [1]  # a full claim, a worn connection
    assert worker.deliver_message(None, ["remote.test"]) == 1 and len(remote.messages) == 10


@pytest.mark.django_db(transaction=True)
def test_a_claim_short_of_its_limit_ends_the_drain(remote, monkeypatch):
    asked: list[dict] = []
    real_claim = claims.claim

    def counting_claim(owner, **kwargs):
        asked.append(kwargs)
        return real_claim(owner, **kwargs)

    monkeypatch.setattr(claims, "claim", counting_claim)
    ids = [_enqueue(n) for n in range(3)]
    assert worker.deliver_message(ids[0], ["remote.test"]) == 3
    assert len(asked) == 1  # its own message and the other two in one claim, short of the limit: done
    assert set(OutboundRecipient.objects.values_list("state", flat=True)) == {"delivered"}


@pytest.mark.django_db(transaction=True)
def test_results_are_written_only_for_rows_still_leased_to_the_writer(remote):
    first, second = _enqueue(1), _enqueue(2)
    rows = claims.claim("worker-a", domain="remote.test")
    assert [r.message_id for r in rows] == [first, second]
    OutboundRecipient.objects.filter(message_id=second).update(lease_owner="worker-b")  # its lease ran out, taken
    accepted = Outcome(DELIVERED, 250, "2.0.0", "ok", "mx.remote.test")
    states = claims.record_many([claims.Result(r, accepted, "mx") for r in rows], "worker-a")
    assert states == ["delivered", "sending"]
    written = OutboundRecipient.objects.get(message_id=first)
    assert (written.state, written.attempts, written.lease_owner, written.last_reply) == (
        "delivered", 1, "", "250 2.0.0 ok")
    assert written.updated_at > written.created_at
    untouched = OutboundRecipient.objects.get(message_id=second)
    assert (untouched.state, untouched.attempts, untouched.lease_owner) == ("sending", 0, "worker-b")
    assert list(DeliveryAttempt.objects.values_list("message_id", "outcome")) == [(first, "delivered")]


@pytest.mark.skipif(not str(django_settings.CELERY_BROKER_URL).startswith("redis"), reason="needs a Redis broker")
@pytest.mark.django_db(transaction=True)
def test_wake_ups_for_a_domain_with_a_pending_task_send_no_other_task(remote):
    from mailcore.delivery.wake import send, taken

    assert send([(1, ["a.test"]), (2, ["a.test"]), (3, ["b.test", "a.test"])]) == [["a.test", "b.test"]]
    assert send([(4, ["a.test"]), (5, ["b.test"])]) == []  # both pending: the task will drain them
    taken(["a.test"])  # a task started on a.test: what comes next needs a task of its own
    assert send([(6, ["a.test"]), (7, ["b.test"])]) == [["a.test"]]
    many = [f"d{n}.test" for n in range(25)]
    assert [len(chunk) for chunk in send([(8, many)])] == [10, 10, 5]  # spread over several workers


@pytest.mark.django_db(transaction=True)
def test_enqueue_writes_the_message_and_recipient_rows_the_orm_reads_back(remote, alice):
    message_id = queue.enqueue(MESSAGE % 1, "alice@example.test", ["Bob@Remote.test", "carol@other.test"], alice.pk)
    message = OutboundMessage.objects.get(pk=message_id)
    assert (message.sender, message.account_id, message.smtputf8, message.size) == (
        "alice@example.test", alice.pk, False, len(MESSAGE % 1))
    assert store.read_blob(message.blob) == MESSAGE % 1
    rows = list(OutboundRecipient.objects.filter(message=message).order_by("id"))
    assert [(r.address, r.domain) for r in rows] == [("Bob@remote.test", "remote.test"), ("carol@other.test", "other.test")]
    for row in rows:
        assert (row.state, row.attempts, row.lease_owner, row.lease_expires_at, row.delay_notified) == (
            "queued", 0, "", None, False)
        assert row.next_attempt_at == row.created_at == row.updated_at and row.created_at >= message.created_at
    assert claims.due_message_ids() == [message_id]


def test_wake_ups_after_a_quiet_spell_go_at_once_and_those_of_a_busy_spell_together():
    import queue as queues
    import threading
    import time

    from mailcore.delivery.wake import next_round

    pending: queues.SimpleQueue = queues.SimpleQueue()
    rounds: list[list] = []

    def one_round(last_round: float) -> threading.Thread:
        thread = threading.Thread(target=lambda: rounds.append(next_round(pending, last_round, interval=2.0)[0]))
        thread.start()
        return thread

    pending.put((1, ["a.test"]))
    quiet = one_round(last_round=time.monotonic() - 60)
    quiet.join(timeout=1.0)  # half the interval: it did not wait for one
    assert not quiet.is_alive() and rounds == [[(1, ["a.test"])]]

    busy = one_round(last_round=time.monotonic())  # a round has just gone: the next one gathers
    pending.put((2, ["a.test"]))
    time.sleep(0.2)
    pending.put((3, ["b.test"]))
    busy.join(timeout=30)
    assert rounds[1] == [(2, ["a.test"]), (3, ["b.test"])]


@pytest.mark.django_db(transaction=True)
def test_a_run_that_drains_many_messages_keeps_only_the_last_few_it_signed(remote, monkeypatch):
    """A run draining one domain sends hundreds of messages over one connection; it kept every one it had
    signed (for the message's other domains) until it ended: all of them in memory at once."""
    monkeypatch.setattr(worker, "PREPARED_BYTES", 3 * 1024)
    monkeypatch.setattr(worker, "DRAIN_BATCH", 3)
    ids = [queue.enqueue(b"Subject: big %d\r\n\r\n" % n + (b"x" * 70 + b"\r\n") * 14, "alice@example.test",
                         ["bob@remote.test", "carol@other.test"]) for n in range(8)]
    held: list[int] = []
    real_prepared = worker.Run._prepared

    def watched(run, message):  # type: ignore[no-untyped-def]
        data = real_prepared(run, message)
        held.append(sum(len(d) for d in run.prepared.values()))
        assert run.prepared_bytes == held[-1]
        return data

    monkeypatch.setattr(worker.Run, "_prepared", watched)
    with worker.Run() as run:
        assert run.message(None, ["remote.test"]) == 8
    assert len(held) == 8 and max(held) <= 3 * 1024  # each message signed once; about two kept at a time
    assert len({m.data for m in remote.messages}) == 8
    assert OutboundRecipient.objects.filter(message_id__in=ids, domain="other.test", state="queued").count() == 8
