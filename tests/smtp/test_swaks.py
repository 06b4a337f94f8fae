"""Debian's swaks, an SMTP client that pipelines (RFC 2920), against submission and the MX: the replies
to a pipelined MAIL, RCPT, RCPT, DATA come back in order and each one right, as its transcript shows."""
from __future__ import annotations

import email
import email.policy
import shutil
import subprocess

import pytest

from mailcore import store
from mailcore.models import OutboundRecipient

from .conftest import HOSTNAME

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("swaks") is None, reason="needs Debian's swaks (debian-packages.txt)"),
]
ALICE = ("--auth-user", "alice@example.test", "--auth-password", "alice-secret-pw")


def swaks(port: int, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(port), "--helo", "laptop.example.test",
                           "--hide-informational", "--pipeline", *options],
                          capture_output=True, text=True, timeout=60, check=False)


def server_lines(transcript: str, after: str) -> list[str]:
    """What the server said, from the line sent that starts with `after` on. swaks marks the server's lines
    with "<" and the client's with " ", then "-" in clear, "~" under TLS, "*" for an error reply."""
    lines = transcript.splitlines()
    start = next(i for i, line in enumerate(lines) if line[4:].startswith(after))
    return [line[4:] for line in lines[start:] if line.startswith("<")]


def inbox(account) -> list[bytes]:
    ref = store.get_folder(account.pk, store.INBOX)
    return [store.read_message(ref, uid) for uid in store.uids(ref)]


def test_pipelined_submission_over_starttls_with_an_attachment(submission_port, alice, bob, tmp_path):
    report = tmp_path / "report.pdf"
    report.write_bytes(bytes(range(256)) * 40)
    done = swaks(submission_port, "--tls", "--auth", "LOGIN", *ALICE, "--from", "alice@example.test",
                 "--to", "bob@example.test,dave@remote.test", "--header", "Subject: the report",
                 "--attach-type", "application/pdf", "--attach", f"@{report}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert server_lines(done.stdout, "MAIL FROM") == [
        "250 2.1.0 Sender OK", "250 2.1.5 Recipient OK", "250 2.1.5 Recipient OK",
        "354 End data with <CR><LF>.<CR><LF>", "250 2.0.0 Message accepted (1 delivered, 1 queued)",
        "221 2.0.0 Bye",
    ]
    [stored] = inbox(bob)
    parsed = email.message_from_bytes(stored, policy=email.policy.default)
    assert parsed["Subject"] == "the report"
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == report.read_bytes()
    assert list(OutboundRecipient.objects.values_list("address", flat=True)) == ["dave@remote.test"]


def test_pipelined_submission_over_implicit_tls_with_auth_plain(submissions_port, alice, bob):
    done = swaks(submissions_port, "--tls-on-connect", "--auth", "PLAIN", *ALICE, "--from", "alice@example.test",
                 "--to", "bob@example.test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert server_lines(done.stdout, "MAIL FROM")[-2:] == [
        "250 2.0.0 Message accepted (1 delivered, 0 queued)", "221 2.0.0 Bye"]
    assert len(inbox(bob)) == 1


def test_a_pipelined_sender_that_is_not_the_users_fails_every_command_after_it(submission_port, alice, bob):
    done = swaks(submission_port, "--tls", "--auth", "PLAIN", *ALICE, "--from", "bob@example.test",
                 "--to", "bob@example.test")
    assert done.returncode != 0
    assert server_lines(done.stdout, "MAIL FROM")[:2] == [
        "553 5.7.1 <bob@example.test>: Sender address is not owned by the authenticated user",
        "503 5.5.1 Error: need MAIL command",
    ]
    assert inbox(bob) == []


def test_pipelined_mx_transaction_with_an_unknown_recipient_delivers_to_the_known_one(mx_port, bob):
    done = swaks(mx_port, "--from", "carol@remote.test", "--to", "bob@example.test,nobody@example.test")
    assert done.returncode == 0, done.stdout + done.stderr
    [*replies, accepted, bye] = server_lines(done.stdout, "MAIL FROM")
    assert replies == [
        "250 2.1.0 Sender OK", "250 2.1.5 Recipient OK",
        "550 5.1.1 <nobody@example.test>: Recipient address rejected: no such user here",
        "354 End data with <CR><LF>.<CR><LF>",
    ]
    assert accepted.startswith("250 2.0.0 Message accepted for delivery (") and bye == "221 2.0.0 Bye"
    [stored] = inbox(bob)
    assert f"by {HOSTNAME} with ESMTP".encode() in stored
