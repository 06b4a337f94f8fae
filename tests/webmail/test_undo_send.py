"""Undo send: the message is held server-side (a durable PendingSend row) and nothing is delivered,
locally or remotely, until the window passes; undo within the window puts it back in Drafts."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from mailcore import store
from mailcore.models import OutboundMessage, OutboundRecipient
from tests.support.waiting import wait_for
from webmail import outbox
from webmail.models import PendingSend

pytestmark = pytest.mark.django_db


@pytest.fixture
def window(settings):
    settings.MAIL_WEBMAIL_UNDO_SEND_SECONDS = 30


def send(client, **fields):
    data = {"action": "send", "sender": "alice@example.test", "to": "bob@example.test, zed@remote.test",
            "bcc": "carl@remote.test", "subject": "Held", "text": "wait for it", **fields}
    return client.post("/compose/", data)


def nothing_delivered(alice, bob) -> bool:
    bob_inbox = store.fetch(store.get_folder(bob.pk, store.INBOX))
    sent = store.fetch(store.folder_by_special_use(alice.pk, "\\Sent"))
    return bob_inbox == [] and sent == [] and not OutboundMessage.objects.exists()


def pass_the_window() -> None:
    """The clock moves past every held message's window (the row's due time is what release checks)."""
    PendingSend.objects.update(due_at=timezone.now() - dt.timedelta(seconds=1))


def test_send_is_held_and_shows_an_undo_button(window, alice_client, alice, bob):
    response = send(alice_client)
    held = PendingSend.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/outbox/{held.pk}/"
    page = alice_client.get(response["Location"]).content.decode()
    assert 'id="undo-send-button"' in page and "bob@example.test, zed@remote.test, carl@remote.test" in page
    assert outbox.release_due() == 0
    assert nothing_delivered(alice, bob)


def test_undo_within_the_window_delivers_nothing_and_reopens_the_draft(window, alice_client, alice, bob):
    send(alice_client)
    held = PendingSend.objects.get()
    response = alice_client.post(f"/outbox/{held.pk}/undo/")
    assert response.status_code == 302 and response["Location"].startswith("/compose/?draft=")
    assert not PendingSend.objects.exists()
    pass_the_window()
    assert outbox.release_due() == 0
    assert nothing_delivered(alice, bob)
    drafts = store.folder_by_special_use(alice.pk, "\\Drafts")
    assert [m.subject for m in store.fetch(drafts)] == ["Held"]
    page = alice_client.get(response["Location"]).content.decode()
    assert 'value="bob@example.test, zed@remote.test"' in page and 'value="carl@remote.test"' in page
    assert "wait for it" in page
    # Sending the reopened draft sends it (at once here) and removes it from Drafts.
    uid = re.search(r'name="draft_uid" id="draft-uid" value="(\d+)"', page).group(1)
    alice_client.post("/compose/", {"action": "send", "sender": "alice@example.test", "to": "bob@example.test",
                                    "subject": "Held", "text": "now", "draft_uid": uid})
    assert outbox.release_due() == 0 and store.fetch(drafts) == []


def test_after_the_window_it_arrives_locally_and_is_queued_remotely_once(window, alice_client, alice, bob):
    send(alice_client)
    held = PendingSend.objects.get()
    pass_the_window()
    assert outbox.release_due() == 1
    assert outbox.release_due() == 0  # released exactly once
    got = store.fetch(store.get_folder(bob.pk, store.INBOX))
    assert [m.subject for m in got] == ["Held"]
    assert sorted(OutboundRecipient.objects.values_list("address", flat=True)) == ["carl@remote.test",
                                                                                    "zed@remote.test"]
    raw = store.read_message(store.get_folder(bob.pk, store.INBOX), got[0].uid)
    assert b"carl@remote.test" not in raw  # Bcc never in the sent headers
    assert [m.subject for m in store.fetch(store.folder_by_special_use(alice.pk, "\\Sent"))] == ["Held"]
    assert not PendingSend.objects.exists()
    response = alice_client.post(f"/outbox/{held.pk}/undo/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert "Message sent." in alice_client.get(f"/outbox/{held.pk}/").content.decode()


def test_undo_after_the_window_is_too_late_and_the_message_still_goes(window, alice_client, alice, bob):
    send(alice_client, to="bob@example.test", bcc="")
    held = PendingSend.objects.get()
    pass_the_window()
    alice_client.post(f"/outbox/{held.pk}/undo/")
    assert PendingSend.objects.exists()
    assert outbox.release_due() == 1
    assert [m.subject for m in store.fetch(store.get_folder(bob.pk, store.INBOX))] == ["Held"]


def test_a_crash_during_release_loses_nothing_and_the_next_run_sends_it(window, alice_client, alice, bob,
                                                                         monkeypatch):
    send(alice_client, to="bob@example.test", bcc="")
    pass_the_window()

    def disk_fails(*args, **kwargs):
        raise store.StorageFailure("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(outbox, "submit", disk_fails)
        with pytest.raises(store.StorageFailure):
            outbox.release_due()
    assert PendingSend.objects.count() == 1 and nothing_delivered(alice, bob)
    assert outbox.release_due() == 1
    assert [m.subject for m in store.fetch(store.get_folder(bob.pk, store.INBOX))] == ["Held"]


@pytest.mark.django_db(transaction=True)
def test_runmail_outbox_job_releases_a_committed_message_when_due(settings, alice_client, alice, bob):
    """The background job runs in its own thread and database connection, as in runmail."""
    import asyncio

    settings.MAIL_WEBMAIL_UNDO_SEND_SECONDS = 1
    send(alice_client, to="bob@example.test", bcc="")
    bob_inbox = store.get_folder(bob.pk, store.INBOX)

    async def run_job_until_delivered() -> float:
        job = asyncio.create_task(outbox.outbox_runner())
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            while not await loop.run_in_executor(None, store.uids, bob_inbox):
                assert loop.time() - started < 10, "the outbox job never released the message"
                await asyncio.sleep(0.1)
            return loop.time() - started
        finally:
            job.cancel()

    asyncio.run(run_job_until_delivered())
    assert not PendingSend.objects.exists()
    assert [m.subject for m in store.fetch(bob_inbox)] == ["Held"]


def test_another_user_cannot_undo_or_see_my_held_message(window, alice_client, bob_client, alice, bob):
    send(alice_client, to="bob@example.test", bcc="")
    held = PendingSend.objects.get()
    assert "Held" not in bob_client.get(f"/outbox/{held.pk}/").content.decode()
    bob_client.post(f"/outbox/{held.pk}/undo/")
    assert PendingSend.objects.filter(pk=held.pk).exists()


def test_unknown_local_recipient_is_refused_before_holding(window, alice_client, alice):
    response = send(alice_client, to="nobody@example.test", bcc="")
    assert response.status_code == 400 and b"550 5.1.1" in response.content
    assert not PendingSend.objects.exists()


def test_a_message_over_the_sending_limit_is_refused_before_holding(window, alice_client, alice, bob, settings):
    settings.MAIL_SUBMISSION_RECIPIENTS_PER_HOUR = 1  # the form has two recipients outside our domains
    response = send(alice_client)
    assert response.status_code == 400
    assert b"550 5.7.1 Too many recipients outside our domains: 2, at most 1 an hour" in response.content
    assert not PendingSend.objects.exists()


def test_recipient_gone_at_release_puts_the_message_back_in_drafts(window, alice_client, alice, bob):
    send(alice_client, to="bob@example.test", bcc="")
    bob.delete()
    pass_the_window()
    assert outbox.release_due() == 1
    drafts = store.folder_by_special_use(alice.pk, "\\Drafts")
    assert [m.subject for m in store.fetch(drafts)] == ["Held"]
    assert store.fetch(store.folder_by_special_use(alice.pk, "\\Sent")) == []


def test_beat_sweep_task_releases_what_is_due_in_process(window, alice_client, alice, bob):
    """webmail.tasks.release_held_mail is the same release as runmail's job (called here as beat would)."""
    from webmail.tasks import release_held_mail

    send(alice_client, to="bob@example.test", bcc="")
    assert release_held_mail() == 0 and PendingSend.objects.count() == 1  # still in its window
    pass_the_window()
    assert release_held_mail() == 1 and release_held_mail() == 0
    assert [m.subject for m in store.fetch(store.get_folder(bob.pk, store.INBOX))] == ["Held"]


@pytest.mark.django_db(transaction=True)
def test_without_a_broker_hold_schedules_no_task(settings, alice_client, alice, bob, monkeypatch):
    from webmail import tasks

    settings.CELERY_BROKER_URL = ""
    settings.MAIL_WEBMAIL_UNDO_SEND_SECONDS = 30
    sent: list = []
    monkeypatch.setattr(tasks.release_held_mail, "apply_async", lambda *a, **k: sent.append((a, k)))
    send(alice_client, to="bob@example.test", bcc="")
    assert PendingSend.objects.count() == 1 and sent == []  # runmail's outbox job will release it


@pytest.mark.slow
@pytest.mark.skipif(not django_settings.CELERY_BROKER_URL, reason="needs CELERY_BROKER_URL (CI sets Redis)")
@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_releases_held_mail_without_runmail(settings, blob_dir, alice_client, alice, bob):
    from tests.support.celery_worker import celery_worker
    from tests.support.celeryqueue import private_celery_queue
    from webmail.tasks import release_held_mail

    settings.MAIL_WEBMAIL_UNDO_SEND_SECONDS = 3
    bob_inbox = store.get_folder(bob.pk, store.INBOX)
    with private_celery_queue("test-undo-send"), celery_worker(blob_dir):
        send(alice_client, to="bob@example.test", bcc="", subject="Via Celery")
        assert PendingSend.objects.count() == 1 and store.uids(bob_inbox) == []  # held for its window
        assert wait_for(lambda: store.uids(bob_inbox) != [])  # the task sent at hold, ETA = due time
        assert [m.subject for m in store.fetch(bob_inbox)] == ["Via Celery"]
        assert not PendingSend.objects.exists()

        # A lost release task: beat's sweep (the same task without an id) releases it.
        broker, settings.CELERY_BROKER_URL = settings.CELERY_BROKER_URL, ""
        send(alice_client, to="bob@example.test", bcc="", subject="Task lost")  # no broker seen: no task sent
        settings.CELERY_BROKER_URL = broker
        pass_the_window()
        release_held_mail.delay()
        assert wait_for(lambda: len(store.uids(bob_inbox)) == 2)
        assert sorted(m.subject for m in store.fetch(bob_inbox)) == ["Task lost", "Via Celery"]
        assert not PendingSend.objects.exists()
