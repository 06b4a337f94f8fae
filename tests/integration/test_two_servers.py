"""Two deployments of this system exchanging mail, as two organisations' servers do on the internet.

example.test and remote.test each run their own `manage.py runmail` (own database, own blobs,
own DKIM key made with `createdkimkey`); one DNS server on loopback publishes both domains'
MX, SPF, DKIM and DMARC records. Alice's mail to Bob takes the whole path of a message:
submission on her server, the outbound queue, an MX lookup, Bob's server's MX (recipient
check, SPF, DKIM and DMARC), his INBOX, IMAP. Bob replies the same way. A message to an
address example.test does not have is refused at RCPT by its MX, and Bob gets the DSN.
"""
from __future__ import annotations

import imaplib
import os
import re
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest

from tests.support.dnsserver import DNSServer
from tests.support.net import free_port
from tests.support.runmail import runmail

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
SELECTOR = "s2026"
ARRIVAL_SECONDS = 30


@dataclass
class Site:
    """One organisation's mail server: its domain, environment and listening ports."""

    domain: str
    env: dict[str, str]

    @property
    def hostname(self) -> str:
        return f"mail.{self.domain}"

    def port(self, listener: str) -> int:
        return int(self.env[f"MAIL_{listener}_PORT"])

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout


def own_environment(var: Path, domain: str, nameserver: str) -> dict[str, str]:
    """A fresh deployment's environment: nothing of this test run's database, blobs, broker or settings."""
    inherited = {key: value for key, value in os.environ.items()
                 if not key.startswith("MAIL_") and key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    return {**inherited, "MAIL_VAR_DIR": str(var), "MAIL_HOSTNAME": f"mail.{domain}", "PYTHONUNBUFFERED": "1",
            "MAIL_DNS_NAMESERVERS": nameserver, "MAIL_ALLOW_PRIVATE_MX": "1",
            **{f"MAIL_{name}_PORT": str(free_port()) for name in ("SMTP", "SUBMISSION", "IMAP")}}


def set_up(site: Site, users: list[str], dns: DNSServer) -> None:
    """Database, domain, mailboxes and DKIM key, as an operator would; the domain's records published in DNS."""
    site.manage("migrate", "--noinput", "-v", "0")
    site.manage("createdomain", site.domain)
    for user in users:
        site.manage("createmailbox", "--password", PASSWORD, f"{user}@{site.domain}")
    record = site.manage("createdkimkey", "--selector", SELECTOR, site.domain)
    dkim_txt = re.fullmatch(r'\S+ IN TXT "(.*)"\n', record)
    assert dkim_txt, record
    dns.records.update({
        site.domain: {"MX": [f"10 {site.hostname}."], "TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        site.hostname: {"A": ["127.0.0.1"]},
        f"_dmarc.{site.domain}": {"TXT": ["v=DMARC1; p=reject"]},
        f"{SELECTOR}._domainkey.{site.domain}": {"TXT": [dkim_txt[1]]},
    })


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> Iterator[tuple[Site, Site]]:
    """example.test and remote.test, each running; each one's outbound port is the other's MX port.
    The tests share them, each with mailboxes of its own."""
    tmp_path = tmp_path_factory.mktemp("sites")
    with DNSServer() as dns:
        ours = Site("example.test", own_environment(tmp_path / "example", "example.test", dns.nameserver))
        theirs = Site("remote.test", own_environment(tmp_path / "remote", "remote.test", dns.nameserver))
        ours.env["MAIL_OUTBOUND_PORT"] = str(theirs.port("SMTP"))
        theirs.env["MAIL_OUTBOUND_PORT"] = str(ours.port("SMTP"))
        with ThreadPoolExecutor(2) as pool:  # two operators at once: half the wait for manage.py's start-ups
            list(pool.map(set_up, [ours, theirs], [["alice"], ["bob", "carol"]], [dns, dns]))
        with runmail(ours.env), runmail(theirs.env):
            yield ours, theirs


def submit(site: Site, user: str, recipients: list[str], message: bytes) -> dict[str, tuple[int, bytes]]:
    """Alice's (or Bob's) mail program: submission port, AUTH (plaintext is allowed from loopback), send."""
    with smtplib.SMTP("127.0.0.1", site.port("SUBMISSION"), timeout=30) as client:
        client.login(f"{user}@{site.domain}", PASSWORD)
        return client.sendmail(f"{user}@{site.domain}", recipients, message)


def wait_for_inbox(site: Site, user: str, count: int) -> list[bytes]:
    """The user's INBOX over IMAP once it holds `count` messages (or what it holds after ARRIVAL_SECONDS)."""
    deadline = time.monotonic() + ARRIVAL_SECONDS
    with imaplib.IMAP4("127.0.0.1", site.port("IMAP"), timeout=30) as imap:
        imap.login(f"{user}@{site.domain}", PASSWORD)
        while True:
            imap.select("INBOX", readonly=True)
            status, [uids] = imap.uid("SEARCH", "ALL")
            assert status == "OK"
            if len(uids.split()) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        messages = []
        for uid in uids.split():
            status, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            assert status == "OK"
            messages.append(data[0][1])
        return messages


def authentication_results(raw: bytes, by: Site) -> str:
    """The Authentication-Results field `by`'s MX added (the sender's submission server adds its own, auth=pass)."""
    fields = [" ".join(str(f).split()) for f in message_from_bytes(raw, policy=default_policy).get_all("Authentication-Results")]
    [results] = [f for f in fields if f.startswith(f"{by.hostname};")]
    return results


def letter(sender: str, to: str, subject: str, body: str, message_id: str) -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n").encode()


def test_mail_from_alice_reaches_bob_on_another_server_authenticated_and_his_reply_comes_back(sites):
    ours, theirs = sites
    body = "Lunch at noon?\r\n.a line that starts with a dot"
    sent = letter("Alice <alice@example.test>", "bob@remote.test", "lunch", body, "lunch-1@example.test")
    assert submit(ours, "alice", ["bob@remote.test"], sent) == {}

    [received] = wait_for_inbox(theirs, "bob", 1)
    assert received.startswith(b"Return-Path: <alice@example.test>\r\n")
    assert authentication_results(received, theirs) == (
        "mail.remote.test; spf=pass smtp.mailfrom=alice@example.test; "
        f"dkim=pass header.d=example.test header.s={SELECTOR}; dmarc=pass header.from=example.test"
    )
    parsed = message_from_bytes(received, policy=default_policy)
    assert any(r.startswith("from mail.example.test") and "by mail.remote.test" in r for r in parsed.get_all("Received"))
    assert parsed["DKIM-Signature"] is not None and f"s={SELECTOR}" in str(parsed["DKIM-Signature"])
    assert received.endswith(b"\r\n\r\n" + body.encode() + b"\r\n")

    reply = letter("Bob <bob@remote.test>", "alice@example.test", "Re: lunch", "Yes.", "lunch-2@remote.test")
    assert submit(theirs, "bob", ["alice@example.test"], reply) == {}
    [answer] = wait_for_inbox(ours, "alice", 1)
    assert authentication_results(answer, ours) == (
        "mail.example.test; spf=pass smtp.mailfrom=bob@remote.test; "
        f"dkim=pass header.d=remote.test header.s={SELECTOR}; dmarc=pass header.from=remote.test"
    )
    assert answer.endswith(b"\r\n\r\nYes.\r\n")


def test_an_unknown_user_of_the_other_server_is_refused_at_rcpt_and_the_sender_gets_a_dsn(sites):
    _, theirs = sites
    sent = letter("Carol <carol@remote.test>", "nobody@example.test", "hello?", "Anyone?", "q-1@remote.test")
    assert submit(theirs, "carol", ["nobody@example.test"], sent) == {}  # queued: remote to Carol's server

    [dsn] = wait_for_inbox(theirs, "carol", 1)
    report = message_from_bytes(dsn, policy=default_policy)
    assert report["From"] == "Mail Delivery System <MAILER-DAEMON@mail.remote.test>"
    assert report.get_content_type() == "multipart/report"
    assert b"Final-Recipient: rfc822; nobody@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n" in dsn
    assert b"Remote-MTA: dns; mail.example.test\r\nDiagnostic-Code: smtp; 550 5.1.1 " in dsn


def test_two_aliases_forwarding_to_each_other_end_in_a_bounce_not_a_loop(sites):
    """An alias here forwarding to an address there that forwards back (a forwarding set up on both sides):
    each hop adds a Received field, and after 100 of them an MX refuses the message as a mail loop
    (RFC 5321 §6.3); the DSN goes back through the other side's SRS address to Alice."""
    ours, theirs = sites
    ours.manage("createalias", "loop@example.test", "loop@remote.test")
    theirs.manage("createalias", "loop@remote.test", "loop@example.test")
    sent = letter("Alice <alice@example.test>", "loop@example.test", "round and round", "Hi.", "loop-1@example.test")
    assert submit(ours, "alice", ["loop@example.test"], sent) == {}

    dsns = [m for m in wait_for_inbox(ours, "alice", 2) if b"multipart/report" in m]
    [dsn] = dsns
    assert b"Status: 5.4.6\r\n" in dsn
    assert b"Diagnostic-Code: smtp; 554 5.4.6 Message has more than 100 Received header fields: a mail loop" in dsn
    # The report, from MAILER-DAEMON@mail.example.test, is signed by example.test (a parent domain's key aligns,
    # relaxed): unsigned, remote.test's MX refused it under example.test's p=reject and Alice never heard.
    assert authentication_results(dsn, ours).endswith(
        f"dkim=pass header.d=example.test header.s={SELECTOR}; dmarc=pass header.from=mail.example.test")
