"""SMTP in worker processes (MAIL_SMTP_PROCESSES=2): a real runmail, real sockets, the test database.

The workers speak SMTP; runmail's main process writes what they accept (its group
commit), counts failed logins for all of them, and keeps IMAP, whose IDLE hears of
new mail at once because the writes happen where the IMAP sessions are.
"""
from __future__ import annotations

import os
import signal
import smtplib
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from mailcore.models import Account, Message
from tests.support import celery_worker
from tests.support.dnsserver import dns_server  # noqa: F401  (a fixture, used by name)
from tests.support.net import free_port
from tests.support.runmail import runmail

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TIMEOUT = 20


def message(n: int, to: str) -> bytes:
    return f"From: sender@elsewhere.test\r\nTo: {to}\r\nSubject: n{n}\r\nMessage-ID: <{n}@w.test>\r\n\r\nbody {n}\r\n".encode()


@pytest.fixture
def ports() -> dict[str, int]:
    return {name: free_port() for name in ("SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP")}


@pytest.fixture
def mail(alice, bob, blob_dir, tmp_path, ports, dns_server):  # noqa: F811
    # runmail checks passwords with Django's default hashers (the tests' fast MD5 is not one of them).
    hasher = PBKDF2PasswordHasher()
    alice.user.password = hasher.encode("alice-secret-pw", hasher.salt())
    alice.user.save(update_fields=["password"])
    env = celery_worker.worker_environment(
        blob_dir, "unused", MAIL_VAR_DIR=str(tmp_path), MAIL_SMTP_PROCESSES="2", PYTHONUNBUFFERED="1",
        MAIL_HOSTNAME="mx.example.test", MAIL_IMAP_POLL_SECONDS="60",  # IDLE hears of mail only by event
        MAIL_DNS_NAMESERVERS=dns_server.nameserver,  # SPF and DMARC lookups: NXDOMAIN, on loopback
        **{f"MAIL_{name}_PORT": str(port) for name, port in ports.items()},
    )
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    with runmail(env) as running:
        yield running


def worker_pids(parent: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return [pid for pid in children if b"--smtp-worker" in _command_line(pid)]


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):  # reaped since it was listed
        return b""


def send_mx(port: int, n: int, to: str = "alice@example.test") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        client.ehlo("client.elsewhere.test")
        assert client.mail("sender@elsewhere.test") == (250, b"2.1.0 Sender OK")
        assert client.rcpt(to) == (250, b"2.1.5 Recipient OK")
        return client.data(message(n, to))


def test_two_workers_take_mx_and_submission_mail_and_the_main_process_stores_all_of_it(mail, ports, alice, bob):
    assert len(worker_pids(mail.process.pid)) == 2
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda n: send_mx(ports["SMTP"], n), range(40)))
    assert {code for code, _ in replies} == {250}
    assert all(text.startswith(b"2.0.0 Message accepted for delivery (") for _, text in replies)
    inbox = Message.objects.filter(mailbox__account=alice, mailbox__name="INBOX")
    assert sorted(inbox.values_list("message_id", flat=True)) == sorted(f"<{n}@w.test>" for n in range(40))
    assert sorted(inbox.values_list("uid", flat=True)) == list(range(1, 41))
    with smtplib.SMTP("127.0.0.1", ports["SUBMISSION"], timeout=TIMEOUT) as client:
        client.login("alice@example.test", "alice-secret-pw")  # plaintext AUTH: loopback
        body = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
        assert client.mail("alice@example.test") == (250, b"2.1.0 Sender OK")
        assert client.rcpt("bob@example.test") == (250, b"2.1.5 Recipient OK")
        assert client.data(body) == (250, b"2.0.0 Message accepted (1 delivered, 0 queued)")
    unverified = ssl._create_unverified_context()  # runmail's self-signed certificate
    with smtplib.SMTP_SSL("127.0.0.1", ports["SUBMISSIONS"], timeout=TIMEOUT, context=unverified) as client:
        client.login("alice@example.test", "alice-secret-pw")  # implicit TLS (RFC 8314), in a worker
        assert client.sendmail("alice@example.test", ["bob@example.test"], body) == {}
    with smtplib.SMTP("127.0.0.1", ports["SMTP"], timeout=TIMEOUT) as client:
        client.starttls(context=unverified)  # RFC 3207 on the MX, in a worker
        assert client.sendmail("sender@elsewhere.test", ["bob@example.test"], message(99, "bob@example.test")) == {}
    assert Message.objects.filter(mailbox__account=bob, mailbox__name="INBOX").count() == 3


def test_errors_raised_in_the_main_process_are_the_workers_replies(mail, ports, alice, bob):
    Account.objects.filter(pk__in=[alice.pk, bob.pk]).update(quota_bytes=10)
    assert send_mx(ports["SMTP"], 1) == (452, b"4.2.2 Mailbox full; try again later")  # store.OverQuota
    with smtplib.SMTP("127.0.0.1", ports["SUBMISSION"], timeout=TIMEOUT) as client:
        client.login("alice@example.test", "alice-secret-pw")
        client.mail("alice@example.test")
        client.rcpt("bob@example.test")
        body = b"From: alice@example.test\r\nTo: bob@example.test\r\n\r\nhello\r\n"
        assert client.data(body) == (452, b"4.2.2 <bob@example.test>: Mailbox full")  # SubmissionError
    assert not Message.objects.filter(mailbox__account__in=[alice, bob], mailbox__name="INBOX").exists()


def test_idle_hears_of_mx_mail_from_a_worker_at_once(mail, ports, alice):
    with socket.create_connection(("127.0.0.1", ports["IMAP"]), timeout=TIMEOUT) as imap:
        lines = imap.makefile("rb")
        lines.readline()  # greeting
        imap.sendall(b"a LOGIN alice@example.test alice-secret-pw\r\nb SELECT INBOX\r\nc IDLE\r\n")
        while not (line := lines.readline()).startswith(b"+ "):
            assert line, "IMAP closed"
        sent = time.monotonic()
        assert send_mx(ports["SMTP"], 7)[0] == 250
        assert lines.readline() == b"* 1 EXISTS\r\n"
        assert time.monotonic() - sent < 30  # MAIL_IMAP_POLL_SECONDS is 60: this came as an event
        imap.sendall(b"DONE\r\n")


def test_failed_logins_are_counted_for_every_worker_together(mail, ports, alice):
    """Ten failures at once, over connections the two workers share out, block the eleventh."""

    def fail_once(_: int) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", ports["SUBMISSION"], timeout=TIMEOUT) as client:
            client.ehlo()
            return client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==")  # alice, "wrong"

    with ThreadPoolExecutor(10) as pool:
        assert set(pool.map(fail_once, range(10))) == {(535, b"5.7.8 Authentication credentials invalid")}
    assert fail_once(10) == (421, b"4.7.0 Too many failed logins from your address; try again later")


def test_a_worker_that_dies_is_replaced_and_ctrl_c_stops_them_all(mail, ports):
    first, second = worker_pids(mail.process.pid)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = worker_pids(mail.process.pid)
        if len(pids) == 2 and first not in pids:
            break
        time.sleep(0.2)
    assert len(pids) == 2 and first not in pids
    (new,) = set(pids) - {second}
    while time.monotonic() < deadline and not any(f"(pid {new}) listening" in line for line in mail.log):
        time.sleep(0.2)
    assert any("exited (status -9); starting it again" in line for line in mail.log)
    for n in range(4):  # whichever worker takes them
        assert send_mx(ports["SMTP"], n)[0] == 250
    restarts = sum("starting it again" in line for line in mail.log)
    for pid in (mail.process.pid, *pids):  # Ctrl-C reaches the whole process group
        os.kill(pid, signal.SIGINT)
    assert mail.process.wait(30) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)
    assert sum("starting it again" in line for line in mail.log) == restarts
