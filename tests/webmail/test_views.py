"""Django test client tests for the webmail views: sign-in, folders, list, message, actions, undo."""
from __future__ import annotations

import re

import pytest

from mailcore import store
from mailcore.auth import throttle
from tests.webmail.conftest import ALICE_PW, deliver, message

pytestmark = pytest.mark.django_db


def test_login_page_has_csp_csrf_and_frame_denial(client):
    response = client.get("/login/")
    assert response.status_code == 200
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"csrfmiddlewaretoken" in response.content
    assert b"<script>" not in response.content  # no inline script


def test_login_with_address_and_password_lands_in_inbox(client, alice):
    response = client.post("/login/", {"address": "alice@example.test", "password": ALICE_PW})
    assert response.status_code == 302 and response["Location"] == "/"
    inbox = client.get("/", follow=True)
    assert inbox.status_code == 200
    assert b"INBOX" in inbox.content


def test_login_is_case_insensitive_in_the_address(client, alice):
    response = client.post("/login/", {"address": "ALICE@Example.TEST", "password": ALICE_PW})
    assert response.status_code == 302


def test_wrong_password_is_refused_and_counted_by_the_shared_throttle(client, alice):
    response = client.post("/login/", {"address": "alice@example.test", "password": "nope"})
    assert response.status_code == 401
    assert b"Wrong address or password" in response.content
    assert throttle.failures("127.0.0.1") == 1


def test_blocked_ip_gets_429_even_with_the_right_password(client, alice):
    for _ in range(throttle.MAX_FAILURES):
        throttle.record_failure("127.0.0.1")
    response = client.post("/login/", {"address": "alice@example.test", "password": ALICE_PW})
    assert response.status_code == 429


def test_login_never_redirects_off_site(client, alice):
    response = client.post("/login/?next=https://evil.test/x", {"address": "alice@example.test", "password": ALICE_PW,
                                                                "next": "https://evil.test/x"})
    assert response["Location"] == "/"
    response = client.post("/login/", {"address": "alice@example.test", "password": ALICE_PW, "next": "//evil.test"})
    assert response["Location"] == "/"


def test_pages_need_a_login(client, alice):
    for url in ("/", "/mail/1/", "/search/?q=x", "/compose/", "/settings/", "/folders/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_admin_user_without_mailbox_is_sent_to_login(client, db):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("admin", "a@x.test", "admin-pw-123")
    client.login(username="admin", password="admin-pw-123")
    assert client.get("/")["Location"].startswith("/login/")


def test_logout_needs_post_and_ends_the_session(alice_client):
    assert alice_client.get("/logout/").status_code == 405
    assert alice_client.post("/logout/").status_code == 302
    assert alice_client.get("/")["Location"].startswith("/login/")


def test_folder_list_shows_special_folders_in_order_with_unread_counts(alice_client, inbox):
    deliver(message("one"))
    deliver(message("two"))
    page = alice_client.get(f"/mail/{inbox.mailbox_id}/").content.decode()
    names = re.findall(r'<span class="name">([^<]+)</span>', page)
    assert names == ["INBOX", "Drafts", "Sent", "Archive", "Junk", "Trash"]
    assert '<span class="count" data-unseen="2">2</span>' in page
    assert "<title>(2) INBOX</title>" in page


def test_message_list_is_newest_first_with_snippet_and_unread_in_bold(alice_client, inbox):
    deliver(message("Subj-older", body="first body text"))
    deliver(message("Subj-newer", body="second body text"))
    page = alice_client.get(f"/mail/{inbox.mailbox_id}/").content.decode()
    assert page.index("Subj-newer") < page.index("Subj-older")
    assert "second body text" in page
    assert page.count('class="unread"') == 2


def test_message_list_pages_by_keyset(alice_client, alice, inbox):
    from webmail.models import Preferences

    prefs = Preferences.of(alice.user)
    prefs.page_size = 25
    prefs.save()
    for n in range(30):
        deliver(message(f"msg-{n:02d}"))
    first = alice_client.get(f"/mail/{inbox.mailbox_id}/").content.decode()
    assert "msg-29" in first and "msg-05" in first and "msg-04" not in first
    older = re.search(r'href="\?before=(\d+)"', first).group(1)
    assert older == "6"  # UID of msg-05, the last shown
    second = alice_client.get(f"/mail/{inbox.mailbox_id}/?before={older}").content.decode()
    assert "msg-04" in second and "msg-00" in second and "msg-05" not in second
    assert "?before=" not in second


def test_opening_a_message_shows_headers_and_text_and_marks_it_read(alice_client, inbox):
    uid = deliver(message("Greetings", body="Plain <b>text</b> body"))
    response = alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Greetings" in page and "carol@remote.test" in page
    assert "Plain &lt;b&gt;text&lt;/b&gt; body" in page
    assert "\\Seen" in store.fetch(inbox, [uid])[0].flags


def test_missing_message_is_404(alice_client, inbox):
    assert alice_client.get(f"/mail/{inbox.mailbox_id}/999/").status_code == 404


def test_flag_read_unread_actions(alice_client, inbox):
    uid = deliver(message("act"))
    url = f"/mail/{inbox.mailbox_id}/act/"
    alice_client.post(url, {"action": "flag", "uid": [uid]})
    alice_client.post(url, {"action": "read", "uid": [uid]})
    assert set(store.fetch(inbox, [uid])[0].flags) == {"\\Flagged", "\\Seen"}
    alice_client.post(url, {"action": "unread", "uid": [uid]})
    alice_client.post(url, {"action": "unflag", "uid": [uid]})
    assert store.fetch(inbox, [uid])[0].flags == ()


def test_actions_need_csrf(alice, inbox):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.post("/login/", {"address": "alice@example.test", "password": ALICE_PW})  # refused: no token
    uid = deliver(message("csrf"))
    client.force_login(alice.user)
    response = client.post(f"/mail/{inbox.mailbox_id}/act/", {"action": "flag", "uid": [uid]})
    assert response.status_code == 403
    assert store.fetch(inbox, [uid])[0].flags == ()


def test_delete_moves_to_trash_and_undo_brings_it_back(alice_client, alice, inbox):
    uids = [deliver(message(f"del-{n}")) for n in range(3)]
    response = alice_client.post(f"/mail/{inbox.mailbox_id}/act/", {"action": "delete", "uid": uids[:2]}, follow=True)
    assert "2 messages moved to Trash" in response.content.decode()
    trash = store.folder_by_special_use(alice.pk, "\\Trash")
    assert len(store.fetch(trash)) == 2 and len(store.fetch(inbox)) == 1
    alice_client.post("/undo/")
    subjects = sorted(m.subject for m in store.fetch(inbox))
    assert subjects == ["del-0", "del-1", "del-2"]
    assert store.fetch(trash) == []


def test_delete_in_trash_is_permanent(alice_client, alice, inbox):
    uid = deliver(message("gone"))
    trash = store.folder_by_special_use(alice.pk, "\\Trash")
    store.move(inbox, [uid], trash)
    alice_client.post(f"/mail/{trash.mailbox_id}/act/", {"action": "delete", "uid": [1]})
    assert store.fetch(trash) == []


def test_move_and_archive(alice_client, alice, inbox):
    a, b = deliver(message("to-archive")), deliver(message("to-work"))
    work = store.create_folder(alice.pk, "Work")
    alice_client.post(f"/mail/{inbox.mailbox_id}/act/", {"action": "archive", "uid": [a]})
    alice_client.post(f"/mail/{inbox.mailbox_id}/act/", {"action": "move", "uid": [b], "target": work.mailbox_id})
    archive = store.folder_by_special_use(alice.pk, "\\Archive")
    assert [m.subject for m in store.fetch(archive)] == ["to-archive"]
    assert [m.subject for m in store.fetch(work)] == ["to-work"]


def test_folder_create_rename_delete(alice_client, alice):
    alice_client.post("/folders/create/", {"name": "Projects"})
    projects = store.get_folder(alice.pk, "Projects")
    alice_client.post(f"/folders/{projects.mailbox_id}/rename/", {"name": "Old projects"})
    renamed = store.get_folder(alice.pk, "Old projects")
    alice_client.post(f"/folders/{renamed.mailbox_id}/delete/")
    assert "Old projects" not in [f.name for f in store.list_folders(alice.pk)]


def test_special_folders_cannot_be_renamed_or_deleted(alice_client, alice, inbox):
    sent = store.folder_by_special_use(alice.pk, "\\Sent")
    response = alice_client.post(f"/folders/{sent.mailbox_id}/delete/", follow=True)
    assert "That folder cannot be changed" in response.content.decode()
    alice_client.post(f"/folders/{inbox.mailbox_id}/rename/", {"name": "Other"})
    names = [f.name for f in store.list_folders(alice.pk)]
    assert "Sent" in names and "INBOX" in names and "Other" not in names


def test_bad_folder_name_is_reported(alice_client, alice):
    response = alice_client.post("/folders/create/", {"name": "bad*name"}, follow=True)
    assert "That folder name is not allowed" in response.content.decode()


def test_unread_counts_endpoint_for_new_mail_polling(alice_client, inbox):
    deliver(message("poll"))
    data = alice_client.get("/counts/").json()
    assert data["inbox_unread"] == 1
    assert data["folders"][str(inbox.mailbox_id)]["unseen"] == 1


def test_vietnamese_from_the_browser_language(client, alice):
    page = client.get("/login/", HTTP_ACCEPT_LANGUAGE="vi").content.decode()
    assert "Đăng nhập hộp thư" in page and '<html lang="vi">' in page


def test_vietnamese_from_the_settings_beats_the_browser(alice_client, alice):
    alice_client.post("/settings/", {"form": "preferences", "page_size": "50", "remote_images": "ask",
                                     "language": "vi"})
    page = alice_client.get("/", follow=True, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Soạn thư" in page
