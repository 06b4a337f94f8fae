"""The queue for operators: the admin queue page (retry, bounce, delete) and the purge of finished rows."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from mailcore import store
from mailcore.delivery import claims, operator, queue, worker
from mailcore.models import DeliveryAttempt, OutboundMessage, OutboundRecipient
from mailcore.tasks import purge_queue

MESSAGE = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: queued\r\n\r\nbody\r\n"
QUEUE_PAGE = "/admin/mailcore/outboundmessage/"
DAY = dt.timedelta(days=1)


@pytest.fixture
def admin_client(client, db):
    get_user_model().objects.create_superuser("admin", "admin@example.test", "admin-pw-123")
    client.login(username="admin", password="admin-pw-123")
    return client


def deferred_message(remote) -> int:
    remote.handler.data_replies = ["451 4.3.0 try later"]
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    assert OutboundRecipient.objects.get(message_id=message_id).state == "deferred"
    return message_id


def act(admin_client, action: str, message_id: int, **extra: str):
    return admin_client.post(QUEUE_PAGE, {"action": action, "_selected_action": [str(message_id)], **extra})


def inbox_of(account) -> list[bytes]:
    ref = store.get_folder(account.pk, "INBOX")
    return [store.read_message(ref, uid) for uid in store.uids(ref)]


def test_queue_page_lists_each_recipient_with_state_attempts_and_last_reply(admin_client, remote):
    message_id = deferred_message(remote)
    page = admin_client.get(QUEUE_PAGE)
    assert page.status_code == 200
    assert b"bob@remote.test (deferred, 1)" in page.content and b"451 4.3.0 try later" in page.content
    detail = admin_client.get(f"{QUEUE_PAGE}{message_id}/change/")
    assert detail.status_code == 200
    assert b"mx.remote.test" in detail.content and b"451 4.3.0 try later" in detail.content


def test_451_then_250_leaves_two_attempts_shown_on_the_queue_page(admin_client, remote):
    message_id = deferred_message(remote)
    OutboundRecipient.objects.filter(message_id=message_id).update(next_attempt_at=timezone.now())
    assert worker.deliver_message(message_id) == 1
    attempts = list(DeliveryAttempt.objects.filter(message_id=message_id).values_list(
        "address", "transport", "mx_host", "reply", "outcome"))
    assert attempts == [
        ("bob@remote.test", "mx", "mx.remote.test", "451 4.3.0 try later", "deferred"),
        ("bob@remote.test", "mx", "mx.remote.test", "250 2.0.0 queued", "delivered"),
    ]
    first, second = DeliveryAttempt.objects.filter(message_id=message_id)
    assert first.attempted_at <= second.attempted_at and first.recipient == second.recipient
    detail = admin_client.get(f"{QUEUE_PAGE}{message_id}/change/").content.decode()
    assert "Attempt history" in detail
    history = detail[detail.index("Attempt history"):]
    assert history.index("451 4.3.0 try later") < history.index("250 2.0.0 queued")
    assert history.count("mx.remote.test") == 2


def test_retry_action_makes_a_deferred_message_due_now_and_it_is_delivered(admin_client, remote):
    message_id = deferred_message(remote)
    assert claims.due_message_ids() == []  # backing off
    response = act(admin_client, "retry_now", message_id)
    assert response.status_code == 302
    assert claims.due_message_ids() == [message_id]
    assert worker.deliver_message(message_id) == 1
    assert OutboundRecipient.objects.get(message_id=message_id).state == "delivered"
    assert len(remote.messages) == 1


def test_bounce_action_bounces_waiting_recipients_and_sends_a_dsn_to_the_sender(admin_client, remote, alice):
    message_id = deferred_message(remote)
    response = act(admin_client, "bounce_now", message_id)
    assert response.status_code == 302
    row = OutboundRecipient.objects.get(message_id=message_id)
    assert (row.state, row.last_reply) == ("bounced", operator.ADMIN_BOUNCE_REPLY)
    [dsn] = inbox_of(alice)
    assert b"Action: failed" in dsn and b"Status: 5.0.0" in dsn
    assert b"Diagnostic-Code: smtp; 550 5.0.0 returned to the sender by the mail administrator" in dsn
    assert claims.due_message_ids() == [] and worker.deliver_message(message_id) == 0
    assert remote.messages == []


def test_bounce_leaves_a_row_a_live_worker_is_delivering(admin_client, remote, alice):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    claims.claim("live-worker", message_id=message_id)
    act(admin_client, "bounce_now", message_id)
    assert OutboundRecipient.objects.get(message_id=message_id).state == "sending"
    assert inbox_of(alice) == []


def test_delete_action_removes_the_message_and_its_recipients(admin_client, remote):
    message_id = deferred_message(remote)
    response = act(admin_client, "delete_selected", message_id, post="yes")
    assert response.status_code == 302
    assert not OutboundMessage.objects.filter(pk=message_id).exists()
    assert not OutboundRecipient.objects.filter(message_id=message_id).exists()


def test_the_queue_page_has_no_add_button(admin_client):
    assert admin_client.get(f"{QUEUE_PAGE}add/").status_code == 403


def _aged(recipients: list[str], states: list[str], age: dt.timedelta) -> int:
    message_id = queue.enqueue(MESSAGE, "alice@example.test", recipients)
    for address, state in zip(recipients, states, strict=True):
        OutboundRecipient.objects.filter(message_id=message_id, address=address).update(
            state=state, updated_at=timezone.now() - age
        )
    return message_id


def test_purge_deletes_only_messages_finished_longer_than_the_retention_ago(settings, db):
    settings.MAIL_QUEUE_RETENTION = 7 * 24 * 3600
    old_delivered = _aged(["a@remote.test"], ["delivered"], 8 * DAY)
    old_bounced_and_expired = _aged(["b@remote.test", "c@remote.test"], ["bounced", "expired"], 8 * DAY)
    recent = _aged(["d@remote.test"], ["delivered"], 6 * DAY)
    still_waiting = _aged(["e@remote.test", "f@remote.test"], ["delivered", "deferred"], 30 * DAY)
    assert purge_queue() == 2
    left = set(OutboundMessage.objects.values_list("pk", flat=True))
    assert left == {recent, still_waiting}
    assert old_delivered not in left and old_bounced_and_expired not in left
    assert not OutboundRecipient.objects.filter(message_id__in=[old_delivered, old_bounced_and_expired]).exists()
    assert OutboundMessage.objects.get(pk=recent).blob in queue.referenced_blobs()


def test_retention_zero_keeps_finished_messages(settings, db):
    settings.MAIL_QUEUE_RETENTION = 0
    _aged(["a@remote.test"], ["delivered"], 400 * DAY)
    assert operator.purge_finished() == 0 and OutboundMessage.objects.count() == 1
