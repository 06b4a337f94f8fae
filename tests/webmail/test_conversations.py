"""Conversation view: a thread is listed once, at its newest message, and the message page shows the
whole thread across folders (Sent included); the Settings flag turns it off."""
from __future__ import annotations

import re

import pytest

from mailcore import store
from tests.webmail.conftest import deliver, message

pytestmark = pytest.mark.django_db


def _thread_with_my_reply(alice_client, alice, inbox) -> tuple[int, int]:
    """Carol writes, alice answers from the webmail, carol answers back: 2 in INBOX, 1 in Sent."""
    first_uid = deliver(message("Plans", body="shall we meet?"))
    first = store.fetch(inbox, [first_uid])[0]
    response = alice_client.post("/compose/", {
        "action": "send", "sender": "alice@example.test", "to": "carol@remote.test", "subject": "Re: Plans",
        "text": "yes, Monday", "in_reply_to": first.message_id, "references": first.message_id})
    assert response.status_code == 302
    sent = store.fetch(store.folder_by_special_use(alice.pk, "\\Sent"))[0]
    last_uid = deliver(message("Re: Plans", body="Monday it is",
                               extra=f"In-Reply-To: {sent.message_id}\r\nReferences: {first.message_id} "
                                     f"{sent.message_id}\r\n"))
    return first_uid, last_uid


def _listed_uids(page: str) -> list[int]:
    return [int(u) for u in re.findall(r'<tr [^>]*data-uid="(\d+)"', page)]


def test_conversation_view_lists_a_thread_once_with_its_size_over_all_folders(alice_client, alice, inbox):
    alice_client.post("/settings/", _settings_form(conversations="on"))
    _first_uid, last_uid = _thread_with_my_reply(alice_client, alice, inbox)
    other_uid = deliver(message("Unrelated", body="x"))
    page = alice_client.get(f"/mail/{inbox.mailbox_id}/").content.decode()
    assert _listed_uids(page) == [other_uid, last_uid]
    assert re.search(r'class="thread-size"[^>]*>3</span>', page)


def test_without_conversation_view_every_message_is_listed(alice_client, alice, inbox):
    alice_client.post("/settings/", _settings_form(conversations=""))
    first_uid, last_uid = _thread_with_my_reply(alice_client, alice, inbox)
    page = alice_client.get(f"/mail/{inbox.mailbox_id}/").content.decode()
    assert _listed_uids(page) == [last_uid, first_uid]
    assert "thread-size" not in page
    assert 'class="conversation"' not in alice_client.get(f"/mail/{inbox.mailbox_id}/{last_uid}/").content.decode()


def test_message_page_shows_the_thread_across_folders_with_sent(alice_client, alice, inbox):
    alice_client.post("/settings/", _settings_form(conversations="on"))
    first_uid, last_uid = _thread_with_my_reply(alice_client, alice, inbox)
    sent = store.folder_by_special_use(alice.pk, "\\Sent")
    page = alice_client.get(f"/mail/{inbox.mailbox_id}/{last_uid}/").content.decode()
    section = page[page.index('class="conversation"'):]
    links = re.findall(r'href="/mail/(\d+)/(\d+)/"', section)
    sent_uid = store.uids(sent)[0]
    assert links == [(str(inbox.mailbox_id), str(first_uid)), (str(sent.mailbox_id), str(sent_uid)),
                     (str(inbox.mailbox_id), str(last_uid))]
    assert "Conversation: 3 messages" in section


def test_another_users_thread_never_shows(alice_client, bob_client, alice, bob, inbox):
    bob_client.post("/settings/", _settings_form(conversations="on"))
    _thread_with_my_reply(alice_client, alice, inbox)
    bob_inbox = store.get_folder(bob.pk, store.INBOX)
    uid = deliver(message("Plans", body="hi bob"), to="bob@example.test")
    page = bob_client.get(f"/mail/{bob_inbox.mailbox_id}/{uid}/").content.decode()
    assert 'class="conversation"' not in page


def _settings_form(**changes: str) -> dict[str, str]:
    form = {"display_name": "", "signature": "", "page_size": "50", "remote_images": "ask", "language": "",
            "action": "preferences"}
    form.update({k: v for k, v in changes.items() if v})
    return form
