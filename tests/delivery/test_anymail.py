"""The anymail transport: django-anymail's Postmark backend posting to a fake Postmark API on loopback."""
from __future__ import annotations

import base64

import pytest

from mailcore import store
from mailcore.delivery import queue, worker
from mailcore.models import DeliveryAttempt, OutboundRecipient
from tests.support.espserver import EspServer, esp_server, postmark_inactive  # noqa: F401  (fixture by name)

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@remote.test>\r\n"
    b"Cc: carol@other.test\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= plans\r\n"
    b"Date: Fri, 27 Nov 2026 20:00:00 +0000\r\n"
    b"Message-ID: <m1@example.test>\r\n"
    b"In-Reply-To: <m0@remote.test>\r\n"
    b"Reply-To: alice+replies@example.test\r\n"
    b"X-Campaign: autumn\r\n"
    b"Received: from laptop by mail.example.test\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="mix"\r\n'
    b"\r\n"
    b"--mix\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n'
    b"\r\n"
    b"--alt\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=C3=A9 at noon.\r\n"
    b"--alt\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Caf\xc3\xa9 at noon.</p>\r\n"
    b"--alt--\r\n"
    b"--mix\r\n"
    b"Content-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="menu.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--mix--\r\n"
)
TOKEN_HEADER = "X-Postmark-Server-Token"


@pytest.fixture
def esp(settings, remote, esp_server):  # noqa: F811
    """MAIL_RELAY=anymail; the loopback SMTP receiver (remote) is there to show nothing goes to an MX."""
    settings.MAIL_RELAY = "anymail"
    return esp_server


def rows(message_id: int) -> dict[str, OutboundRecipient]:
    return {r.address: r for r in OutboundRecipient.objects.filter(message_id=message_id)}


def inbox_of(account) -> list[bytes]:
    ref = store.get_folder(account.pk, "INBOX")
    return [store.read_message(ref, uid) for uid in store.uids(ref)]


def test_message_goes_to_the_esp_api_as_one_request_with_its_headers_bodies_and_attachment(esp, remote):
    recipients = ["bob@remote.test", "carol@other.test", "dave@third.test"]
    message_id = queue.enqueue(MESSAGE, "alice@example.test", recipients)
    assert worker.deliver_message(message_id) == 3
    [request] = esp.requests
    assert request.path == "/email" and request.headers[TOKEN_HEADER] == "test-server-token"
    body = request.body
    assert body["From"] == "Alice <alice@example.test>"
    assert (body["To"], body["Cc"], body["Bcc"]) == ("bob@remote.test", "carol@other.test", "dave@third.test")
    assert body["Subject"] == "café plans"
    assert body["ReplyTo"] == "alice+replies@example.test"
    # RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary.
    assert body["TextBody"] == "Café at noon." and body["HtmlBody"] == "<p>Café at noon.</p>"
    headers = {h["Name"]: h["Value"] for h in body["Headers"]}
    assert headers == {"Date": "Fri, 27 Nov 2026 20:00:00 +0000", "Message-ID": "<m1@example.test>",
                       "In-Reply-To": "<m0@remote.test>", "X-Campaign": "autumn"}
    [attachment] = body["Attachments"]
    assert (attachment["Name"], attachment["ContentType"]) == ("menu.pdf", "application/pdf")
    assert base64.b64decode(attachment["Content"]) == b"%PDF-1.4\n"
    assert remote.messages == []  # nothing went to an MX
    for row in rows(message_id).values():
        assert (row.state, row.attempts, row.mx_host) == ("delivered", 1, esp.url[7:-1])
        assert row.last_reply.startswith("250 2.0.0 accepted by Postmark (id ")


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_from_the_esp_defers_and_the_retry_delivers(esp, status):
    esp.replies.append((status, {"ErrorCode": 100, "Message": "Maintenance"}))
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    assert worker.deliver_message(message_id) == 0
    row = rows(message_id)["bob@remote.test"]
    assert row.state == "deferred"
    assert row.last_reply == (f'451 4.3.0 Postmark API answered HTTP {status}: '
                              '{"ErrorCode": 100, "Message": "Maintenance"}')
    OutboundRecipient.objects.filter(pk=row.pk).update(next_attempt_at=row.updated_at)
    assert worker.deliver_message(message_id) == 1
    assert len(esp.requests) == 2
    outcomes = list(DeliveryAttempt.objects.filter(recipient=row).values_list("transport", "outcome"))
    assert outcomes == [("anymail", "deferred"), ("anymail", "delivered")]


def test_an_unreachable_esp_defers(esp, settings):
    esp.stop()
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    row = rows(message_id)["bob@remote.test"]
    assert row.state == "deferred" and row.last_reply.startswith("451 4.4.1 Postmark API unreachable: ")


def test_a_recipient_the_esp_rejects_bounces_with_a_dsn_in_the_senders_inbox(esp, alice):
    esp.replies.append(postmark_inactive(["bob@remote.test"]))
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    assert worker.deliver_message(message_id) == 0
    row = rows(message_id)["bob@remote.test"]
    assert row.state == "bounced"
    assert row.last_reply.startswith("550 5.7.1 recipient rejected by Postmark: {\"ErrorCode\": 406, ")
    [dsn] = inbox_of(alice)
    assert b"Final-Recipient: rfc822; bob@remote.test\r\nAction: failed\r\nStatus: 5.7.1\r\n" in dsn
    assert f"Remote-MTA: dns; {esp.url[7:-1]}".encode() in dsn
    assert b"Diagnostic-Code: smtp; 550 5.7.1 recipient rejected by Postmark: " in dsn
    assert b"Message-ID: <m1@example.test>" in dsn


def test_a_request_the_esp_refuses_outright_bounces(esp, alice):
    esp.replies.append((422, {"ErrorCode": 300, "Message": "Invalid 'From' address: 'x'."}))
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    row = rows(message_id)["bob@remote.test"]
    assert row.state == "bounced" and row.last_reply.startswith("554 5.0.0 Postmark API answered HTTP 422: ")


def test_a_wrong_token_defers_instead_of_bouncing(esp):
    esp.replies.append((401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}))
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    row = rows(message_id)["bob@remote.test"]
    assert row.state == "deferred" and row.last_reply.startswith("451 4.7.0 Postmark API answered HTTP 401: ")


def test_without_a_backend_setting_mail_waits(esp, settings):
    settings.MAIL_ANYMAIL_BACKEND = ""
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    row = rows(message_id)["bob@remote.test"]
    assert (row.state, row.last_reply) == (
        "deferred", "451 4.3.5 transport anymail chosen but MAIL_ANYMAIL_BACKEND is not set"
    )
    assert esp.requests == []


def test_a_plain_text_message_without_mime_or_from_headers_keeps_its_body_and_uses_the_envelope_sender(esp):
    plain = b"To: bob@remote.test\r\nSubject: hi\r\n\r\nJust text.\r\n"
    worker.deliver_message(queue.enqueue(plain, "alice@example.test", ["bob@remote.test"]))
    [request] = esp.requests
    assert request.body["From"] == "alice@example.test"
    assert request.body["TextBody"] == "Just text.\n" and "HtmlBody" not in request.body
    assert "Attachments" not in request.body


def test_an_inline_image_keeps_its_content_id_and_an_attached_message_stays_whole(esp: EspServer):
    related = (
        b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: logo\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
        b'--m\r\nContent-Type: multipart/related; boundary="r"\r\n\r\n'
        b'--r\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<img src="cid:logo@example.test">\r\n'
        b"--r\r\nContent-Type: image/png\r\nContent-ID: <logo@example.test>\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\niVBORw0KGgo=\r\n--r--\r\n"
        b"--m\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@remote.test\r\nSubject: fwd\r\n\r\nold\r\n--m--\r\n"
    )
    worker.deliver_message(queue.enqueue(related, "alice@example.test", ["bob@remote.test"]))
    [request] = esp.requests
    assert request.body["HtmlBody"] == '<img src="cid:logo@example.test">' and "TextBody" not in request.body
    image, forwarded = request.body["Attachments"]
    assert (image["ContentType"], image["ContentID"]) == ("image/png", "cid:logo@example.test")
    assert base64.b64decode(image["Content"]) == b"\x89PNG\r\n\x1a\n"
    assert forwarded["ContentType"] == "message/rfc822"
    assert base64.b64decode(forwarded["Content"]) == b"From: x@remote.test\r\nSubject: fwd\r\n\r\nold"
