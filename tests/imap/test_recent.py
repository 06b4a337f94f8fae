"""\\Recent (RFC 3501 §2.3.2) across sessions, STATUS RECENT and DELETED (RFC 9051 §6.3.11)."""
from __future__ import annotations

import pytest

from mailcore import store
from tests.imap.conftest import RawClient

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGE = b"From: ann@example.org\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


def session(imap_server, verb: bytes = b"SELECT") -> tuple[RawClient, list[bytes]]:
    client = RawClient(imap_server.port)
    client.login()
    return client, client.command(b"s " + verb + b" INBOX", b"s")


def test_first_read_write_session_alone_sees_new_mail_as_recent(imap_server, account):
    store.deliver(MESSAGE, ["alice@example.test"])
    store.deliver(MESSAGE, ["alice@example.test"])
    looker, looked = session(imap_server, b"EXAMINE")  # EXAMINE sees \Recent but claims nothing
    assert b"* 2 RECENT\r\n" in looked
    first, selected = session(imap_server)
    assert b"* 2 RECENT\r\n" in selected
    assert first.command(b"f FETCH 1:2 FLAGS", b"f")[:2] == [b"* 1 FETCH (FLAGS (\\Recent))\r\n",
                                                            b"* 2 FETCH (FLAGS (\\Recent))\r\n"]
    second, selected = session(imap_server)
    assert b"* 0 RECENT\r\n" in selected
    assert second.command(b"f FETCH 1 FLAGS", b"f")[0] == b"* 1 FETCH (FLAGS ())\r\n"

    store.deliver(MESSAGE, ["alice@example.test"])
    assert second.command(b"n NOOP", b"n") == [b"* 3 EXISTS\r\n", b"* 1 RECENT\r\n", b"n OK NOOP completed\r\n"]
    assert first.command(b"n NOOP", b"n") == [b"* 3 EXISTS\r\n", b"* 2 RECENT\r\n", b"n OK NOOP completed\r\n"]
    assert second.command(b"s SEARCH RECENT", b"s")[0] == b"* SEARCH 3\r\n"
    assert first.command(b"s SEARCH RECENT", b"s")[0] == b"* SEARCH 1 2\r\n"
    assert first.command(b"s SEARCH OLD", b"s")[0] == b"* SEARCH 3\r\n"
    first.command(b"t STORE 1 +FLAGS (\\Seen)", b"t")
    assert first.command(b"s SEARCH NEW", b"s")[0] == b"* SEARCH 2\r\n"
    for client in (looker, first, second):
        client.close()


def test_status_recent_counts_messages_no_session_was_told_of(imap_server, account):
    client = RawClient(imap_server.port)
    client.login()
    store.deliver(MESSAGE, ["alice@example.test"])
    assert client.command(b"a STATUS INBOX (MESSAGES RECENT)")[0] == b"* STATUS INBOX (MESSAGES 1 RECENT 1)\r\n"
    client.command(b"b SELECT INBOX", b"b")
    assert client.command(b"a STATUS INBOX (RECENT)")[0] == b"* STATUS INBOX (RECENT 0)\r\n"
    client.close()


def test_imap4rev2_sessions_have_no_recent(imap_server, account):
    store.deliver(MESSAGE, ["alice@example.test"])
    client = RawClient(imap_server.port)
    client.login()
    client.command(b"e ENABLE IMAP4rev2", b"e")
    reply = client.command(b"s SELECT INBOX", b"s")
    assert not any(b"RECENT" in line for line in reply)
    assert client.command(b"f FETCH 1 FLAGS", b"f")[0] == b"* 1 FETCH (FLAGS ())\r\n"
    client.close()
    other, selected = session(imap_server)  # the rev2 session claimed nothing
    assert b"* 1 RECENT\r\n" in selected
    other.close()


def test_status_deleted_counts_deleted_messages(imap_server, account):
    for _ in range(3):
        store.deliver(MESSAGE, ["alice@example.test"])
    client, _selected = session(imap_server)
    client.command(b"t STORE 1:2 +FLAGS.SILENT (\\Deleted)", b"t")
    assert client.command(b"a STATUS INBOX (DELETED MESSAGES)")[0] == b"* STATUS INBOX (DELETED 2 MESSAGES 3)\r\n"
    reply = client.command(b'a LIST "" INBOX RETURN (STATUS (DELETED))')
    assert reply[1] == b"* STATUS INBOX (DELETED 2)\r\n"
    assert client.command(b"a STATUS INBOX (DELETED BOGUS)")[0] == b"a BAD unknown STATUS item BOGUS\r\n"
    client.close()

