"""Rich text from the editor: the HTML part is sanitised with nh3 on send, next to the plain-text part."""
from __future__ import annotations

import pytest

from mailcore import mime, store
from webmail.sanitize import sanitize_outgoing

pytestmark = pytest.mark.django_db

HOSTILE = ('<div><b>Bold</b> and <a href="javascript:alert(1)" onclick="x()">bad link</a> '
           '<a href="https://example.org/">good link</a><script>alert(1)</script>'
           '<img src="https://tracker.test/p.gif"><style>body{display:none}</style>'
           '<form action="https://evil.test/"><input name=p></form>'
           '<span style="position:fixed">kept text</span></div>')


def test_outgoing_html_keeps_formatting_and_drops_active_content():
    clean = sanitize_outgoing(HOSTILE)
    assert "<b>Bold</b>" in clean and '<a href="https://example.org/" rel="noopener noreferrer">good link</a>' in clean
    for bad in ("script", "alert", "onclick", "javascript", "<img", "tracker.test", "<style", "<form",
                "evil.test", "position", "<input"):
        assert bad not in clean
    assert "kept text" in clean and "bad link" in clean


def test_sanitising_twice_gives_the_same_output():
    once = sanitize_outgoing(HOSTILE + "<p>unclosed <i>italic")
    assert sanitize_outgoing(once) == once


def test_rich_text_send_has_a_sanitised_html_part_and_a_text_part(alice_client, alice, bob):
    response = alice_client.post("/compose/", {"action": "send", "sender": "alice@example.test",
                                               "to": "bob@example.test", "subject": "Rich",
                                               "text": "Bold and bad link good link kept text", "html": HOSTILE})
    assert response.status_code == 302
    inbox = store.get_folder(bob.pk, store.INBOX)
    got = store.fetch(inbox)[0]
    raw = store.read_message(inbox, got.uid)
    html_path, _text_paths = mime.display_parts(got.bodystructure)
    html = mime.part_text(raw, mime.part_at(got.bodystructure, html_path))
    assert "<b>Bold</b>" in html and "script" not in html and "javascript" not in html and "tracker" not in html
    text = mime.extract_text(raw, got.bodystructure)
    assert "Bold and bad link" in text


def test_plain_text_send_has_no_html_part(alice_client, alice, bob):
    alice_client.post("/compose/", {"action": "send", "sender": "alice@example.test", "to": "bob@example.test",
                                    "subject": "Plain", "text": "just text", "html": "  "})
    got = store.fetch(store.get_folder(bob.pk, store.INBOX))[0]
    assert mime.display_parts(got.bodystructure)[0] is None


def test_compose_page_loads_the_vendored_editor_from_our_own_origin(alice_client, alice):
    page = alice_client.get("/compose/").content.decode()
    assert '/static/vendor/squire/squire' in page and 'id="rich-editor"' in page and "<script>" not in page


def test_a_rich_text_draft_reopens_with_its_sanitised_html_and_sends_as_alternative(alice_client, alice, bob):
    response = alice_client.post("/compose/", {"action": "draft", "sender": "alice@example.test",
                                               "to": "bob@example.test", "subject": "Rich draft",
                                               "text": "Bold and bad link good link kept text", "html": HOSTILE})
    assert response.status_code == 302
    drafts = store.folder_by_special_use(alice.pk, "\\Drafts")
    uid = store.fetch(drafts)[0].uid
    page = alice_client.get(f"/compose/?draft={uid}").content.decode()
    # The editor's data-html attribute carries the draft's HTML part, sanitised again, escaped for the attribute.
    assert 'data-html="&lt;div&gt;&lt;b&gt;Bold&lt;/b&gt;' in page
    for bad in ("script", "javascript", "onclick", "tracker.test"):
        assert bad not in page.split('id="rich-editor"')[1].split(">")[0]
    assert "Bold and bad link" in page  # the textarea keeps the text part (sent as is without JavaScript)

    # What the browser posts back from the reopened editor: text and HTML, sent as multipart/alternative.
    html = sanitize_outgoing(HOSTILE)
    response = alice_client.post("/compose/", {"action": "send", "sender": "alice@example.test",
                                               "to": "bob@example.test", "subject": "Rich draft",
                                               "text": "Bold and bad link good link kept text", "html": html,
                                               "draft_uid": str(uid)})
    assert response.status_code == 302 and store.fetch(drafts) == []
    inbox = store.get_folder(bob.pk, store.INBOX)
    got = store.fetch(inbox)[0]
    raw = store.read_message(inbox, got.uid)
    assert b"Content-Type: multipart/alternative" in raw
    html_path, _text_paths = mime.display_parts(got.bodystructure)
    assert "<b>Bold</b>" in mime.part_text(raw, mime.part_at(got.bodystructure, html_path))
    assert b"Content-Type: text/plain" in raw and "Bold and bad link" in mime.extract_text(raw, got.bodystructure)


def test_a_plain_draft_reopens_without_html(alice_client, alice):
    alice_client.post("/compose/", {"action": "draft", "sender": "alice@example.test", "to": "bob@example.test",
                                    "subject": "Plain draft", "text": "only text", "html": ""})
    uid = store.fetch(store.folder_by_special_use(alice.pk, "\\Drafts"))[0].uid
    page = alice_client.get(f"/compose/?draft={uid}").content.decode()
    assert 'data-html=""' in page and "only text" in page
