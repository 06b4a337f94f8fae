"""The MX listener over real sockets: smtplib for normal mail, a raw client for exact replies."""
from __future__ import annotations

import smtplib

import pytest

from mailcore import store
from mailcore.directory import create_account, create_alias
from mailcore.models import Account, OutboundRecipient

from .conftest import HOSTNAME

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: Carol <carol@remote.test>\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nHi Bob.\r\n"


def inbox_messages(account) -> list[bytes]:
    ref = store.get_folder(account.pk, store.INBOX)
    return [store.read_message(ref, uid) for uid in store.uids(ref)]


def test_greeting_and_ehlo_advertise_exactly_what_the_mx_does(mx_port, raw_client):
    client = raw_client(mx_port)
    assert client.command("EHLO client.remote.test") == "\n".join(
        [
            f"250-{HOSTNAME} Hello client.remote.test",
            "250-PIPELINING",
            "250-SIZE 52428800",
            "250-8BITMIME",
            "250-SMTPUTF8",
            "250-ENHANCEDSTATUSCODES",
            "250-CHUNKING",
            "250-DSN",
            "250 STARTTLS",
        ]
    )


MX_COMMANDS = "BDAT DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET STARTTLS VRFY"


def test_help_lists_every_command_the_mx_takes(mx_port, raw_client):
    """RFC 5321 §4.1.1.8. STARTTLS only while it can still be used; AUTH never (not offered on the MX)."""
    client = raw_client(mx_port)
    assert client.command("HELP") == f"250 2.0.0 Supported commands: {MX_COMMANDS}"
    assert client.command("HELP bdat") == "250 2.0.0 Syntax: BDAT <chunk-size> [LAST]"
    assert client.command("HELP AUTH") == f"501 5.5.4 Supported commands: {MX_COMMANDS}"
    client.command("EHLO client.remote.test")
    assert client.command("STARTTLS") == "220 2.0.0 Ready to start TLS"
    client.starttls()
    assert client.command("HELP") == f"250 2.0.0 Supported commands: {MX_COMMANDS.replace(' STARTTLS', '')}"


def test_mail_for_bob_is_in_his_inbox_with_trace_headers(mx_port, bob):
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as client:
        client.ehlo("client.remote.test")
        refused = client.sendmail("carol@remote.test", ["bob@example.test"], MESSAGE)
    assert refused == {}
    [stored] = inbox_messages(bob)
    lines = stored.split(b"\r\n")
    assert lines[0] == b"Return-Path: <carol@remote.test>"
    assert lines[1] == b"Received: from client.remote.test ([127.0.0.1])"
    assert lines[2].startswith(b"\tby mx.example.test with ESMTP id ")
    assert lines[3].startswith(b"\tfor <bob@example.test>; ")
    assert lines[4] == b"Authentication-Results: mx.example.test;"
    assert stored.endswith(MESSAGE)


def test_data_reply_is_250_with_enhanced_code(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    assert client.command("MAIL FROM:<carol@remote.test>") == "250 2.1.0 Sender OK"
    assert client.command("RCPT TO:<bob@example.test>") == "250 2.1.5 Recipient OK"
    assert client.command("DATA") == "354 End data with <CR><LF>.<CR><LF>"
    reply = client.command(MESSAGE + b".")
    assert reply.startswith("250 2.0.0 Message accepted for delivery (")
    assert len(inbox_messages(bob)) == 1


def test_rcpt_for_unknown_user_is_550_at_rcpt_time(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.command("MAIL FROM:<carol@remote.test>")
    assert (
        client.command("RCPT TO:<nobody@example.test>")
        == "550 5.1.1 <nobody@example.test>: Recipient address rejected: no such user here"
    )


def test_rcpt_for_other_domain_is_refused_as_relay(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.command("MAIL FROM:<carol@remote.test>")
    assert client.command("RCPT TO:<dave@remote.test>") == "554 5.7.1 <dave@remote.test>: Relay access denied"


@pytest.mark.parametrize(
    ("rcpt", "reply"),
    [
        ("<bob%remote.test@example.test>", "554 5.7.1 <bob%remote.test@example.test>: Relay access denied"),
        ("<remote.test!bob@example.test>", "554 5.7.1 <remote.test!bob@example.test>: Relay access denied"),
        ('<"bob@remote.test"@example.test>', '554 5.7.1 <"bob@remote.test"@example.test>: Relay access denied'),
        ("<@example.test:bob@remote.test>", "553 5.7.1 Source routes are not accepted"),
        ("<@example.test,@x.test:bob@example.test>", "553 5.7.1 Source routes are not accepted"),
    ],
)
def test_address_tricks_never_relay(mx_port, bob, raw_client, rcpt, reply):
    create_alias("@example.test", ["bob@example.test"])  # even a catch-all does not make them local
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.command("MAIL FROM:<carol@remote.test>")
    assert client.command(f"RCPT TO:{rcpt}") == reply


def test_postmaster_is_accepted_and_delivered_to_the_configured_mailbox(mx_port, bob, raw_client, settings):
    settings.MAIL_POSTMASTER = "bob@example.test"
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.command("MAIL FROM:<>")
    assert client.command("RCPT TO:<postmaster@example.test>") == "250 2.1.5 Recipient OK"
    assert client.command("RCPT TO:<Postmaster>") == "250 2.1.5 Recipient OK"
    client.command("DATA")
    assert client.command(b"Subject: bounce\r\n\r\nx\r\n.").startswith("250 2.0.0")
    [stored] = inbox_messages(bob)
    assert stored.startswith(b"Return-Path: <>\r\n")


@pytest.mark.parametrize("hostname", ["mail.example.test", "mx.elsewhere.test"])
def test_bare_postmaster_goes_to_the_postmaster_of_a_hosted_domain(smtp_settings, servers, bob, raw_client, hostname):
    """RFC 5321 §4.5.1: <Postmaster> without a domain is accepted; without MAIL_POSTMASTER it is postmaster@
    the hosted domain the server's name is in, else of the first hosted domain. bob is example.test's."""
    smtp_settings.MAIL_HOSTNAME = hostname
    client = raw_client(servers.start("mx"), greet=False)
    assert client.reply() == f"220 {hostname} ESMTP ready"
    client.command("EHLO client.remote.test")
    client.command("MAIL FROM:<carol@remote.test>")
    assert client.command("RCPT TO:<Postmaster>") == "250 2.1.5 Recipient OK"
    client.command("DATA")
    assert client.command(b"Subject: hello\r\n\r\nx\r\n.").startswith("250 2.0.0")
    assert len(inbox_messages(bob)) == 1


def test_postmaster_alias_is_accepted(mx_port, bob, raw_client):
    # bob, the domain's first account, became its postmaster (mailcore.directory).
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.command("MAIL FROM:<carol@remote.test>")
    assert client.command("RCPT TO:<POSTMASTER@example.test>") == "250 2.1.5 Recipient OK"


def test_the_101st_recipient_is_452_too_many(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.command("MAIL FROM:<carol@remote.test>")
    client.send(b"".join(b"RCPT TO:<bob+%d@example.test>\r\n" % n for n in range(100)))
    assert [client.reply() for _ in range(100)] == ["250 2.1.5 Recipient OK"] * 100
    assert client.command("RCPT TO:<bob@example.test>") == "452 4.5.3 Too many recipients"


def test_full_mailbox_is_452_at_rcpt_time(mx_port, bob, raw_client):
    Account.objects.filter(pk=bob.pk).update(quota_bytes=100, used_bytes=100)
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.command("MAIL FROM:<carol@remote.test>")
    assert client.command("RCPT TO:<bob@example.test>") == "452 4.2.2 <bob@example.test>: Mailbox full"


def test_declared_size_over_the_limit_is_552(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    assert client.command("MAIL FROM:<carol@remote.test> SIZE=52428801") == (
        "552 5.3.4 Error: message size exceeds fixed maximum message size"
    )


def test_data_over_the_size_limit_is_552_and_nothing_is_stored(smtp_settings, servers, bob, raw_client):
    smtp_settings.MAIL_MAX_MESSAGE_SIZE = 1000
    client = raw_client(servers.start("mx"))
    client.command("EHLO client.remote.test")
    client.command("MAIL FROM:<carol@remote.test>")
    client.command("RCPT TO:<bob@example.test>")
    client.command("DATA")
    assert client.command(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 20 + b".") == (
        "552 5.3.4 Message exceeds the maximum size of 1000 octets"
    )
    assert client.command("NOOP") == "250 2.0.0 OK"
    assert inbox_messages(bob) == []


def test_storage_failure_is_451_and_nothing_is_half_stored(mx_port, bob, raw_client, blobs_unwritable):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.command("MAIL FROM:<carol@remote.test>")
    client.command("RCPT TO:<bob@example.test>")
    client.command("DATA")
    assert client.command(MESSAGE + b".") == "451 4.3.0 Could not store the message; try again later"
    assert store.folder_info(store.get_folder(bob.pk, store.INBOX)).messages == 0
    assert Account.objects.get(pk=bob.pk).used_bytes == 0


def test_forged_authentication_results_for_our_name_are_removed(mx_port, bob):
    forged = b"Authentication-Results: MX.example.test; dkim=pass header.d=bank.test\r\n" + MESSAGE
    other = b"Authentication-Results: relay.remote.test; spf=pass\r\n"
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as client:
        client.sendmail("carol@remote.test", ["bob@example.test"], other + forged)
    [stored] = inbox_messages(bob)
    assert b"header.d=bank.test" not in stored
    assert other in stored


def test_smtputf8_message_with_8bit_body_round_trips_byte_exact(mx_port, domain):
    zoe = create_account("zoë@example.test", "zoe-secret-pw")
    body = "From: André <andré@remote.test>\r\nTo: zoë@example.test\r\nSubject: café\r\n\r\nÇa va? ünïcödé\r\n"
    raw = body.encode("utf-8")
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as client:
        client.ehlo("client.remote.test")
        assert client.has_extn("smtputf8")
        refused = client.sendmail("andré@remote.test", ["zoë@example.test"], raw, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    assert refused == {}
    [stored] = inbox_messages(zoe)
    assert stored.startswith("Return-Path: <andré@remote.test>\r\n".encode())
    assert b" with UTF8SMTP id " in stored
    assert stored.endswith(raw)


def test_non_ascii_address_without_smtputf8_is_553(mx_port, domain, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    assert client.command("MAIL FROM:<andré@remote.test>") == (
        "553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter"
    )


def test_mail_before_ehlo_is_503(mx_port, raw_client):
    client = raw_client(mx_port)
    assert client.command("MAIL FROM:<carol@remote.test>") == "503 5.5.1 Error: send HELO first"


def test_auth_is_not_offered_on_the_mx(mx_port, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    assert client.command("AUTH PLAIN AGJvYgBib2Itc2VjcmV0LXB3") == (
        "502 5.5.1 AUTH is offered on the submission ports only"
    )


def test_alias_forwarding_outside_our_domains_is_queued(mx_port, bob):
    create_alias("team@example.test", ["bob@example.test", "dave@remote.test"])
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as client:
        client.sendmail("carol@remote.test", ["team@example.test"], MESSAGE)
    assert len(inbox_messages(bob)) == 1
    assert list(OutboundRecipient.objects.values_list("address", flat=True)) == ["dave@remote.test"]


def test_starttls_on_the_mx_then_mail_is_received_with_esmtps(mx_port, bob):
    from .conftest import client_tls_context

    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as client:
        client.ehlo("client.remote.test")
        client.starttls(context=client_tls_context())
        client.ehlo("client.remote.test")
        assert not client.has_extn("starttls")
        assert not client.has_extn("auth")
        client.sendmail("carol@remote.test", ["bob@example.test"], MESSAGE)
    [stored] = inbox_messages(bob)
    assert b" with ESMTPS id " in stored
