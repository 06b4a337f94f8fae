"""SRS: mail an alias forwards to another domain leaves with a rewritten sender; bounces come back through us."""
from __future__ import annotations

import re
import smtplib
import time

import pytest

from mailcore import srs
from mailcore.address import parse_address
from mailcore.delivery import worker
from mailcore.directory import create_alias
from mailcore.models import OutboundMessage, OutboundRecipient
from tests.support.smtpreceiver import smtp_receiver  # noqa: F401  (a fixture, used by name)

pytestmark = pytest.mark.django_db(transaction=True)

REWRITTEN = re.compile(r"SRS0=[A-Z2-7]{6}=[A-Z2-7]{2}=remote\.test=carol@example\.test")
MESSAGE = b"From: Carol <carol@remote.test>\r\nTo: fwd@example.test\r\nSubject: forwarded\r\n\r\nHi.\r\n"
BOUNCE = b"From: MAILER-DAEMON@mx.remote.test\r\nTo: carol@remote.test\r\nSubject: Undelivered\r\n\r\nNo.\r\n"
REMOTE_ZONE = {"remote.test": {"MX": ["10 mx.remote.test."]}, "mx.remote.test": {"A": ["127.0.0.1"]}}


@pytest.fixture
def forwarding(bob, dns_server, smtp_receiver):  # noqa: F811
    dns_server.records.update(REMOTE_ZONE)
    create_alias("fwd@example.test", ["dave@remote.test"])
    return smtp_receiver


def deliver_queued_to(address: str) -> OutboundMessage:
    """Run delivery for the message queued to `address` (it may go out with others the same run takes)."""
    [row] = OutboundRecipient.objects.filter(address=address)
    if row.state == OutboundRecipient.QUEUED:
        worker.deliver_message(row.message_id)
    return row.message


def test_a_remote_sender_is_rewritten_into_the_forwarding_domain_and_back(domain):
    rewritten = srs.forward_sender("carol@remote.test", "example.test")
    assert REWRITTEN.fullmatch(rewritten)
    assert srs.reverse(parse_address(rewritten)) == "carol@remote.test"
    assert srs.reverse(parse_address(rewritten.lower())) == "carol@remote.test"  # case changes on the way


@pytest.mark.parametrize(
    "sender",
    ["", "bob@example.test", '"carol smith"@remote.test', "c" * 40 + "@a-rather-long-domain-name.remote.test"],
    ids=["null", "hosted", "quoted", "too-long"],
)
def test_senders_that_are_not_rewritten(domain, sender):
    assert srs.forward_sender(sender, "example.test") == sender


def test_the_setting_turns_rewriting_off(domain, settings):
    settings.MAIL_SRS = False
    assert srs.forward_sender("carol@remote.test", "example.test") == "carol@remote.test"


def test_a_forged_or_expired_address_does_not_reverse(domain, monkeypatch):
    rewritten = parse_address(srs.forward_sender("carol@remote.test", "example.test"))
    forged_hash = rewritten.local[:5] + ("A" if rewritten.local[5] != "A" else "B") + rewritten.local[6:]
    assert srs.reverse(parse_address(f"{forged_hash}@example.test")) is None
    other_sender = rewritten.local.replace("=carol", "=mallory")
    assert srs.reverse(parse_address(f"{other_sender}@example.test")) is None
    shifted = rewritten.local.replace("=remote.test=carol", "=remote.testc=arol")  # same letters, other address
    assert srs.reverse(parse_address(f"{shifted}@example.test")) is None
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + srs.MAX_AGE_DAYS * 86400)
    assert srs.reverse(rewritten) == "carol@remote.test"
    monkeypatch.setattr(time, "time", lambda: now + (srs.MAX_AGE_DAYS + 1) * 86400)
    assert srs.reverse(rewritten) is None


def test_forwarded_mail_leaves_with_the_rewritten_sender_and_its_bounce_reaches_the_original(mx_port, forwarding):
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as client:
        client.sendmail("carol@remote.test", ["fwd@example.test"], MESSAGE)
    deliver_queued_to("dave@remote.test")
    [forwarded] = forwarding.messages
    assert REWRITTEN.fullmatch(forwarded.sender) and forwarded.recipients == ["dave@remote.test"]
    assert forwarded.data.endswith(MESSAGE)

    # The next hop bounces to the rewritten sender: our MX takes it and sends it on to Carol, sender <>.
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as client:
        client.ehlo("mx.remote.test")
        assert client.mail("<>") == (250, b"2.1.0 Sender OK")
        assert client.rcpt(forwarded.sender) == (250, b"2.1.5 Recipient OK")
        assert client.data(BOUNCE)[0] == 250
    bounce = deliver_queued_to("carol@remote.test")
    assert bounce.sender == ""
    _, returned = forwarding.messages
    assert (returned.sender, returned.recipients) == ("<>", ["carol@remote.test"])  # aiosmtpd shows <> so
    assert returned.data.endswith(BOUNCE)


def test_our_own_dsn_for_forwarded_mail_reaches_the_original_sender(mx_port, forwarding):
    forwarding.handler.rcpt_replies["dave@remote.test"] = "550 5.1.1 no such user"
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as client:
        client.sendmail("carol@remote.test", ["fwd@example.test"], MESSAGE)
    deliver_queued_to("dave@remote.test")
    dsn = deliver_queued_to("carol@remote.test")
    assert dsn.sender == ""
    [returned] = forwarding.messages
    assert (returned.sender, returned.recipients) == ("<>", ["carol@remote.test"])
    assert b"Content-Type: multipart/report; report-type=delivery-status" in returned.data


@pytest.mark.parametrize("catch_all", [False, True], ids=["plain", "with-catch-all"])
def test_a_forged_srs_address_is_an_unknown_user(mx_port, bob, raw_client, catch_all):
    if catch_all:
        create_alias("@example.test", ["bob@example.test"])  # forged SRS addresses are not swallowed by it
    client = raw_client(mx_port)
    client.command("EHLO mx.remote.test")
    client.command("MAIL FROM:<>")
    address = "SRS0=AAAAAA=AA=remote.test=carol@example.test"
    assert client.command(f"RCPT TO:<{address}>") == (
        f"550 5.1.1 <{address}>: Recipient address rejected: no such user here"
    )
