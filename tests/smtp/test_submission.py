"""Submission on 587 (STARTTLS) and 465 (implicit TLS), and submit() as the webmail calls it."""
from __future__ import annotations

import datetime as dt
import smtplib

import pytest
from django.utils import timezone

from mailcore import store
from mailcore.directory import create_alias
from mailcore.models import OutboundMessage, OutboundRecipient
from mailcore.smtp.submission import SubmissionError, submit

from .conftest import HOSTNAME, client_tls_context

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: lunch\r\nDate: Fri, 27 Nov 2026 12:00:00 +0000\r\nMessage-ID: <lunch-1@example.test>\r\n\r\nAt noon?\r\n"


def folder_messages(account, name=store.INBOX) -> list[bytes]:
    ref = store.get_folder(account.pk, name)
    return [store.read_message(ref, uid) for uid in store.uids(ref)]


def sent_messages(account) -> list[bytes]:
    ref = store.folder_by_special_use(account.pk, "\\Sent")
    return [store.read_message(ref, uid) for uid in store.uids(ref)]


def logged_in(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo("laptop.example.test")
    client.starttls(context=client_tls_context())
    client.ehlo("laptop.example.test")
    client.login("alice@example.test", "alice-secret-pw")
    return client


def test_ehlo_before_tls_offers_starttls_and_auth_only_from_loopback(submission_port, raw_client):
    client = raw_client(submission_port)
    assert client.command("EHLO laptop.example.test").splitlines()[-2:] == ["250-STARTTLS", "250 AUTH LOGIN PLAIN"]


def test_mail_from_without_auth_is_530(submission_port, alice, raw_client):
    client = raw_client(submission_port)
    client.command("EHLO laptop.example.test")
    assert client.command("MAIL FROM:<alice@example.test>") == "530 5.7.0 Authentication required"


def test_alice_to_bob_lands_in_bobs_inbox_with_received_and_authentication_results(submission_port, alice, bob):
    with logged_in(submission_port) as client:
        assert client.sendmail("alice@example.test", ["bob@example.test"], MESSAGE) == {}
    [stored] = folder_messages(bob)
    lines = stored.split(b"\r\n")
    assert lines[0] == b"Return-Path: <alice@example.test>"
    assert lines[1] == b"Received: from laptop.example.test ([127.0.0.1])"
    assert lines[2].startswith(b"\tby mx.example.test with ESMTPSA id ")
    assert lines[4:6] == [b"Authentication-Results: mx.example.test;", b"\tauth=pass smtp.auth=alice@example.test"]
    assert stored.endswith(MESSAGE)
    assert sent_messages(alice) == []  # clients save their own copy in Sent
    assert OutboundMessage.objects.count() == 0


def test_remote_recipient_is_queued_not_delivered_inline(submission_port, alice, bob):
    with logged_in(submission_port) as client:
        client.sendmail("alice@example.test", ["dave@remote.test", "bob@example.test"], MESSAGE)
    [queued] = OutboundMessage.objects.all()
    assert queued.sender == "alice@example.test" and queued.account_id == alice.pk
    assert list(OutboundRecipient.objects.values_list("address", "domain")) == [("dave@remote.test", "remote.test")]
    assert store.read_blob(queued.blob).endswith(MESSAGE)
    assert len(folder_messages(bob)) == 1


def test_remote_recipients_beyond_the_hourly_limit_wait_and_nothing_is_kept(smtp_settings, submission_port, alice,
                                                                             bob):
    smtp_settings.MAIL_SUBMISSION_RECIPIENTS_PER_HOUR = 3
    with logged_in(submission_port) as client:
        assert client.sendmail("alice@example.test", ["a@remote.test", "b@remote.test"], MESSAGE) == {}
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("alice@example.test", ["c@remote.test", "d@remote.test", "bob@example.test"], MESSAGE)
        assert (refused.value.smtp_code, refused.value.smtp_error) == (
            450, b"4.7.1 Sending limit reached: at most 3 recipients outside our domains an hour; try again later")
        assert client.sendmail("alice@example.test", ["c@remote.test", "bob@example.test"], MESSAGE) == {}  # 3 of 3
    assert OutboundRecipient.objects.count() == 3 and len(folder_messages(bob)) == 1  # the refused one: nothing


def test_mail_queued_over_an_hour_ago_and_local_mail_do_not_count(smtp_settings, submission_port, alice, bob):
    smtp_settings.MAIL_SUBMISSION_RECIPIENTS_PER_HOUR = 2
    with logged_in(submission_port) as client:
        client.sendmail("alice@example.test", ["a@remote.test", "b@remote.test"], MESSAGE)
        OutboundMessage.objects.update(created_at=timezone.now() - dt.timedelta(minutes=61))
        for _ in range(3):
            assert client.sendmail("alice@example.test", ["bob@example.test"], MESSAGE) == {}
        assert client.sendmail("alice@example.test", ["c@remote.test", "d@remote.test"], MESSAGE) == {}


def test_a_message_to_more_remote_recipients_than_an_hour_allows_is_550(smtp_settings, submission_port, alice):
    smtp_settings.MAIL_SUBMISSION_RECIPIENTS_PER_HOUR = 2
    with logged_in(submission_port) as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("alice@example.test", ["a@remote.test", "b@remote.test", "c@remote.test"], MESSAGE)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        550, b"5.7.1 Too many recipients outside our domains: 3, at most 2 an hour")


def test_another_accounts_mail_does_not_count_and_zero_means_no_limit(smtp_settings, submission_port, alice, bob):
    smtp_settings.MAIL_SUBMISSION_RECIPIENTS_PER_HOUR = 1
    submit(bob.pk, "bob@example.test", ["x@remote.test"], MESSAGE.replace(b"Alice <alice", b"Bob <bob"))
    with logged_in(submission_port) as client:
        assert client.sendmail("alice@example.test", ["a@remote.test"], MESSAGE) == {}
        smtp_settings.MAIL_SUBMISSION_RECIPIENTS_PER_HOUR = 0
        assert client.sendmail("alice@example.test", [f"r{n}@remote.test" for n in range(5)], MESSAGE) == {}


def test_an_accounts_own_limit_replaces_the_default(smtp_settings, submission_port, alice, bob):
    smtp_settings.MAIL_SUBMISSION_RECIPIENTS_PER_HOUR = 1
    alice.recipients_per_hour = 0  # no limit for this one (a newsletter account, say)
    alice.save(update_fields=["recipients_per_hour"])
    bob.recipients_per_hour = 2
    bob.save(update_fields=["recipients_per_hour"])
    with logged_in(submission_port) as client:
        assert client.sendmail("alice@example.test", [f"r{n}@remote.test" for n in range(3)], MESSAGE) == {}
    from_bob = MESSAGE.replace(b"Alice <alice@example.test>", b"Bob <bob@example.test>")
    assert submit(bob.pk, "bob@example.test", ["x@remote.test", "y@remote.test"], from_bob).queued
    with pytest.raises(SubmissionError) as refused:
        submit(bob.pk, "bob@example.test", ["z@remote.test"], from_bob)
    assert refused.value.reply == (
        "450 4.7.1 Sending limit reached: at most 2 recipients outside our domains an hour; try again later")


def test_sender_not_owned_is_553_at_mail_from(submission_port, alice, bob):
    with logged_in(submission_port) as client:
        code, text = client.mail("bob@example.test")
    assert (code, text) == (553, b"5.7.1 <bob@example.test>: Sender address is not owned by the authenticated user")


def test_from_header_not_owned_is_553_at_data(submission_port, alice, bob):
    forged = MESSAGE.replace(b"From: Alice <alice@example.test>", b"From: Bob <bob@example.test>")
    with logged_in(submission_port) as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("alice@example.test", ["bob@example.test"], forged)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        553,
        b"5.7.1 <bob@example.test>: From header address is not owned by you",
    )
    assert folder_messages(bob) == []


@pytest.mark.parametrize(("fields", "reply"), [
    # A second From: mail programs differ in which one they show, and DKIM signs the last one (RFC 6376 §5.4.2).
    (b"From: Alice <alice@example.test>\r\nFrom: Bob <bob@example.test>",
     b"5.6.0 Message has more than one From header field (RFC 5322 \xc2\xa73.6)"),
    (b"From: Alice <alice@example.test>\r\nfrom: Bob <bob@example.test>",
     b"5.6.0 Message has more than one From header field (RFC 5322 \xc2\xa73.6)"),
    # Text a mail program may read as the address: ours reads alice, a reader may show bob.
    (b"From: Alice <alice@example.test> <bob@example.test>",
     b"5.6.0 From header field is not a valid address list (RFC 5322 \xc2\xa73.4)"),
    (b"From: <alice@example.test> Bob <bob@example.test>",
     b"5.6.0 From header field is not a valid address list (RFC 5322 \xc2\xa73.4)"),
    (b"From: alice@example.test\r\n bob@example.test",
     b"5.6.0 From header field is not a valid address list (RFC 5322 \xc2\xa73.4)"),
    (b"From: Alice <alice@example.test>\r\n From: Bob <bob@example.test>",
     b"5.6.0 From header field is not a valid address list (RFC 5322 \xc2\xa73.4)"),
    (b"From: =?utf-8?q?bob@example.test?= <alice@example.test>",
     b"5.6.0 From header field is not a valid address list (RFC 5322 \xc2\xa73.4)"),
    # Sender names who sent it (RFC 5322 §3.6.2): the user, too.
    (b"From: Alice <alice@example.test>\r\nSender: bob@example.test",
     b"5.7.1 <bob@example.test>: Sender header address is not owned by you"),
    (b"From: Alice <alice@example.test>\r\nSender: alice@example.test\r\nSender: bob@example.test",
     b"5.6.0 Message has more than one Sender header field (RFC 5322 \xc2\xa73.6)"),
])
def test_from_and_sender_fields_that_could_show_another_address_are_refused(submission_port, alice, bob, fields, reply):
    forged = MESSAGE.replace(b"From: Alice <alice@example.test>", fields)
    with logged_in(submission_port) as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("alice@example.test", ["bob@example.test"], forged)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (553 if reply.startswith(b"5.7.1") else 550, reply)
    assert folder_messages(bob) == []


@pytest.mark.parametrize("fields", [
    b"From: \"Alice, the boss\" <alice@example.test>",
    b"From: alice@example.test (Alice, not bob@example.test)",
    b'From: "bob@example.test" <alice@example.test>',  # a display name is the user's to choose
    b"From: =?utf-8?q?Al=C3=AFce?= <alice@example.test>,",  # an encoded word, an empty element (RFC 5322 §4.4)
    b"From: Alice <alice@example.test>\r\nSender: Alice <alice@example.test>",
])
def test_unusual_but_unambiguous_from_fields_of_the_user_are_accepted(submission_port, alice, bob, fields):
    message = MESSAGE.replace(b"From: Alice <alice@example.test>", fields)
    with logged_in(submission_port) as client:
        assert client.sendmail("alice@example.test", ["bob@example.test"], message) == {}
    assert len(folder_messages(bob)) == 1


def test_alias_and_plus_address_of_the_user_may_send(submission_port, alice, bob):
    create_alias("sales@example.test", ["alice@example.test"])
    message = MESSAGE.replace(b"From: Alice <alice@example.test>", b"From: Sales <sales@example.test>")
    with logged_in(submission_port) as client:
        assert client.sendmail("alice+lists@example.test", ["bob@example.test"], message) == {}
    assert len(folder_messages(bob)) == 1


def test_bcc_fields_are_removed_from_every_copy(submission_port, alice, bob, domain):
    from mailcore.directory import create_account

    carol = create_account("carol@example.test", "carol-secret-pw")
    blind = MESSAGE.replace(b"Subject: lunch\r\n",
                            b"Subject: lunch\r\nBcc: carol@example.test,\r\n dave@remote.test\r\nResent-Bcc: x@remote.test\r\n")
    with logged_in(submission_port) as client:  # smtplib.sendmail sends the bytes as they are, Bcc and all
        assert client.sendmail("alice@example.test", ["bob@example.test", "carol@example.test", "dave@remote.test"],
                               blind) == {}
    [queued] = OutboundMessage.objects.all()
    for copy in [*folder_messages(bob), *folder_messages(carol), store.read_blob(queued.blob)]:
        assert copy.endswith(MESSAGE), copy  # the fields, and the line that continued one, are gone


def test_missing_message_id_and_date_are_added(submission_port, alice, bob):
    bare = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: x\r\n\r\nbody\r\n"
    with logged_in(submission_port) as client:
        client.sendmail("alice@example.test", ["bob@example.test"], bare)
    [stored] = folder_messages(bob)
    header = stored.split(b"\r\n\r\n")[0]
    assert b"\r\nDate: " in header
    assert b"\r\nMessage-ID: <" in header and b"@mx.example.test>" in header


def test_unknown_local_recipient_is_550_at_rcpt(submission_port, alice):
    with logged_in(submission_port) as client:
        client.mail("alice@example.test")
        assert client.rcpt("nobody@example.test") == (
            550,
            b"5.1.1 <nobody@example.test>: Recipient address rejected: no such user here",
        )


def test_implicit_tls_port_with_auth_login(submissions_port, alice, bob):
    with smtplib.SMTP_SSL("127.0.0.1", submissions_port, timeout=10, context=client_tls_context()) as client:
        client.ehlo("laptop.example.test")
        assert not client.has_extn("starttls")
        assert client.has_extn("auth")
        client.login("alice@example.test", "alice-secret-pw", initial_response_ok=False)  # LOGIN, prompted
        client.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
    [stored] = folder_messages(bob)
    assert b" with ESMTPSA id " in stored


def test_auth_in_clear_is_refused_when_loopback_is_not_trusted(servers, alice, raw_client):
    client = raw_client(servers.start("submission", plaintext_auth_from_loopback=False))
    assert "AUTH" not in client.command("EHLO laptop.example.test")
    assert client.command("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQtcHc=") == (
        "538 5.7.11 Encryption required for requested authentication mechanism"
    )
    client.command("STARTTLS")
    client.starttls()
    assert client.command("EHLO laptop.example.test").splitlines()[-1] == "250 AUTH LOGIN PLAIN"
    assert client.command("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQtcHc=") == (
        "235 2.7.0 Authentication successful"
    )


def test_submit_in_process_saves_to_sent_for_the_webmail(alice, bob):
    result = submit(alice.pk, "alice@example.test", ["bob@example.test", "dave@remote.test"], MESSAGE, save_to_sent=True)
    assert (result.delivered, result.queued, result.message_id) == (
        ["bob@example.test"],
        ["dave@remote.test"],
        "<lunch-1@example.test>",
    )
    assert folder_messages(bob) == [b"Return-Path: <alice@example.test>\r\n" + MESSAGE]
    assert sent_messages(alice) == [MESSAGE]


def test_submit_in_process_refuses_a_sender_that_is_not_the_users(alice, bob):
    with pytest.raises(SubmissionError) as refused:
        submit(alice.pk, "bob@example.test", ["bob@example.test"], MESSAGE)
    assert refused.value.reply == "553 5.7.1 <bob@example.test>: Sender address is not owned by the authenticated user"
    assert folder_messages(bob) == []


def test_submit_with_a_full_mailbox_keeps_nothing(alice, bob):
    from mailcore.models import Account

    Account.objects.filter(pk=bob.pk).update(quota_bytes=100)
    with pytest.raises(SubmissionError) as refused:
        submit(alice.pk, "alice@example.test", ["bob@example.test", "dave@remote.test"], MESSAGE)
    assert refused.value.reply.startswith("452 4.2.2")
    assert OutboundMessage.objects.count() == 0


def test_greeting_uses_mail_hostname(submissions_port):
    with smtplib.SMTP_SSL("127.0.0.1", submissions_port, timeout=10, context=client_tls_context()) as client:
        code, banner = client.ehlo("laptop.example.test")
    assert code == 250 and banner.splitlines()[0] == f"{HOSTNAME} Hello laptop.example.test".encode()
