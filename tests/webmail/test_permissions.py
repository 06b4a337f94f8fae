"""One user can never read, change, move or download another user's mail by changing ids in URLs."""
from __future__ import annotations

import pytest

from mailcore import store
from tests.webmail.conftest import deliver, message

pytestmark = pytest.mark.django_db

ATTACHED = message(
    "secret", content_type='multipart/mixed; boundary="b"',
    body='--b\r\nContent-Type: text/plain\r\n\r\nsecret text\r\n--b\r\nContent-Type: application/pdf\r\n'
         'Content-Disposition: attachment; filename="plan.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
         'JVBERi0xLjQK\r\n--b--',
    to="bob@example.test",
)


@pytest.fixture
def bob_mail(bob):
    uid = deliver(ATTACHED, to="bob@example.test")
    return store.get_folder(bob.pk, store.INBOX), uid


def test_reading_listing_and_downloading_bobs_mail_as_alice_is_404(alice_client, bob_mail):
    ref, uid = bob_mail
    folder = ref.mailbox_id
    for url in (f"/mail/{folder}/", f"/mail/{folder}/{uid}/", f"/mail/{folder}/{uid}/body/",
                f"/mail/{folder}/{uid}/part/2/", f"/mail/{folder}/{uid}/inline/2/",
                f"/mail/{folder}/{uid}/reply/", f"/mail/{folder}/{uid}/forward/"):
        response = alice_client.get(url)
        assert response.status_code == 404, url
        assert b"secret" not in response.content


def test_changing_bobs_mail_as_alice_changes_nothing(alice_client, alice, bob_mail):
    ref, uid = bob_mail
    alice_inbox = store.get_folder(alice.pk, store.INBOX)
    for action in ("read", "flag", "delete", "archive"):
        assert alice_client.post(f"/mail/{ref.mailbox_id}/act/", {"action": action, "uid": [uid]}).status_code == 404
    # Alice's own folder as source and Bob's as the move target
    mine = deliver(message("alice's"))
    response = alice_client.post(f"/mail/{alice_inbox.mailbox_id}/act/",
                                 {"action": "move", "uid": [mine], "target": ref.mailbox_id})
    assert response.status_code == 404
    assert [m.flags for m in store.fetch(ref)] == [()]
    assert [m.subject for m in store.fetch(ref)] == ["secret"]
    assert [m.subject for m in store.fetch(alice_inbox)] == ["alice's"]


def test_alice_cannot_rename_or_delete_bobs_folders(alice_client, bob):
    work = store.create_folder(bob.pk, "Work")
    assert alice_client.post(f"/folders/{work.mailbox_id}/rename/", {"name": "Mine"}).status_code == 404
    assert alice_client.post(f"/folders/{work.mailbox_id}/delete/").status_code == 404
    assert "Work" in [f.name for f in store.list_folders(bob.pk)]


def test_alice_cannot_forward_bobs_attachments_into_her_message(alice_client, alice, bob_mail):
    ref, uid = bob_mail
    response = alice_client.post("/compose/", {"action": "draft", "sender": "alice@example.test",
                                               "to": "x@remote.test", "subject": "s", "text": "t",
                                               "forward": f"{ref.mailbox_id}:{uid}"})
    assert response.status_code == 404
    assert store.fetch(store.folder_by_special_use(alice.pk, "\\Drafts")) == []


def test_undo_cannot_be_pointed_at_bobs_folders(alice_client, bob_mail):
    ref, uid = bob_mail
    session = alice_client.session
    session["webmail_undo"] = {"source": ref.mailbox_id, "target": ref.mailbox_id, "uids": [uid]}
    session.save()
    assert alice_client.post("/undo/").status_code == 404


def test_search_never_returns_bobs_mail(alice_client, bob_mail):
    response = alice_client.get("/search/?q=secret")
    assert response.status_code == 200
    assert b"secret text" not in response.content and b'class="subject"' not in response.content
