"""Compose, reply, forward, drafts and sending through the submission function (local delivery + Sent copy)."""
from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mailcore import mime, store
from mailcore.models import OutboundRecipient
from tests.webmail.conftest import deliver, message

pytestmark = pytest.mark.django_db


def send(client, **fields):
    data = {"action": "send", "sender": "alice@example.test", "to": "", "subject": "", "text": "", **fields}
    return client.post("/compose/", data)


def test_compose_page_offers_the_address_as_from(alice_client):
    page = alice_client.get("/compose/").content.decode()
    assert "<option >alice@example.test</option>" in page or "alice@example.test</option>" in page


def test_send_to_a_local_user_arrives_in_their_inbox_and_in_my_sent(alice_client, alice, bob):
    upload = SimpleUploadedFile("notes.txt", b"attached words", content_type="text/plain")
    response = alice_client.post("/compose/", {"action": "send", "sender": "alice@example.test",
                                               "to": "Bob <bob@example.test>", "subject": "Hi Bob",
                                               "text": "Hello from the webmail", "attachments": [upload]})
    assert response.status_code == 302
    received = store.fetch(store.get_folder(bob.pk, store.INBOX))
    assert [m.subject for m in received] == ["Hi Bob"] and received[0].has_attachments
    sent = store.fetch(store.folder_by_special_use(alice.pk, "\\Sent"))
    assert [m.subject for m in sent] == ["Hi Bob"] and "\\Seen" in sent[0].flags
    raw = store.read_message(store.get_folder(bob.pk, store.INBOX), received[0].uid)
    assert "Hello from the webmail" in mime.extract_text(raw, received[0].bodystructure)
    assert [a.filename for a in mime.attachments(received[0].bodystructure)] == ["notes.txt"]


def test_send_to_a_remote_address_is_queued(alice_client, alice):
    assert send(alice_client, to="zed@remote.test", subject="out", text="x").status_code == 302
    assert list(OutboundRecipient.objects.values_list("address", flat=True)) == ["zed@remote.test"]


def test_bcc_is_delivered_but_not_in_the_headers(alice_client, alice, bob):
    send(alice_client, to="zed@remote.test", bcc="bob@example.test", subject="secret cc", text="x")
    ref = store.get_folder(bob.pk, store.INBOX)
    raw = store.read_message(ref, store.uids(ref)[0])
    assert b"Bcc" not in raw and b"bob@example.test" not in raw.split(b"\r\n\r\n")[0]


@pytest.mark.parametrize("field", ["subject", "to", "cc", "bcc"])
def test_cr_or_lf_in_a_header_field_is_refused(alice_client, alice, bob, field):
    fields = {"to": "bob@example.test", "subject": "s", "text": "t"}
    fields[field] = fields.get(field, "") + "x\r\nBcc: victim@remote.test" if field != "to" else \
        "bob@example.test\nBcc: victim@remote.test"
    response = send(alice_client, **fields)
    assert response.status_code == 400 and b"line breaks are not allowed" in response.content
    assert store.fetch(store.get_folder(bob.pk, store.INBOX)) == []
    assert not OutboundRecipient.objects.exists()


def test_sending_from_an_address_i_do_not_own_is_refused(alice_client, alice, bob):
    response = send(alice_client, sender="bob@example.test", to="bob@example.test", subject="s", text="t")
    assert response.status_code == 400
    assert store.fetch(store.get_folder(bob.pk, store.INBOX)) == []


def test_reply_has_in_reply_to_references_and_quote(alice_client, inbox):
    raw = message("Plans", body="Shall we meet?\r\nSoon.", extra="References: <a@x> <b@x>\r\n")
    uid = deliver(raw)
    page = alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/reply/").content.decode()
    parent_id = store.fetch(inbox, [uid])[0].message_id.replace("<", "&lt;").replace(">", "&gt;")
    assert f'name="in_reply_to" value="{parent_id}"' in page
    assert f'name="references" value="&lt;a@x&gt; &lt;b@x&gt; {parent_id}"' in page
    assert 'value="Re: Plans"' in page and "&gt; Shall we meet?" in page
    assert 'value="Carol &lt;carol@remote.test&gt;"' in page


def test_reply_all_copies_other_recipients_but_not_me(alice_client, inbox):
    uid = deliver(message("Team", to="alice@example.test, dan@remote.test"))
    page = alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/reply/?all=1").content.decode()
    cc = re.search(r'id="cc" name="cc" value="([^"]*)"', page).group(1)
    assert cc == "dan@remote.test"


def test_sent_reply_threads_with_the_parent(alice_client, alice, bob):
    bob_inbox = store.get_folder(bob.pk, store.INBOX)
    uid = deliver(message("Question", to="bob@example.test"), to="bob@example.test")
    parent = store.fetch(bob_inbox, [uid])[0]
    send(alice_client, to="bob@example.test", subject="Re: Question", text="Answer",
         in_reply_to=parent.message_id, references=parent.message_id)
    reply = next(m for m in store.fetch(bob_inbox) if m.subject == "Re: Question")
    assert reply.thread_id == parent.thread_id
    raw = store.read_message(bob_inbox, reply.uid)
    assert f"In-Reply-To: {parent.message_id}".encode() in raw


def test_forward_carries_the_attachments(alice_client, alice, bob, inbox):
    uid = deliver(message("Docs", content_type='multipart/mixed; boundary="b"',
                          body='--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n--b\r\nContent-Type: application/pdf\r\n'
                               'Content-Disposition: attachment; filename="a.pdf"\r\n\r\nPDFDATA\r\n--b--'))
    page = alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/forward/").content.decode()
    assert 'value="Fwd: Docs"' in page and "a.pdf" in page
    send(alice_client, to="bob@example.test", subject="Fwd: Docs", text="fyi", forward=f"{inbox.mailbox_id}:{uid}")
    got = store.fetch(store.get_folder(bob.pk, store.INBOX))[0]
    assert [a.filename for a in mime.attachments(got.bodystructure)] == ["a.pdf"]


def test_draft_is_saved_to_drafts_and_replaced_on_next_save_and_removed_on_send(alice_client, alice, bob):
    drafts = store.folder_by_special_use(alice.pk, "\\Drafts")
    fields = {"action": "draft", "sender": "alice@example.test", "to": "bob@example.test", "subject": "wip",
              "text": "v1", "bcc": "x@remote.test"}
    alice_client.post("/compose/", fields)
    first = store.fetch(drafts)
    assert [m.subject for m in first] == ["wip"] and "\\Draft" in first[0].flags
    assert b"Bcc: x@remote.test" in store.read_message(drafts, first[0].uid)
    alice_client.post("/compose/", {**fields, "text": "v2", "draft_uid": first[0].uid})
    second = store.fetch(drafts)
    assert len(second) == 1 and second[0].uid != first[0].uid
    send(alice_client, to="bob@example.test", subject="wip", text="final", draft_uid=second[0].uid)
    assert store.fetch(drafts) == []


def test_settings_change_page_size_signature_and_password(alice_client, alice):
    from webmail.models import Preferences

    alice_client.post("/settings/", {"form": "preferences", "display_name": "Alice A", "signature": "Cheers",
                                     "page_size": "25", "remote_images": "always", "language": "vi"})
    prefs = Preferences.of(alice.user)
    assert (prefs.display_name, prefs.signature, prefs.page_size, prefs.remote_images, prefs.language) == (
        "Alice A", "Cheers", 25, "always", "vi")
    assert "-- \nCheers" in alice_client.get("/compose/").content.decode()
    alice_client.post("/settings/", {"form": "password", "current": "wrong", "new": "n3w-Passw0rd!"})
    alice_client.post("/settings/", {"form": "password", "current": "alice-secret-pw", "new": "n3w-Passw0rd!"})
    from mailcore.auth import check_login

    assert check_login("alice@example.test", "n3w-Passw0rd!") is not None
    assert alice_client.get("/settings/").status_code == 200  # still signed in


def test_autosave_saves_a_draft_and_replaces_the_previous_one(alice_client, alice):
    drafts = store.folder_by_special_use(alice.pk, "\\Drafts")
    form = {"action": "draft", "autosave": "1", "sender": "alice@example.test", "to": "bob@example.test",
            "subject": "Thinking", "text": "first words"}
    first = alice_client.post("/compose/", form).json()
    assert store.uids(drafts) == [first["draft_uid"]] and first["forward"] == ""
    second = alice_client.post("/compose/", {**form, "text": "more words", "draft_uid": first["draft_uid"]}).json()
    assert store.uids(drafts) == [second["draft_uid"]]
    raw = store.read_message(drafts, second["draft_uid"])
    assert b"more words" in raw and b"first words" not in raw


def test_autosave_of_a_reopened_draft_keeps_its_attachments(alice_client, alice):
    drafts = store.folder_by_special_use(alice.pk, "\\Drafts")
    upload = SimpleUploadedFile("plan.txt", b"the plan", content_type="text/plain")
    alice_client.post("/compose/", {"action": "draft", "sender": "alice@example.test", "to": "bob@example.test",
                                    "subject": "With file", "text": "see", "attachments": [upload]})
    uid = store.uids(drafts)[0]
    page = alice_client.get(f"/compose/?draft={uid}").content.decode()
    assert "plan.txt" in page and f'name="forward" value="{drafts.mailbox_id}:{uid}"' in page
    saved = alice_client.post("/compose/", {"action": "draft", "autosave": "1", "sender": "alice@example.test",
                                            "to": "bob@example.test", "subject": "With file", "text": "see again",
                                            "draft_uid": str(uid), "forward": f"{drafts.mailbox_id}:{uid}"}).json()
    assert saved["forward"] == f"{drafts.mailbox_id}:{saved['draft_uid']}"
    info = store.fetch(drafts, [saved["draft_uid"]])[0]
    assert [a.filename for a in mime.attachments(info.bodystructure)] == ["plan.txt"]


def test_another_users_draft_cannot_be_opened(alice_client, bob_client, alice, bob):
    alice_client.post("/compose/", {"action": "draft", "sender": "alice@example.test", "to": "x@remote.test",
                                    "subject": "private", "text": "t"})
    uid = store.uids(store.folder_by_special_use(alice.pk, "\\Drafts"))[0]
    page = bob_client.get(f"/compose/?draft={uid}")
    assert page.status_code == 404 or b"private" not in page.content


def test_autocomplete_offers_past_correspondents(alice_client, alice, bob, inbox):
    deliver(message("From Carol", sender="carol@remote.test"))
    send(alice_client, to="Dan <dan@remote.test>", subject="s", text="t")
    page = alice_client.get("/compose/").content.decode()
    datalist = page[page.index('<datalist id="correspondents">'):page.index("</datalist>")]
    assert '<option value="Dan &lt;dan@remote.test&gt;">' in datalist  # the name typed when writing to Dan
    assert '<option value="Carol &lt;carol@remote.test&gt;">' in datalist
    assert "bob@example.test" not in datalist


def test_upload_by_script_gets_the_redirect_as_json_and_the_notice_waits(alice_client, alice, bob):
    upload = SimpleUploadedFile("a.txt", b"x", content_type="text/plain")
    response = alice_client.post("/compose/", {"action": "send", "sender": "alice@example.test",
                                               "to": "bob@example.test", "subject": "up", "text": "t",
                                               "attachments": [upload]}, HTTP_X_WEBMAIL_UPLOAD="1")
    assert response.status_code == 200 and response.json() == {"location": "/"}
    assert "Message sent." in alice_client.get("/", follow=True).content.decode()


def test_display_names_typed_in_to_and_cc_are_kept_in_the_sent_headers(alice_client, alice, bob):
    send(alice_client, to="Bob Builder <bob@example.test>", cc='"Lâm, Đặng" <zed@remote.test>, carl@remote.test',
         subject="names", text="x")
    raw = store.read_message(store.get_folder(bob.pk, store.INBOX), store.uids(store.get_folder(bob.pk, store.INBOX))[0])
    parsed = mime.parse_message(raw)
    assert parsed.envelope["to"] == [["Bob Builder", None, "bob", "example.test"]]
    assert parsed.envelope["cc"] == [["Lâm, Đặng", None, "zed", "remote.test"], [None, None, "carl", "remote.test"]]
    queued = sorted(OutboundRecipient.objects.values_list("address", flat=True))
    assert queued == ["carl@remote.test", "zed@remote.test"]  # the envelope holds addresses only
