"""Large and many-part messages through the MX: stored whole, parsed and indexed at a cost that
grows with their size, not with its square (the figures are in docs/performance.md, not here)."""
from __future__ import annotations

import smtplib

import pytest

from mailcore import store
from mailcore.store import SearchQuery

pytestmark = pytest.mark.django_db(transaction=True)


def send(port: int, message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.ehlo("mail.remote.test")
        client.sendmail("carol@remote.test", ["bob@example.test"], message)


def multipart(parts: list[bytes]) -> bytes:
    body = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\n" + part + b"\r\n" for part in parts)
    return (b"From: carol@remote.test\r\nTo: bob@example.test\r\nSubject: many parts\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + body + b"--b--\r\n")


def only_message(account):
    ref = store.get_folder(account.pk, store.INBOX)
    [uid] = store.uids(ref)
    return ref, uid


def found(account, words: str) -> int:
    return len(store.search_messages(account.pk, SearchQuery(terms=[("", words)])))


def test_a_message_of_ten_thousand_parts_is_stored_with_every_part_and_searchable(mx_port, bob):
    message = multipart([f"word{n}".encode() for n in range(10_000)])
    send(mx_port, message)
    ref, uid = only_message(bob)
    assert store.read_message(ref, uid).endswith(message)
    [info] = store.fetch(ref, [uid])
    assert len(info.bodystructure["parts"]) == 10_000
    assert found(bob, "word0") == found(bob, "word9999") == 1


def test_a_large_part_before_many_small_ones(mx_port, bob):
    """Each small part's header was found by copying the message up to the part's end: 200 parts after a
    20 MB one copied 4 GB."""
    message = multipart([b"first\r\n" + (b"x" * 76 + b"\r\n") * 250_000] + [f"small{n}".encode() for n in range(200)])
    send(mx_port, message)
    ref, uid = only_message(bob)
    stored = store.read_message(ref, uid)
    assert stored.endswith(message)
    [info] = store.fetch(ref, [uid])
    parts = info.bodystructure["parts"]
    assert [stored[p["body_start"] : p["end"]] for p in parts[1:]] == [f"small{n}".encode() for n in range(200)]
    # the index keeps a message's first 200,000 characters of text: the large part's
    assert (found(bob, "first"), found(bob, "small199")) == (1, 0)


def test_a_subject_folded_over_forty_thousand_lines(mx_port, bob):
    """Each folded line was added to a copy of the field so far (seconds for this one 280 KB header,
    in every reader of it: the parse, the trace fields' removals, the search document)."""
    message = (b"From: carol@remote.test\r\nSubject: start\r\n"
               + b" of a long subject\r\n" * 40_000 + b"\r\nbody\r\n")
    send(mx_port, message)
    ref, uid = only_message(bob)
    assert store.read_message(ref, uid).endswith(message)
    [info] = store.fetch(ref, [uid])
    assert info.subject == ("start" + " of a long subject" * 40_000)[:998]
