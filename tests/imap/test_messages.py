"""STORE, COPY/MOVE (COPYUID), EXPUNGE/UID EXPUNGE, CLOSE/UNSELECT, APPEND (APPENDUID, LITERAL+, TOOBIG) over real sockets."""
from __future__ import annotations

import imaplib

import pytest
from imapclient import IMAPClient

from mailcore import store
from tests.imap.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: a@example.org\r\nSubject: m\r\n\r\nbody\r\n"


@pytest.fixture
def filled(account):
    ref = store.get_folder(account.pk, "INBOX")
    for _ in range(3):
        store.append(ref, MESSAGE)
    return ref


@pytest.fixture
def client(imap_server, account):
    with IMAPClient("127.0.0.1", port=imap_server.port, ssl=False) as client:
        client.login("alice@example.test", PASSWORD)
        yield client


def test_store_replies_with_fetch_flags(raw, filled):
    raw.login()
    raw.command(b"a SELECT INBOX")
    assert raw.command(b"a STORE 1:2 +FLAGS (\\Seen $Work)") == [
        b"* 1 FETCH (FLAGS (\\Seen $Work \\Recent))\r\n",
        b"* 2 FETCH (FLAGS (\\Seen $Work \\Recent))\r\n",
        b"a OK STORE completed\r\n",
    ]
    assert raw.command(b"a STORE 1 -FLAGS.SILENT $Work") == [b"a OK STORE completed\r\n"]
    assert raw.command(b"a UID STORE 2 FLAGS (\\Flagged)") == [
        b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))\r\n",
        b"a OK UID STORE completed\r\n",
    ]
    assert raw.command(b"a STORE 1 +FLAGS (\\Bogus)") == [b"a BAD unknown system flag\r\n"]


def test_store_in_examine_is_no_read_only(raw, filled):
    raw.login()
    raw.command(b"a EXAMINE INBOX")
    assert raw.command(b"a STORE 1 +FLAGS (\\Seen)") == [b"a NO [READ-ONLY] mailbox is read-only (EXAMINE)\r\n"]


def test_copy_gives_copyuid_and_move_expunges(raw, filled):
    raw.login()
    raw.command(b"a SELECT INBOX")
    trash = store.get_folder(filled.account_id, "Trash")
    assert raw.command(b"a COPY 1:2 Trash") == [
        b"a OK [COPYUID %d 1:2 1:2] COPY completed\r\n" % trash.uidvalidity
    ]
    assert raw.command(b"a UID MOVE 2 Trash") == [
        b"* OK [COPYUID %d 2 3] moved\r\n" % trash.uidvalidity,
        b"* 2 EXPUNGE\r\n",
        b"a OK UID MOVE completed\r\n",
    ]
    assert raw.command(b"a COPY 1 Nowhere") == [b"a NO [TRYCREATE] no folder Nowhere\r\n"]
    assert len(store.uids(trash)) == 3 and store.uids(filled) == [1, 3]


def test_expunge_and_uid_expunge(raw, filled):
    raw.login()
    raw.command(b"a SELECT INBOX")
    raw.command(b"a STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    assert raw.command(b"a UID EXPUNGE 2") == [b"* 2 EXPUNGE\r\n", b"a OK UID EXPUNGE completed\r\n"]
    assert raw.command(b"a EXPUNGE") == [b"* 2 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n", b"a OK EXPUNGE completed\r\n"]
    assert store.uids(filled) == []


def test_close_expunges_silently_and_unselect_does_not(raw, filled):
    raw.login()
    raw.command(b"a SELECT INBOX")
    raw.command(b"a STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert raw.command(b"a UNSELECT") == [b"a OK UNSELECT completed\r\n"]
    assert store.uids(filled) == [1, 2, 3]
    raw.command(b"a SELECT INBOX")
    assert raw.command(b"a CLOSE") == [b"a OK CLOSE completed\r\n"]
    assert store.uids(filled) == [2, 3]
    assert raw.command(b"a FETCH 1 FLAGS") == [b"a BAD FETCH is not allowed in the authenticated state\r\n"]


def test_append_with_imapclient_gives_appenduid(client, account):
    reply = client.append("Drafts", MESSAGE, flags=[b"\\Draft"], msg_time=None)
    drafts = store.get_folder(account.pk, "Drafts")
    assert reply == b"[APPENDUID %d 1] APPEND completed" % drafts.uidvalidity
    assert store.fetch(drafts)[0].flags == ("\\Draft",)
    assert store.read_message(drafts, 1) == MESSAGE


def test_append_with_literal_plus_and_date(raw, account):
    raw.login()
    raw.send(b'a APPEND INBOX (\\Seen) "05-Jan-2024 10:00:00 +0100" {%d+}\r\n' % len(MESSAGE) + MESSAGE + b"\r\n")
    inbox = store.get_folder(account.pk, "INBOX")
    assert raw.until(b"a") == [b"a OK [APPENDUID %d 1] APPEND completed\r\n" % inbox.uidvalidity]
    raw.command(b"a SELECT INBOX")
    assert raw.command(b"a FETCH 1 (INTERNALDATE FLAGS)") == [
        b'* 1 FETCH (INTERNALDATE "05-Jan-2024 09:00:00 +0000" FLAGS (\\Seen \\Recent))\r\n',
        b"a OK FETCH completed\r\n",
    ]


def test_append_to_missing_folder_is_trycreate(raw):
    raw.login()
    raw.send(b"a APPEND Nope {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
    assert raw.until(b"a") == [b"a NO [TRYCREATE] no folder Nope\r\n"]


def test_append_over_size_limit_is_toobig_before_reading(raw, settings):
    settings.MAIL_MAX_MESSAGE_SIZE = 1000
    raw.login()
    raw.send(b"a APPEND INBOX {5000}\r\n")
    assert raw.line() == b"a NO [TOOBIG] message is larger than the server accepts\r\n"
    assert raw.command(b"b NOOP", b"b") == [b"b OK NOOP completed\r\n"]


def test_append_non_synchronising_over_limit_says_bye(raw, settings):
    settings.MAIL_MAX_MESSAGE_SIZE = 1000
    raw.login()
    raw.send(b"a APPEND INBOX {5000+}\r\n")
    assert raw.line() == b"a NO [TOOBIG] message is larger than the server accepts\r\n"
    assert raw.line() == b"* BYE literal too large\r\n"
    assert raw.line() == b""


def test_over_quota_append_is_no_overquota(raw, account):
    account.quota_bytes = 10
    account.save()
    raw.login()
    raw.send(b"a APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
    assert raw.until(b"a") == [b"a NO [OVERQUOTA] mailbox is over quota\r\n"]


def test_imaplib_full_cycle(imap_server, filled):
    client = imaplib.IMAP4("127.0.0.1", imap_server.port)
    client.login("alice@example.test", PASSWORD)
    assert client.select("INBOX") == ("OK", [b"3"])
    typ, data = client.uid("FETCH", "1:*", "(UID RFC822.SIZE)")
    assert typ == "OK" and data == [b"1 (UID 1 RFC822.SIZE %d)" % len(MESSAGE),
                                    b"2 (UID 2 RFC822.SIZE %d)" % len(MESSAGE),
                                    b"3 (UID 3 RFC822.SIZE %d)" % len(MESSAGE)]
    client.store("1", "+FLAGS", "\\Deleted")
    assert client.expunge() == ("OK", [b"1"])
    client.logout()
