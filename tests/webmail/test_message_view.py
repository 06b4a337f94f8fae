"""Showing messages: sanitised HTML in a sandboxed frame, remote images blocked, safe downloads, the corpus."""
from __future__ import annotations

import pytest

from mailcore import store
from tests.conftest import corpus_files
from tests.webmail.conftest import deliver, message

pytestmark = pytest.mark.django_db

HTML = message(
    "html mail", content_type='multipart/related; boundary="r"',
    body=(
        '--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n'
        '<p onclick="steal()">Hello <b>friend</b></p><script>alert(1)</script>'
        '<img src="https://tracker.test/pixel.gif"><img src="cid:logo@x">'
        '<a href="https://example.org/">link</a><a href="javascript:alert(1)">bad</a>\r\n'
        '--r\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        'iVBORw0KGgo=\r\n--r--'
    ),
)


def test_html_body_is_in_a_sandboxed_frame_without_scripts_or_same_origin(alice_client, inbox):
    uid = deliver(HTML)
    page = alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/").content.decode()
    assert f'src="/mail/{inbox.mailbox_id}/{uid}/body/" sandbox="allow-popups allow-popups-to-escape-sandbox"' in page
    assert "allow-scripts" not in page and "allow-same-origin" not in page
    assert "Remote images are blocked" in page


def test_body_frame_is_sanitised_under_its_own_strict_csp(alice_client, inbox):
    uid = deliver(HTML)
    response = alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/body/")
    body = response.content.decode()
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "img-src 'self';" in csp and "sandbox" in csp
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert "<script" not in body and "onclick" not in body and "javascript:" not in body
    assert "tracker.test" not in body
    assert f'src="/mail/{inbox.mailbox_id}/{uid}/inline/2/"' in body
    assert '<a href="https://example.org/" target="_blank" rel="noopener noreferrer">link</a>' in body


def test_show_images_loads_remote_images_for_this_message_only(alice_client, inbox):
    uid = deliver(HTML)
    other = deliver(HTML.replace(b"html mail", b"other mail"))
    alice_client.post(f"/mail/{inbox.mailbox_id}/{uid}/images/")
    response = alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/body/")
    assert "https://tracker.test/pixel.gif" in response.content.decode()
    assert "https:" in response["Content-Security-Policy"]
    assert b"tracker.test" not in alice_client.get(f"/mail/{inbox.mailbox_id}/{other}/body/").content


def test_always_show_images_for_a_sender(alice_client, inbox):
    uid = deliver(HTML)
    other = deliver(HTML.replace(b"html mail", b"second"))
    alice_client.post(f"/mail/{inbox.mailbox_id}/{uid}/images/", {"always": "1"})
    assert b"tracker.test" in alice_client.get(f"/mail/{inbox.mailbox_id}/{other}/body/").content


def test_inline_image_is_served_with_its_type_and_nosniff(alice_client, inbox):
    uid = deliver(HTML)
    response = alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/inline/2/")
    assert response["Content-Type"] == "image/png" and response["X-Content-Type-Options"] == "nosniff"
    assert response.content == b"\x89PNG\r\n\x1a\n"


def test_attachment_download_is_attachment_with_sanitised_name_and_nosniff(alice_client, inbox):
    raw = message(
        "files", content_type='multipart/mixed; boundary="b"',
        body='--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: text/html\r\n'
             'Content-Disposition: attachment; filename="../../evil\\".html"\r\n\r\n<script>x</script>\r\n--b--',
    )
    uid = deliver(raw)
    page = alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/").content.decode()
    assert f"/mail/{inbox.mailbox_id}/{uid}/part/2/" in page
    response = alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/part/2/")
    assert response["Content-Type"] == "application/octet-stream"
    assert response["X-Content-Type-Options"] == "nosniff"
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "/" not in disposition.split("filename", 1)[1] and ".." not in disposition.replace("...", "")
    assert response.content == b"<script>x</script>"


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_every_corpus_message_renders_in_the_message_view(alice_client, inbox, path):
    uid = deliver(path.read_bytes())
    response = alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/")
    assert response.status_code == 200
    info = store.fetch(inbox, [uid])[0]
    if b"/body/" in response.content:
        assert alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/body/").status_code == 200
    for part in [p for p in response.content.decode().split('/part/')[1:]]:
        section = part.split("/", 1)[0]
        assert alice_client.get(f"/mail/{inbox.mailbox_id}/{uid}/part/{section}/").status_code == 200
    assert alice_client.get(f"/mail/{inbox.mailbox_id}/").status_code == 200
    assert info.uid == uid
