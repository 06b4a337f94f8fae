"""Every corpus message through the MX, by DATA (smtplib) and by BDAT: stored exactly as sent.

What the MX adds in front (Return-Path, Received, Authentication-Results) is taken off, and
so is any Return-Path the message brought (RFC 5321 §4.4: the delivering server sets it);
what is left must be the message with CRLF line ends, byte for byte (by DATA, plus the CRLF
that ends the last line when the message had none).
"""
from __future__ import annotations

import smtplib

import pytest

from mailcore import store
from mailcore.mime import to_crlf
from tests.conftest import CORPUS_DIR, corpus_files

pytestmark = pytest.mark.django_db(transaction=True)

OURS = ("return-path", "received", "authentication-results")


def fields(message: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (each with its folded lines) and the rest, from the blank line on."""
    end = message.find(b"\r\n\r\n")
    head, rest = (message, b"") if end < 0 else (message[: end + 2], message[end + 2 :])
    result: list[bytes] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and result:
            result[-1] += line + b"\r\n"
        else:
            result.append(line + b"\r\n")
    return result, rest


def name_of(field: bytes) -> str:
    return field.split(b":", 1)[0].strip().lower().decode("latin-1")


def without_return_path(message: bytes) -> bytes:
    head, rest = fields(message)
    return b"".join(f for f in head if name_of(f) != "return-path") + rest


def as_stored(account) -> bytes:
    ref = store.get_folder(account.pk, store.INBOX)
    [uid] = store.uids(ref)
    head, rest = fields(store.read_message(ref, uid))
    assert [name_of(f) for f in head[:3]] == list(OURS)
    return b"".join(head[3:]) + rest


@pytest.fixture(params=corpus_files(), ids=lambda p: str(p.relative_to(CORPUS_DIR)))
def raw(request) -> bytes:
    return request.param.read_bytes()


def test_by_data(mx_port, bob, raw):
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=30) as client:
        client.sendmail("carol@remote.test", ["bob@example.test"], to_crlf(raw))
    sent = to_crlf(raw)
    # DATA can only carry lines: a message whose last line has no CRLF gets one (RFC 5321 §4.1.1.4).
    assert as_stored(bob) == without_return_path(sent if sent.endswith(b"\r\n") else sent + b"\r\n")


def test_by_bdat_in_two_chunks(mx_port, bob, raw, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    assert client.command("MAIL FROM:<carol@remote.test>") == "250 2.1.0 Sender OK"
    assert client.command("RCPT TO:<bob@example.test>") == "250 2.1.5 Recipient OK"
    half = len(raw) // 2
    client.send(b"BDAT %d\r\n" % half + raw[:half])
    assert client.reply() == f"250 2.0.0 {half} octets received"
    client.send(b"BDAT %d LAST\r\n" % (len(raw) - half) + raw[half:])
    assert client.reply().startswith("250 2.0.0 Message accepted for delivery")
    assert as_stored(bob) == without_return_path(to_crlf(raw))
