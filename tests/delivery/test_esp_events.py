"""An ESP's late bounces: Postmark's tracking webhook, posted with curl to a live server, bounces the recipient
the anymail transport had recorded as delivered and sends the sender a DSN (mailcore/delivery/esp_events.py)."""
from __future__ import annotations

import hashlib
import hmac
import json
import subprocess

import pytest

from mailcore import store
from mailcore.delivery import queue, worker
from mailcore.delivery.esp_events import late_reply
from mailcore.models import DeliveryAttempt, OutboundRecipient
from tests.support.espserver import esp_server, postmark_ok  # noqa: F401  (fixture by name)

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: plans\r\n"
    b"Message-ID: <late@example.test>\r\n\r\nSee you at noon.\r\n"
)
ESP_ID = "883953f4-6105-42a2-a16a-77a8eac79483"
SECRET = "hook-user:hook-secret"
DETAILS = "smtp; 550 5.1.1 <bob@remote.test>: Recipient address rejected: User unknown"
EXPECTED_REPLY = ("550 5.1.1 Postmark reported the message bounced after accepting it: "
                  "smtp; 550 5.1.1 <bob@remote.test>: Recipient address rejected: User unknown")

pytestmark = pytest.mark.django_db(transaction=True)  # the live server's thread must see the rows


@pytest.fixture
def sent(settings, remote, esp_server, alice):  # noqa: F811
    """A message alice sent to bob@remote.test through the fake Postmark, which gave it ESP_ID; its row."""
    settings.MAIL_RELAY = "anymail"
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    esp_server.replies.append((200, {**postmark_ok({"To": "bob@remote.test"}), "MessageID": ESP_ID}))
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    assert worker.deliver_message(message_id) == 1
    row = OutboundRecipient.objects.get(message_id=message_id)
    assert (row.state, row.esp_message_id) == ("delivered", ESP_ID)
    return row


def postmark_bounce(**changes: object) -> dict[str, object]:
    """Postmark's bounce webhook body (its documented example, about our message)."""
    return {
        "RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807, "Type": "HardBounce",
        "TypeCode": 1, "Name": "Hard bounce", "MessageID": ESP_ID, "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": DETAILS, "Email": "Bob@remote.test", "From": "alice@example.test",
        "BouncedAt": "2026-11-28T09:30:00.000Z", "Inactive": True, "CanActivate": True, "Subject": "plans",
        **changes,
    }


def post(url: str, body: dict[str, object], auth: str | None = SECRET, esp: str = "postmark") -> int:
    """POST `body` as JSON with curl (and HTTP basic auth) to the ESP's tracking webhook; the HTTP status."""
    return int(post_for_answer(url, body, auth, esp).split()[0])


def post_for_answer(url: str, body: dict[str, object], auth: str | None = SECRET, esp: str = "postmark") -> str:
    """As `post`: the HTTP status, a space and the Retry-After header's value (empty when there is none)."""
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--output", "/dev/null",
         "--write-out", "%{http_code} %header{retry-after}",
         *(["--user", auth] if auth else []), "--header", "Content-Type: application/json",
         "--data-binary", json.dumps(body), f"{url}/anymail/{esp}/tracking/"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def inbox_of(account) -> list[bytes]:
    ref = store.get_folder(account.pk, "INBOX")
    return [store.read_message(ref, uid) for uid in store.uids(ref)]


def test_a_late_bounce_turns_the_delivered_recipient_into_bounced_and_the_sender_gets_a_dsn(live_server, sent, alice):
    assert post(live_server.url, postmark_bounce()) == 200
    sent.refresh_from_db()
    assert (sent.state, sent.last_reply) == ("bounced", EXPECTED_REPLY)
    history = list(DeliveryAttempt.objects.filter(recipient=sent).order_by("id").values_list("outcome", "reply"))
    assert history[0][0] == "delivered" and history[1] == ("bounced", EXPECTED_REPLY)
    [dsn] = inbox_of(alice)
    assert b"Final-Recipient: rfc822; bob@remote.test\r\nAction: failed\r\nStatus: 5.1.1\r\n" in dsn
    assert f"Diagnostic-Code: smtp; {EXPECTED_REPLY}\r\n".encode() in dsn
    assert b"Message-ID: <late@example.test>" in dsn  # the original's headers (RFC 3464 §2: text/rfc822-headers)


def test_a_bounce_reported_before_the_esps_api_answered_is_taken_when_the_esp_calls_again(
        live_server, settings, remote, esp_server, alice):  # noqa: F811
    """The ESP posts the bounce while its answer to our send is on its way: no row has the ESP's id yet.
    The webhook answers 503 and Retry-After and changes nothing; the ESP's next call finds the delivered row."""
    settings.MAIL_RELAY = "anymail"
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    esp_server.replies.append((200, {**postmark_ok({"To": "bob@remote.test"}), "MessageID": ESP_ID}))
    answers: list[str] = []
    esp_server.state.before_reply = lambda request: answers.append(post_for_answer(live_server.url, postmark_bounce()))
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    assert worker.deliver_message(message_id) == 1
    assert answers == ["503 60"]
    row = OutboundRecipient.objects.get(message_id=message_id)
    assert (row.state, row.esp_message_id) == ("delivered", ESP_ID) and inbox_of(alice) == []

    assert post_for_answer(live_server.url, postmark_bounce()) == "200 "
    row.refresh_from_db()
    assert (row.state, row.last_reply) == ("bounced", EXPECTED_REPLY)
    [dsn] = inbox_of(alice)
    assert b"Status: 5.1.1\r\n" in dsn


def test_the_same_event_posted_again_changes_nothing_more(live_server, sent, alice):
    assert post(live_server.url, postmark_bounce()) == 200
    assert post(live_server.url, postmark_bounce()) == 200  # ESPs repeat a webhook they think failed
    assert len(inbox_of(alice)) == 1
    assert DeliveryAttempt.objects.filter(recipient=sent).count() == 2


def test_a_wrong_secret_is_refused_and_changes_nothing(live_server, sent, alice):
    assert post(live_server.url, postmark_bounce(), auth="hook-user:guess") == 400
    sent.refresh_from_db()
    assert sent.state == "delivered" and inbox_of(alice) == []


def test_without_a_webhook_secret_events_are_not_believed(live_server, sent, alice, settings):
    settings.ANYMAIL = {key: value for key, value in settings.ANYMAIL.items() if key != "WEBHOOK_SECRET"}
    with pytest.warns(Warning, match="webhooks are insecure"):  # Anymail's own warning, in the server's thread
        assert post(live_server.url, postmark_bounce()) == 200
    sent.refresh_from_db()
    assert sent.state == "delivered" and inbox_of(alice) == []


@pytest.mark.parametrize("changes", [
    {"RecordType": "Delivery", "DeliveredAt": "2026-11-28T09:30:00Z", "Recipient": "bob@remote.test"},
    {"Type": "Transient"},  # Postmark still trying: Anymail's "deferred"
    {"MessageID": "00000000-0000-0000-0000-000000000000"},  # not a message we sent
    {"Email": "carol@remote.test"},  # not a recipient of ours in that message
])
def test_other_events_change_nothing(live_server, sent, alice, changes):
    assert post(live_server.url, postmark_bounce(**changes)) == 200
    sent.refresh_from_db()
    assert sent.state == "delivered" and inbox_of(alice) == []


def test_the_reply_takes_the_servers_permanent_code_and_status_or_else_the_events():
    assert late_reply("Mailgun", "bounced", "550-5.2.2 The mailbox is full", "") == (
        "550 5.2.2 Mailgun reported the message bounced after accepting it: 550-5.2.2 The mailbox is full")
    assert late_reply("SendGrid", "bounced", "552 mailbox over quota", "") == (
        "552 5.0.0 SendGrid reported the message bounced after accepting it: 552 mailbox over quota")
    assert late_reply("Postmark", "rejected", "", "Address is on the suppression list") == (
        "550 5.7.1 Postmark reported the message rejected after accepting it: Address is on the suppression list")
    assert late_reply("Postmark", "bounced", "421 4.7.0 try later", "") == (  # not a permanent reply: not taken
        "550 5.0.0 Postmark reported the message bounced after accepting it: 421 4.7.0 try later")
    assert late_reply("Mailgun", "bounced", "5.1.1 The email account that you tried to reach does not exist", "") == (
        "550 5.1.1 Mailgun reported the message bounced after accepting it: "
        "5.1.1 The email account that you tried to reach does not exist")
    assert late_reply("Brevo", "failed", "", "") == (
        "550 5.0.0 Brevo reported the message failed after accepting it: no detail given")


MAILGUN_KEY = "mailgun-signing-key"


def mailgun_failure(signature: str | None = None) -> dict[str, object]:
    """Mailgun's permanent-failure webhook body (its documented shape), signed with MAILGUN_KEY (HMAC-SHA256)."""
    timestamp, token = "1764322200", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    expected = hmac.new(MAILGUN_KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature or expected},
        "event-data": {
            "event": "failed", "severity": "permanent", "reason": "bounce", "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "timestamp": 1764322200.5, "recipient": "bob@remote.test", "message": {"headers": {"message-id": ESP_ID}},
            "delivery-status": {"code": 550, "message": "5.1.1 The email account that you tried to reach does not exist",
                                "description": ""},
        },
    }


def test_an_esp_that_signs_its_webhooks_is_believed_without_a_webhook_secret(live_server, sent, alice, settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}  # no WEBHOOK_SECRET: the signature is the proof
    # As a send through Mailgun records it: its API's id, angle brackets included, as its webhooks name it.
    OutboundRecipient.objects.filter(pk=sent.pk).update(esp_message_id=f"<{ESP_ID}>")
    assert post(live_server.url, mailgun_failure(signature="0" * 64), auth=None, esp="mailgun") == 400
    sent.refresh_from_db()
    assert sent.state == "delivered"
    assert post(live_server.url, mailgun_failure(), auth=None, esp="mailgun") == 200
    sent.refresh_from_db()
    assert (sent.state, sent.last_reply) == ("bounced", "550 5.1.1 Mailgun reported the message bounced after "
                                             "accepting it: 5.1.1 The email account that you tried to reach does not exist")
    assert len(inbox_of(alice)) == 1
