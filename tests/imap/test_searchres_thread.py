"""SEARCHRES (RFC 5182) and THREAD=REFERENCES (RFC 5256 §4) over a raw socket, exact replies."""
from __future__ import annotations

import pytest

from mailcore import store
from tests.imap.test_recent import MESSAGE, session

pytestmark = pytest.mark.django_db(transaction=True)


# SEARCHRES (RFC 5182) ---------------------------------------------------------------------


def test_search_save_then_dollar_in_fetch_store_search_and_uid_commands(imap_server, account):
    for _ in range(5):
        store.deliver(MESSAGE, ["alice@example.test"])
    client, _selected = session(imap_server)
    assert b"SEARCHRES" in client.command(b"c CAPABILITY", b"c")[0]
    assert client.command(b"a SEARCH RETURN (SAVE) 2:3") == [b"a OK SEARCH completed\r\n"]
    assert client.command(b"a FETCH $ (UID)") == [b"* 2 FETCH (UID 2)\r\n", b"* 3 FETCH (UID 3)\r\n",
                                                  b"a OK FETCH completed\r\n"]
    assert client.command(b"a UID FETCH $ (UID)")[:2] == [b"* 2 FETCH (UID 2)\r\n", b"* 3 FETCH (UID 3)\r\n"]
    assert client.command(b"a STORE $ +FLAGS.SILENT (\\Deleted)") == [b"a OK STORE completed\r\n"]
    assert client.command(b"a SEARCH DELETED NOT $")[0] == b"* SEARCH\r\n"
    assert client.command(b"a UID SEARCH UID $ DELETED")[0] == b"* SEARCH 2 3\r\n"
    # with ALL the whole result is saved and returned; with MIN/MAX alone only those messages
    reply = client.command(b"a UID SEARCH RETURN (SAVE ALL) UNDELETED")
    assert reply[0] == b'* ESEARCH (TAG "a") UID ALL 1,4:5\r\n'
    assert client.command(b"a SEARCH $")[0] == b"* SEARCH 1 4 5\r\n"
    client.command(b"a SEARCH RETURN (SAVE MIN MAX) UNDELETED")
    assert client.command(b"a SEARCH $")[0] == b"* SEARCH 1 5\r\n"
    # an expunged message leaves `$`; a new SELECT empties it
    client.command(b"a STORE 5 +FLAGS.SILENT (\\Deleted)")
    client.command(b"a EXPUNGE")
    assert client.command(b"a UID SEARCH $")[0] == b"* SEARCH 1\r\n"
    client.command(b"a SELECT INBOX")
    assert client.command(b"a FETCH $ (UID)") == [b"a OK FETCH completed\r\n"]
    client.close()


def test_failed_search_with_save_empties_the_saved_result(imap_server, account):
    store.deliver(MESSAGE, ["alice@example.test"])
    client, _selected = session(imap_server)
    client.command(b"a SEARCH RETURN (SAVE) ALL")
    assert client.command(b"a SEARCH RETURN (SAVE) BOGUS")[-1] == b"a BAD unknown search key BOGUS\r\n"
    assert client.command(b"a SEARCH $")[0] == b"* SEARCH\r\n"
    client.close()


# THREAD=REFERENCES (RFC 5256 §4) --------------------------------------------------------------


def threaded(message_id: str, subject: str, day: int, extra: str = "") -> bytes:
    return (f"From: ann@example.org\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
            f"Date: {day:d} Mar 2024 10:00:00 +0000\r\n{extra}\r\nbody\r\n").encode()


def test_thread_references_links_chains_prunes_dummies_and_merges_subjects(imap_server, account):
    inbox = store.get_folder(account.pk, "INBOX")
    for raw in [
        threaded("<a@x>", "Plans", 1),
        threaded("<c@x>", "Re: Plans", 3, "References: <a@x> <b@x>\r\n"),  # <b@x> is missing: a dummy, pruned
        threaded("<d@x>", "Re: Plans", 2, "In-Reply-To: <a@x>\r\n"),
        threaded("<e@x>", "Re: [list] Plans", 4),  # no references: joins "Plans" by its base subject
        threaded("<f@x>", "Other", 5, "References: <zz@x> <yy@x>\r\n"),  # two siblings under a missing root
        threaded("<g@x>", "Other", 6, "References: <zz@x>\r\n"),
        threaded("<h@x>", "Lunch", 7),  # same subject, neither a reply: both under a new dummy
        threaded("<i@x>", "Lunch", 8),
    ]:
        store.append(inbox, raw)
    client, _selected = session(imap_server)
    assert client.command(b"a THREAD REFERENCES UTF-8 ALL") == [
        b"* THREAD (1 (3)(2)(4))((5)(6))((7)(8))\r\n", b"a OK THREAD completed\r\n"
    ]
    assert client.command(b"a UID THREAD REFERENCES UTF-8 SUBJECT lunch")[0] == b"* THREAD ((7)(8))\r\n"
    client.close()


def test_thread_references_refuses_a_loop(imap_server, account):
    inbox = store.get_folder(account.pk, "INBOX")
    store.append(inbox, threaded("<x@x>", "Loop", 1, "References: <y@x>\r\n"))
    store.append(inbox, threaded("<y@x>", "Re: Loop", 2, "References: <x@x>\r\n"))
    client, _selected = session(imap_server)
    assert client.command(b"a THREAD REFERENCES UTF-8 ALL")[0] == b"* THREAD (2 1)\r\n"
    client.close()
