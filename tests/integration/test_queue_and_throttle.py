import pytest

from mailcore import store
from mailcore.address import AddressError
from mailcore.auth import throttle
from mailcore.delivery import queue
from mailcore.models import OutboundMessage, OutboundRecipient
from mailcore.store import blobs


def test_enqueue_commits_one_blob_and_a_row_per_recipient(db, django_capture_on_commit_callbacks):
    woken = []
    queue.on_enqueue(lambda message_id, domains: woken.append((message_id, domains)))
    with django_capture_on_commit_callbacks(execute=True):
        message_id = queue.enqueue(b"Subject: x\n\nbody\n", "alice@example.test", ["a@one.test", "B@Two.test"])
    message = OutboundMessage.objects.get(pk=message_id)
    rows = list(OutboundRecipient.objects.filter(message=message).order_by("address").values_list("address", "domain", "state"))
    assert rows == [("B@two.test", "two.test", "queued"), ("a@one.test", "one.test", "queued")]
    assert blobs.get(message.blob) == b"Subject: x\r\n\r\nbody\r\n"
    assert woken == [(message_id, ["one.test", "two.test"])] and not message.smtputf8


def test_enqueue_marks_smtputf8_and_refuses_bad_recipients(db):
    message_id = queue.enqueue("Subject: héllo\n\n.".encode(), "alice@example.test", ["josé@one.test"])
    assert OutboundMessage.objects.get(pk=message_id).smtputf8
    with pytest.raises(AddressError):
        queue.enqueue(b"x", "alice@example.test", ["ok@one.test", "not an address"])
    assert OutboundMessage.objects.count() == 1


def test_queued_blobs_survive_orphan_collection(db):
    queue.enqueue(b"Subject: keep\n\n.", "alice@example.test", ["a@one.test"])
    assert store.collect_orphan_blobs(grace=0) == []


def test_throttle_counts_failures_per_ip_and_blocks(settings):
    ip = "192.0.2.7"
    throttle.reset(ip)
    assert throttle.delay_for(ip) == 0 and not throttle.is_blocked(ip)
    for n in range(1, throttle.MAX_FAILURES + 1):
        assert throttle.record_failure(ip) == n
    assert throttle.is_blocked(ip) and throttle.delay_for(ip) == throttle.MAX_DELAY
    assert not throttle.is_blocked("192.0.2.8")
    throttle.reset(ip)
