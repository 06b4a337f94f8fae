"""CHUNKING (RFC 3030): BDAT over a raw socket, with exact replies; the chunk is read whatever the reply."""
from __future__ import annotations

import pytest

from mailcore import store

from .test_hardening import inbox_count

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: carol@remote.test\r\nTo: bob@example.test\r\nSubject: chunks\r\n\r\n.a line with a dot\r\nend\r\n"


def open_transaction(client, rcpt="bob@example.test") -> None:
    assert "250-CHUNKING" in client.command("EHLO client.remote.test").splitlines()
    assert client.command("MAIL FROM:<carol@remote.test>") == "250 2.1.0 Sender OK"
    assert client.command(f"RCPT TO:<{rcpt}>") == "250 2.1.5 Recipient OK"


def stored(account) -> list[bytes]:
    ref = store.get_folder(account.pk, store.INBOX)
    return [store.read_message(ref, uid) for uid in store.uids(ref)]


def test_a_message_in_three_chunks_is_stored_byte_exact(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    open_transaction(client)
    first, second, third = MESSAGE[:30], MESSAGE[30:70], MESSAGE[70:]
    client.send(b"BDAT %d\r\n" % len(first) + first)
    assert client.reply() == "250 2.0.0 30 octets received"
    client.send(b"BDAT %d\r\n" % len(second) + second)
    assert client.reply() == "250 2.0.0 40 octets received"
    client.send(b"BDAT %d LAST\r\n" % len(third) + third)
    assert client.reply().startswith("250 2.0.0 Message accepted for delivery")
    [message] = stored(bob)
    assert message.endswith(MESSAGE)  # byte-exact, and not dot-unstuffed: ".a line" keeps its dot
    assert client.command("QUIT") == "221 2.0.0 Bye"


def test_pipelined_chunks_and_an_empty_last_chunk(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    open_transaction(client)
    client.send(b"BDAT %d\r\n" % len(MESSAGE) + MESSAGE + b"BDAT 0 LAST\r\n")
    assert client.reply() == f"250 2.0.0 {len(MESSAGE)} octets received"
    assert client.reply().startswith("250 2.0.0 Message accepted for delivery")
    assert inbox_count(bob) == 1


def test_bdat_without_a_transaction_is_refused_and_its_chunk_is_not_read_as_commands(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    chunk = b"RCPT TO:<bob@example.test>\r\n"  # would be a command if the server did not read the chunk
    client.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    assert client.reply() == "503 5.5.1 Error: need MAIL command"
    assert client.command("NOOP") == "250 2.0.0 OK"
    assert inbox_count(bob) == 0


def test_data_after_bdat_in_one_transaction_is_refused(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    open_transaction(client)
    client.send(b"BDAT 10\r\n0123456789")
    assert client.reply() == "250 2.0.0 10 octets received"
    assert client.command("DATA") == "503 5.5.1 DATA cannot follow BDAT in one transaction (RFC 3030 §2)"
    assert client.command("RSET") == "250 2.0.0 OK"
    open_transaction(client)
    client.send(b"BDAT %d LAST\r\n" % len(MESSAGE) + MESSAGE)
    assert client.reply().startswith("250 2.0.0 Message accepted for delivery")
    assert stored(bob)[0].endswith(MESSAGE)  # the RSET dropped the first chunk


def test_chunks_over_the_size_limit_are_read_then_refused(mx_port, bob, raw_client, smtp_settings):
    from mailcore.conf import conf

    limit = conf.max_message_size
    client = raw_client(mx_port)
    open_transaction(client)
    big = b"x" * (limit // 2 + 1)
    client.send(b"BDAT %d\r\n" % len(big) + big)
    assert client.reply() == f"250 2.0.0 {len(big)} octets received"
    client.send(b"BDAT %d LAST\r\n" % len(big) + big)
    assert client.reply() == f"552 5.3.4 Message exceeds the maximum size of {limit} octets"
    assert client.command("NOOP") == "250 2.0.0 OK"  # every octet was read: the session is in step
    assert inbox_count(bob) == 0


@pytest.mark.parametrize("argument", ["BDAT", "BDAT x", "BDAT -1", "BDAT 10 FIRST"])
def test_a_bdat_size_that_cannot_be_read_ends_the_session(mx_port, raw_client, argument):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    assert client.command(argument) == "501 5.5.4 Syntax: BDAT chunk-size [LAST]; closing"
    assert client.is_closed()


def test_submission_takes_bdat_after_auth_and_not_before(submission_port, alice, bob, raw_client):
    import base64

    client = raw_client(submission_port)
    client.command("EHLO laptop.example.test")
    message = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: chunked\r\n\r\nHi Bob.\r\n"
    client.send(b"BDAT %d LAST\r\n" % len(message) + message)
    assert client.reply() == "530 5.7.0 Authentication required"
    token = base64.b64encode(b"\0alice@example.test\0alice-secret-pw").decode()
    assert client.command(f"AUTH PLAIN {token}") == "235 2.7.0 Authentication successful"
    assert client.command("MAIL FROM:<alice@example.test>") == "250 2.1.0 Sender OK"
    assert client.command("RCPT TO:<bob@example.test>") == "250 2.1.5 Recipient OK"
    client.send(b"BDAT %d LAST\r\n" % len(message) + message)
    assert client.reply().startswith("250 2.0.0 Message accepted")
    [delivered] = stored(bob)  # Date and Message-ID were added (RFC 6409 §8)
    assert b"\r\nSubject: chunked\r\n" in delivered and delivered.endswith(b"\r\n\r\nHi Bob.\r\n")


def test_a_chunk_refused_for_want_of_mail_does_not_spoil_the_transaction_that_follows(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.send(b"BDAT 5\r\nearly")
    assert client.reply() == "503 5.5.1 Error: need MAIL command"
    assert client.command("MAIL FROM:<carol@remote.test>") == "250 2.1.0 Sender OK"
    assert client.command("RCPT TO:<bob@example.test>") == "250 2.1.5 Recipient OK"
    client.send(b"BDAT %d LAST\r\n" % len(MESSAGE) + MESSAGE)
    assert client.reply().startswith("250 2.0.0 Message accepted for delivery")
    assert stored(bob)[0].endswith(MESSAGE)
