"""FETCH over real sockets, including the whole mail corpus: BODY[] byte-exact, sections, BINARY, ENVELOPE, BODYSTRUCTURE."""
from __future__ import annotations

import email
import email.policy
import imaplib

import pytest
from imapclient import IMAPClient

from mailcore import store
from mailcore.mime import to_crlf
from tests.conftest import corpus_files
from tests.imap.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

MULTIPART = (
    b"From: Ann <ann@example.org>\r\nTo: alice@example.test, \"Bo\" <bo@example.net>\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <m1@example.org>\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n"
    b"preamble\r\n--xx\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
    b"--xx\r\nContent-Type: application/octet-stream; name=a.bin\r\nContent-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename=a.bin\r\n\r\nAAEC\r\n"
    b"--xx\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: x@y.example\r\n\r\ninner body\r\n"
    b"--xx--\r\n"
)
MIME_HEADER = (
    b"Content-Type: application/octet-stream; name=a.bin\r\nContent-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename=a.bin\r\n\r\n"
)


@pytest.fixture
def client(imap_server, account):
    with IMAPClient("127.0.0.1", port=imap_server.port, ssl=False) as client:
        client.login("alice@example.test", PASSWORD)
        yield client


def test_fetch_sections_of_a_multipart_message_exactly(raw, account):
    ref = store.get_folder(account.pk, "INBOX")
    store.append(ref, MULTIPART, ["\\Seen"])
    raw.login()
    raw.command(b"a SELECT INBOX")
    assert raw.command(b"a FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2])") == [
        b"* 1 FETCH (BODY[1] {5}\r\n",
        b"hello BODY[2.MIME] {%d}\r\n" % len(MIME_HEADER),
        b"Content-Type: application/octet-stream; name=a.bin\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Disposition: attachment; filename=a.bin\r\n",
        b"\r\n",
        b" BINARY[2] ~{3}\r\n",
        b"\x00\x01\x02 BINARY.SIZE[2] 3)\r\n",
        b"a OK FETCH completed\r\n",
    ]
    assert raw.command(b"a FETCH 1 (BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[HEADER.FIELDS (subject)]<0.9>)") == [
        b"* 1 FETCH (BODY[3.HEADER] {37}\r\n",
        b"Subject: inner\r\n",
        b"From: x@y.example\r\n",
        b"\r\n",
        b" BODY[3.TEXT] {10}\r\n",
        b"inner body BODY[HEADER.FIELDS (SUBJECT)]<0> {9}\r\n",
        b"Subject: )\r\n",
        b"a OK FETCH completed\r\n",
    ]


def test_envelope_and_bodystructure_of_a_multipart_message(raw, account):
    store.append(store.get_folder(account.pk, "INBOX"), MULTIPART)
    raw.login()
    raw.command(b"a EXAMINE INBOX")
    reply = b"".join(raw.command(b"a FETCH 1 (ENVELOPE BODYSTRUCTURE)"))
    assert (
        b'ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "=?utf-8?q?caf=C3=A9?=" (("Ann" NIL "ann" "example.org")) '
        b'(("Ann" NIL "ann" "example.org")) (("Ann" NIL "ann" "example.org")) '
        b'((NIL NIL "alice" "example.test")("Bo" NIL "bo" "example.net")) NIL NIL NIL "<m1@example.org>")'
    ) in reply
    assert (
        b'BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 5 1 NIL NIL NIL NIL)'
        b'("APPLICATION" "OCTET-STREAM" ("NAME" "a.bin") NIL NIL "BASE64" 4 NIL ("ATTACHMENT" ("FILENAME" "a.bin")) NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 50 (NIL "inner" (("NIL" NIL "x" "y.example"))'
    ) in reply or b'"MIXED" ("BOUNDARY" "xx") NIL NIL NIL)' in reply


def test_fetch_body_sets_seen_and_peek_does_not(client, account):
    store.append(store.get_folder(account.pk, "INBOX"), MULTIPART)
    client.select_folder("INBOX")
    assert client.fetch([1], ["BODY.PEEK[TEXT]"])[1].get(b"FLAGS") is None
    assert client.get_flags([1])[1] == (b"\\Recent",)  # RFC 3501 §2.3.2: this session saw it first
    data = client.fetch([1], ["BODY[1]"])[1]
    assert data[b"BODY[1]"] == b"hello" and b"\\Seen" in data[b"FLAGS"]


def test_fetch_in_examine_does_not_set_seen(client, account):
    store.append(store.get_folder(account.pk, "INBOX"), MULTIPART)
    client.select_folder("INBOX", readonly=True)
    client.fetch([1], ["RFC822"])
    assert client.get_flags([1])[1] == (b"\\Recent",)  # EXAMINE shows \Recent without claiming it


def test_fetch_invalid_sequence_number_is_bad(raw, account):
    store.append(store.get_folder(account.pk, "INBOX"), MULTIPART)
    raw.login()
    raw.command(b"a SELECT INBOX")
    assert raw.command(b"a FETCH 5 FLAGS") == [b"a BAD invalid message sequence number\r\n"]
    assert raw.command(b"a UID FETCH 5 FLAGS") == [b"a OK UID FETCH completed\r\n"]
    assert raw.command(b"a FETCH 1 (BODY[1.])") == [b"a BAD section number must not end with a dot\r\n"]
    assert raw.command(b"a FETCH 1 (FOO)") == [b"a BAD unknown FETCH item FOO\r\n"]


def test_fetch_of_a_missing_part_is_nil(raw, account):
    store.append(store.get_folder(account.pk, "INBOX"), MULTIPART)
    raw.login()
    raw.command(b"a SELECT INBOX")
    assert raw.command(b"a FETCH 1 (BODY.PEEK[9])") == [b"* 1 FETCH (BODY[9] NIL)\r\n", b"a OK FETCH completed\r\n"]


def _leaves(message, path=()):
    """(path, email part) for each non-multipart part, not descending into message/rfc822."""
    if message.is_multipart() and message.get_content_maintype() == "multipart":
        for number, child in enumerate(message.get_payload(), 1):
            yield from _leaves(child, (*path, number))
    else:
        yield (path or (1,)), message


ENCODED = ("base64", "quoted-printable")


def test_whole_corpus_body_binary_envelope_bodystructure(client, account, imap_server):
    plain = imaplib.IMAP4("127.0.0.1", imap_server.port)
    plain.login("alice@example.test", PASSWORD)
    ref = store.get_folder(account.pk, "INBOX")
    files = corpus_files()
    for path in files:
        store.append(ref, path.read_bytes())
    plain.select("INBOX", readonly=True)
    client.select_folder("INBOX", readonly=True)
    fetched = client.fetch(list(range(1, len(files) + 1)), ["BODY.PEEK[]", "BODYSTRUCTURE", "ENVELOPE", "RFC822.SIZE"])
    assert len(fetched) == len(files)
    checked_parts = 0
    for seq, path in enumerate(files, 1):
        raw_bytes = to_crlf(path.read_bytes())
        data = fetched[seq]
        assert data[b"BODY[]"] == raw_bytes, path  # byte-exact
        assert data[b"RFC822.SIZE"] == len(raw_bytes)
        parsed = email.message_from_bytes(raw_bytes, policy=email.policy.compat32)
        subject = parsed.get("Subject")
        subject = subject if isinstance(subject, str) else None
        if subject is not None and "\n" not in subject and subject.isascii():
            assert data[b"ENVELOPE"].subject.decode() == subject.strip(), path
        if parsed.defects:
            continue
        structure = data[b"BODYSTRUCTURE"]  # parsed by imapclient: the syntax is valid
        if parsed.get_content_maintype() == "multipart":
            assert structure.is_multipart and len(structure[0]) == len(parsed.get_payload()), path
            assert structure[1].decode().lower() == parsed.get_content_subtype(), path
        else:
            assert not structure.is_multipart, path
            assert (structure[0] + b"/" + structure[1]).decode().lower() == parsed.get_content_type(), path
        leaves = list(_leaves(parsed))
        if len(leaves) > 20:
            continue
        for part_path, part in leaves:
            expected = part.get_payload(decode=True)
            if expected is None or part.get("Content-Transfer-Encoding", "").lower() not in ENCODED:
                continue
            section = ".".join(map(str, part_path))
            # imaplib, as imapclient cannot read literal8 (RFC 3516 ~{n}) replies
            typ, answer = plain.fetch(str(seq), f"(BINARY.PEEK[{section}])")
            assert typ == "OK" and answer[0][1] == expected, (path, section)
            checked_parts += 1
    assert checked_parts > 20
