"""DSN requests (RFC 3461) over real sockets: exact replies to the parameters, and the reports they ask for."""
from __future__ import annotations

import shutil
import smtplib
import subprocess

import pytest

from mailcore import store
from mailcore.directory import create_alias
from mailcore.models import OutboundRecipient

from .test_submission import MESSAGE, folder_messages, logged_in

pytestmark = pytest.mark.django_db(transaction=True)

MX_MESSAGE = b"From: carol@remote.test\r\nTo: bob@example.test\r\nSubject: hi\r\nMessage-ID: <c1@remote.test>\r\n\r\nHi\r\n"


def transaction(raw_client, port):
    client = raw_client(port)
    assert client.command("EHLO client.remote.test").splitlines()[-2] == "250-DSN"
    return client


@pytest.mark.parametrize(
    ("mail_parameters", "reply"),
    [
        ("RET=ALL", "501 5.5.4 RET must be FULL or HDRS"),
        ("RET=FULL RET=HDRS", "501 5.5.4 RET given twice"),
        ("RET=", "501 5.5.4 RET needs a value"),
        ("ENVID=a+2", "501 5.5.4 malformed xtext: + must be followed by two upper-case hex digits"),
        ("ENVID=a+0Db", "501 5.5.4 parameter value decodes to a character that is not printable ASCII"),
        ("ENVID=a=b", "501 5.5.4 malformed xtext"),
        ("ENVID=" + "x" * 101, "501 5.5.4 ENVID longer than 100 characters"),
        ("NOTIFY=SUCCESS", "555 5.5.4 MAIL FROM parameters not recognized or not implemented"),
        ("RET=full ENVID=Q+2B1", "250 2.1.0 Sender OK"),
    ],
)
def test_mail_from_dsn_parameters_get_exact_replies(mx_port, raw_client, mail_parameters, reply):
    client = transaction(raw_client, mx_port)
    assert client.command(f"MAIL FROM:<carol@remote.test> {mail_parameters}") == reply


@pytest.mark.parametrize(
    ("rcpt_parameters", "reply"),
    [
        ("NOTIFY=SOMETIMES", "501 5.5.4 NOTIFY must be NEVER, or SUCCESS, FAILURE and DELAY separated by commas"),
        ("NOTIFY=NEVER,SUCCESS", "501 5.5.4 NOTIFY must be NEVER, or SUCCESS, FAILURE and DELAY separated by commas"),
        ("NOTIFY=SUCCESS,SUCCESS", "501 5.5.4 NOTIFY must be NEVER, or SUCCESS, FAILURE and DELAY separated by commas"),
        ("ORCPT=rfc822", "501 5.5.4 ORCPT must be addr-type;address"),
        ("ORCPT=rfc822;b+F6b", "501 5.5.4 parameter value decodes to a character that is not printable ASCII"),
        ("ORCPT=rfc822;bö@x", "501 5.5.4 non-ASCII parameter value without SMTPUTF8"),
        ("ORCPT=rfc822;" + "b" * 500, "501 5.5.4 ORCPT longer than 500 characters"),
        ("RET=FULL", "555 5.5.4 RCPT TO parameters not recognized or not implemented"),
        ("notify=delay,success ORCPT=rfc822;Bob+40Example.test", "250 2.1.5 Recipient OK"),
    ],
)
def test_rcpt_to_dsn_parameters_get_exact_replies(mx_port, raw_client, bob, rcpt_parameters, reply):
    client = transaction(raw_client, mx_port)
    assert client.command("MAIL FROM:<carol@remote.test>") == "250 2.1.0 Sender OK"
    assert client.command(f"RCPT TO:<bob@example.test> {rcpt_parameters}") == reply


def test_dsn_parameters_need_ehlo(mx_port, raw_client, bob):
    client = raw_client(mx_port)
    assert client.command("HELO client.remote.test") == "250 mx.example.test"
    assert client.command("MAIL FROM:<carol@remote.test> RET=HDRS") == "501 5.5.4 Syntax: MAIL FROM: <address>"


def test_mx_mail_asking_for_success_reports_delivery_to_the_remote_sender(mx_port, bob):
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as client:
        client.ehlo("client.remote.test")
        assert client.has_extn("dsn")
        refused = client.sendmail("carol@remote.test", ["bob@example.test"], MX_MESSAGE,
                                  mail_options=["ENVID=carol+2Bq-7"],
                                  rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob@Example.test"])
    assert refused == {}
    [stored] = folder_messages(bob)
    assert stored.endswith(MX_MESSAGE)
    [report_row] = OutboundRecipient.objects.filter(address="carol@remote.test")
    assert report_row.message.sender == ""  # RFC 3461 §6.1: reports go with the null reverse path
    report = store.read_blob(report_row.message.blob)
    assert b"Subject: Successful Mail Delivery Report\r\n" in report
    assert b"Original-Envelope-Id: carol+q-7\r\n" in report  # decoded from xtext
    assert (b"Original-Recipient: rfc822;Bob@Example.test\r\nFinal-Recipient: rfc822; bob@example.test\r\n"
            b"Action: delivered\r\nStatus: 2.0.0\r\n") in report
    assert b"Message-ID: <c1@remote.test>" in report and b"\r\n\r\nHi\r\n" not in report  # headers only


def test_no_report_unless_asked_and_never_for_notify_never(mx_port, bob):
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as client:
        client.ehlo("client.remote.test")
        client.sendmail("carol@remote.test", ["bob@example.test"], MX_MESSAGE)
        client.sendmail("carol@remote.test", ["bob@example.test"], MX_MESSAGE, rcpt_options=["NOTIFY=NEVER"])
        client.sendmail("carol@remote.test", ["bob@example.test"], MX_MESSAGE, rcpt_options=["NOTIFY=FAILURE,DELAY"])
    assert len(folder_messages(bob)) == 3
    assert not OutboundRecipient.objects.exists()


def test_an_alias_that_forwards_reports_expanded(mx_port, bob, alice):
    create_alias("team@example.test", ["bob@example.test", "alice@example.test"])
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as client:
        client.ehlo("client.remote.test")
        client.sendmail("carol@remote.test", ["team@example.test", "bob@example.test"], MX_MESSAGE,
                        rcpt_options=["NOTIFY=SUCCESS"])
    report = store.read_blob(OutboundRecipient.objects.get(address="carol@remote.test").message.blob)
    assert b"Final-Recipient: rfc822; team@example.test\r\nAction: expanded\r\nStatus: 2.0.0\r\n" in report
    assert b"Final-Recipient: rfc822; bob@example.test\r\nAction: delivered\r\nStatus: 2.0.0\r\n" in report


def test_submission_to_a_local_recipient_asking_for_success_gets_a_report_in_the_senders_inbox(
    submission_port, alice, bob
):
    with logged_in(submission_port) as client:
        assert client.sendmail("alice@example.test", ["bob@example.test"], MESSAGE,
                               mail_options=["RET=HDRS"], rcpt_options=["NOTIFY=SUCCESS,FAILURE"]) == {}
    assert len(folder_messages(bob)) == 1
    [report] = folder_messages(alice)
    assert b"To: <alice@example.test>\r\nSubject: Successful Mail Delivery Report\r\n" in report
    assert b"Return-Path: <>\r\n" in report
    assert b"Final-Recipient: rfc822; bob@example.test\r\nAction: delivered\r\n" in report
    assert b"Content-Type: text/rfc822-headers" in report and b"Message-ID: <lunch-1@example.test>" in report


def test_submission_to_a_remote_recipient_queues_the_request(submission_port, alice):
    with logged_in(submission_port) as client:
        client.sendmail("alice@example.test", ["dave@remote.test"], MESSAGE,
                        mail_options=["RET=FULL", "ENVID=lunch+2B1"],
                        rcpt_options=["NOTIFY=DELAY,FAILURE", "ORCPT=rfc822;Dave@Remote.test"])
    [row] = OutboundRecipient.objects.all()
    assert (row.message.ret, row.message.envid) == ("FULL", "lunch+1")
    assert (row.notify, row.orcpt) == ("FAILURE,DELAY", "rfc822;Dave@Remote.test")
    assert folder_messages(alice) == []  # nothing to report yet


@pytest.mark.skipif(shutil.which("msmtp") is None, reason="needs Debian's msmtp (debian-packages.txt)")
def test_msmtp_asking_for_delivery_reports_gets_one_in_the_senders_inbox(submission_port, alice, bob, tmp_path):
    """Debian's msmtp, as a desktop client would submit: STARTTLS, AUTH PLAIN, NOTIFY and RET."""
    message = tmp_path / "message.eml"
    message.write_bytes(MESSAGE)
    command = [
        "msmtp", "--host=127.0.0.1", f"--port={submission_port}", "--tls=on", "--tls-starttls=on",
        "--tls-certcheck=off", "--auth=plain", "--user=alice@example.test", "--passwordeval=echo alice-secret-pw",
        "--from=alice@example.test", "--dsn-notify=success,failure", "--dsn-return=headers", "bob@example.test",
    ]
    with message.open("rb") as stdin:
        done = subprocess.run(command, stdin=stdin, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    [stored] = folder_messages(bob)
    assert stored.endswith(MESSAGE)
    [report] = folder_messages(alice)
    assert b"Final-Recipient: rfc822; bob@example.test\r\nAction: delivered\r\nStatus: 2.0.0\r\n" in report
