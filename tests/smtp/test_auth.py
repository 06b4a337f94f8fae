"""SMTP AUTH: PLAIN and LOGIN against the account password, throttling per IP, nothing secret logged."""
from __future__ import annotations

import base64
import logging
import time

import pytest

from mailcore.auth import throttle

from .conftest import client_tls_context

pytestmark = pytest.mark.django_db(transaction=True)

IP = "127.0.0.1"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plain(login: str, password: str) -> str:
    return b64(f"\0{login}\0{password}")


def ready(client) -> None:
    client.command("EHLO laptop.example.test")


def test_auth_plain_with_the_right_password_is_235(submission_port, alice, raw_client, caplog):
    caplog.set_level(logging.INFO)
    client = raw_client(submission_port)
    ready(client)
    assert client.command(f"AUTH PLAIN {plain('alice@example.test', 'alice-secret-pw')}") == (
        "235 2.7.0 Authentication successful"
    )
    assert client.command("AUTH PLAIN x") == "503 5.5.1 Already authenticated"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_help_needs_a_login_and_then_no_longer_lists_auth(submission_port, alice, raw_client):
    """RFC 4954 §6: 530 for commands other than AUTH, EHLO, HELO, NOOP, RSET and QUIT before AUTH."""
    client = raw_client(submission_port)
    ready(client)
    assert client.command("HELP") == "530 5.7.0 Authentication required"
    client.command(f"AUTH PLAIN {plain('alice@example.test', 'alice-secret-pw')}")
    commands = "BDAT DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET STARTTLS VRFY"
    assert client.command("HELP") == f"250 2.0.0 Supported commands: {commands}"
    assert client.command("HELP AUTH") == f"501 5.5.4 Supported commands: {commands}"


def test_auth_login_exchange_uses_the_customary_prompts(submission_port, alice, raw_client):
    client = raw_client(submission_port)
    ready(client)
    assert client.command("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert client.command(b64("alice@example.test")) == "334 UGFzc3dvcmQ6"
    assert client.command(b64("alice-secret-pw")) == "235 2.7.0 Authentication successful"


def test_wrong_password_is_535_and_is_never_logged(submission_port, alice, raw_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = raw_client(submission_port)
    ready(client)
    payload = plain("alice@example.test", "wrong-password-123")
    assert client.command(f"AUTH PLAIN {payload}") == "535 5.7.8 Authentication credentials invalid"
    assert throttle.failures(IP) == 1
    assert "wrong-password-123" not in caplog.text and payload not in caplog.text


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("AUTH CRAM-MD5", "504 5.5.4 Unrecognized authentication type"),
        ("AUTH PLAIN !!!", "501 5.5.2 Cannot decode base64"),
        (f"AUTH PLAIN {b64('only-one-part')}", "501 5.5.2 Malformed PLAIN response"),
        ("AUTH", "501 5.5.4 Syntax: AUTH mechanism [initial-response]"),
    ],
)
def test_malformed_auth_gets_the_precise_reply(submission_port, alice, raw_client, command, reply):
    client = raw_client(submission_port)
    ready(client)
    assert client.command(command) == reply


def test_cancelled_auth_is_501(submission_port, alice, raw_client):
    client = raw_client(submission_port)
    ready(client)
    assert client.command("AUTH PLAIN") == "334 "
    assert client.command("*") == "501 5.7.0 Authentication cancelled"


def test_each_recent_failure_slows_the_next_answer(submission_port, alice, raw_client):
    throttle.record_failure(IP)  # one earlier failure: the next answer waits DELAY_PER_FAILURE
    client = raw_client(submission_port)
    ready(client)
    started = time.monotonic()
    assert client.command(f"AUTH PLAIN {plain('alice@example.test', 'alice-secret-pw')}").startswith("235")
    assert time.monotonic() - started >= throttle.DELAY_PER_FAILURE * 0.9


def test_ten_failures_from_one_ip_give_421_and_close(submission_port, alice, raw_client, monkeypatch):
    monkeypatch.setattr(throttle, "DELAY_PER_FAILURE", 0.0)  # keep the test quick; the count is what matters
    client = raw_client(submission_port)
    ready(client)
    for _ in range(throttle.MAX_FAILURES):
        assert client.command(f"AUTH PLAIN {plain('alice@example.test', 'nope')}") == (
            "535 5.7.8 Authentication credentials invalid"
        )
    assert client.command(f"AUTH PLAIN {plain('alice@example.test', 'alice-secret-pw')}") == (
        "421 4.7.0 Too many failed logins from your address; try again later"
    )
    assert client.is_closed()


@pytest.fixture
def counted_logins(settings, alice, monkeypatch):
    """Alice's password hashed by a hasher that counts verifications; the failure delay off; nothing remembered."""
    from mailcore.auth import passwords
    from tests.support.hashers import CountingMD5Hasher

    settings.PASSWORD_HASHERS = ["tests.support.hashers.CountingMD5Hasher"]
    monkeypatch.setattr(throttle, "DELAY_PER_FAILURE", 0.0)
    alice.user.set_password("alice-secret-pw")
    alice.user.save()
    passwords.forget_verified()
    CountingMD5Hasher.verified = 0
    yield CountingMD5Hasher
    passwords.forget_verified()


def test_a_login_verified_lately_is_not_hashed_again(submission_port, alice, raw_client, counted_logins, settings):
    """Mail clients log in over and over (a connection per message sent); like Dovecot's auth cache, the password
    that was right a moment ago is not run through PBKDF2 again. A wrong password still is, a changed password
    and a deactivated account take effect at once."""
    settings.MAIL_AUTH_CACHE_SECONDS = 3600

    def auth(password: str) -> str:
        client = raw_client(submission_port)
        ready(client)
        return client.command(f"AUTH PLAIN {plain('alice@example.test', password)}")

    assert auth("alice-secret-pw") == "235 2.7.0 Authentication successful"
    assert auth("alice-secret-pw") == "235 2.7.0 Authentication successful"
    assert counted_logins.verified == 1
    assert auth("alice-secret-px") == "535 5.7.8 Authentication credentials invalid"
    assert counted_logins.verified == 2
    alice.user.set_password("changed-password-2")
    alice.user.save()
    assert auth("alice-secret-pw") == "535 5.7.8 Authentication credentials invalid"
    assert auth("changed-password-2") == "235 2.7.0 Authentication successful"
    assert auth("changed-password-2") == "235 2.7.0 Authentication successful"
    assert counted_logins.verified == 4
    alice.user.is_active = False
    alice.user.save()
    assert auth("changed-password-2") == "535 5.7.8 Authentication credentials invalid"


def test_a_remembered_login_is_hashed_again_once_its_time_is_up(submission_port, alice, raw_client, counted_logins,
                                                                settings):
    settings.MAIL_AUTH_CACHE_SECONDS = 2
    for pause in (0.0, 0.0, 2.5):
        time.sleep(pause)
        client = raw_client(submission_port)
        ready(client)
        assert client.command(f"AUTH PLAIN {plain('alice@example.test', 'alice-secret-pw')}") == (
            "235 2.7.0 Authentication successful"
        )
    assert counted_logins.verified == 2  # the first login, and the one after the 2 s


def test_with_no_auth_cache_every_login_is_hashed(submission_port, alice, raw_client, counted_logins, settings):
    settings.MAIL_AUTH_CACHE_SECONDS = 0
    for _ in range(2):
        client = raw_client(submission_port)
        ready(client)
        assert client.command(f"AUTH PLAIN {plain('alice@example.test', 'alice-secret-pw')}") == (
            "235 2.7.0 Authentication successful"
        )
    assert counted_logins.verified == 2


def test_smtplib_login_over_starttls(submission_port, alice):
    import smtplib

    with smtplib.SMTP("127.0.0.1", submission_port, timeout=10) as client:
        client.starttls(context=client_tls_context())
        assert client.login("Alice@Example.test", "alice-secret-pw")[0] == 235


@pytest.mark.parametrize(("parameter", "reply"), [
    ("AUTH=<>", "250 2.1.0 Sender OK"),  # RFC 4954 §5: the original submitter is not known (Exim sends this)
    ("AUTH=alice@example.test", "250 2.1.0 Sender OK"),
    ("AUTH=alice+2Btag@example.test", "250 2.1.0 Sender OK"),  # xtext: "+2B" is "+"
    ("AUTH=a=b", "501 5.5.4 malformed xtext"),
    ("AUTH=<> AUTH=<>", "501 5.5.4 AUTH given twice"),
])
def test_mail_from_takes_the_auth_parameter_on_submission(submission_port, alice, bob, raw_client, parameter, reply):
    client = raw_client(submission_port)
    ready(client)
    client.command(f"AUTH PLAIN {plain('alice@example.test', 'alice-secret-pw')}")
    assert client.command(f"MAIL FROM:<alice@example.test> {parameter}") == reply
    if reply.startswith("250"):
        assert client.command("RCPT TO:<bob@example.test>") == "250 2.1.5 Recipient OK"
        assert client.command("DATA").startswith("354")
        assert client.command(b"From: alice@example.test\r\nSubject: relayed\r\n\r\nhi\r\n.").startswith("250 2.0.0")


def test_the_mx_which_offers_no_auth_refuses_the_auth_parameter(mx_port, raw_client):
    client = raw_client(mx_port)
    ready(client)
    assert client.command("MAIL FROM:<carol@remote.test> AUTH=<>") == (
        "555 5.5.4 MAIL FROM parameters not recognized or not implemented")
