"""SEARCH (key grammar, CHARSET, ESEARCH), SORT and THREAD over real sockets."""
from __future__ import annotations

import datetime as dt

import pytest
from imapclient import IMAPClient

from mailcore import store
from tests.imap.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def message(subject: str, sender: str, body: str, extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
def mailbox(account):
    ref = store.get_folder(account.pk, "INBOX")
    when = dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)
    store.append(ref, message("Lunch plans", "Ann <ann@example.org>", "caf=C3=A9 at noon",
                              "Message-ID: <a@x>\r\nDate: Fri, 1 Mar 2024 10:00:00 +0000\r\nX-Tag: red\r\n"),
                 ["\\Seen"], when)
    store.append(ref, message("Re: Lunch plans", "Bob <bob@example.net>", "yes please",
                              "Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nDate: Sat, 2 Mar 2024 10:00:00 +0000\r\n"),
                 ["\\Flagged", "$Important"], when + dt.timedelta(days=1))
    store.append(ref, message("=?utf-8?q?R=C3=A9sum=C3=A9?=", "Cy <cy@example.com>", "see attached" + "x" * 500,
                              "Message-ID: <c@x>\r\nDate: Sun, 3 Mar 2024 10:00:00 +0000\r\n"),
                 ["\\Deleted"], when + dt.timedelta(days=2))
    return ref


@pytest.fixture
def client(imap_server, mailbox):
    with IMAPClient("127.0.0.1", port=imap_server.port, ssl=False) as client:
        client.login("alice@example.test", PASSWORD)
        client.select_folder("INBOX")
        yield client


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (["ALL"], [1, 2, 3]),
        (["SEEN"], [1]),
        (["UNSEEN", "UNDELETED"], [2]),
        (["FLAGGED"], [2]),
        (["KEYWORD", "$Important"], [2]),
        (["UNKEYWORD", "$Important"], [1, 3]),
        (["FROM", "bob"], [2]),
        (["FROM", "ANN@EXAMPLE"], [1]),
        (["TO", "alice"], [1, 2, 3]),
        (["SUBJECT", "lunch"], [1, 2]),
        (["SUBJECT", "résumé"], [3]),
        (["BODY", "café"], [1]),
        (["TEXT", "yes please"], [2]),
        (["HEADER", "X-Tag", "red"], [1]),
        (["LARGER", "400"], [3]),
        (["SMALLER", "400"], [1, 2]),
        (["NOT", "DELETED"], [1, 2]),
        (["OR", "SEEN", "FLAGGED"], [1, 2]),
        (["SINCE", "2-Mar-2024"], [2, 3]),
        (["BEFORE", "2-Mar-2024"], [1]),
        (["ON", "2-Mar-2024"], [2]),
        (["SENTSINCE", "3-Mar-2024"], [3]),
        (["UID", "2:*"], [2, 3]),
        (["2:3", "DELETED"], [3]),
        (["NEW"], [2, 3]),
        (["RECENT"], [1, 2, 3]),  # this session selected the folder first
        (["OLD"], []),
        (["NEW", "UNDELETED"], [2]),
    ],
)
def test_search_keys(client, criteria, expected):
    assert client.search(criteria, charset="UTF-8") == expected


def test_search_exact_reply_and_nested_parentheses(raw, mailbox):
    raw.login()
    raw.command(b"a SELECT INBOX")
    assert raw.command(b"a SEARCH (OR (SEEN) (FLAGGED)) NOT 3") == [b"* SEARCH 1 2\r\n", b"a OK SEARCH completed\r\n"]
    assert raw.command(b"a UID SEARCH CHARSET UTF-8 SUBJECT {6}\r\nR\xc3\xa9sum") == [
        b"+ Ready for literal data\r\n", b"* SEARCH 3\r\n", b"a OK UID SEARCH completed\r\n"
    ]


def test_esearch_return_options(raw, mailbox):
    raw.login()
    raw.command(b"a SELECT INBOX")
    assert raw.command(b"a SEARCH RETURN (MIN MAX COUNT) ALL") == [
        b'* ESEARCH (TAG "a") MIN 1 MAX 3 COUNT 3\r\n', b"a OK SEARCH completed\r\n"
    ]
    assert raw.command(b"a UID SEARCH RETURN () UNDELETED") == [
        b'* ESEARCH (TAG "a") UID ALL 1:2\r\n', b"a OK UID SEARCH completed\r\n"
    ]


def test_search_errors(raw, mailbox):
    raw.login()
    raw.command(b"a SELECT INBOX")
    assert raw.command(b"a SEARCH CHARSET KOI8-R ALL") == [b"a NO [BADCHARSET (UTF-8 US-ASCII)] unsupported charset\r\n"]
    assert raw.command(b"a SEARCH FROB") == [b"a BAD unknown search key FROB\r\n"]
    assert raw.command(b"a SEARCH SINCE 32-Jan-2024") == [b"a BAD invalid date\r\n"]
    assert raw.command(b"a SEARCH " + b"NOT " * 40 + b"ALL") == [b"a BAD nesting deeper than 16 levels\r\n"]


def test_sort_and_thread(client):
    assert client.sort(["SUBJECT"]) == [2, 1, 3] or client.sort(["SUBJECT"]) == [1, 2, 3]
    assert client.sort(["REVERSE", "ARRIVAL"]) == [3, 2, 1]
    assert client.sort(["FROM"]) == [1, 2, 3]
    assert client.sort(["SIZE"], ["NOT", "DELETED"]) in ([1, 2], [2, 1])
    assert client.thread("REFERENCES") == ((1, 2), (3,))


def test_sort_exact_reply(raw, mailbox):
    raw.login()
    raw.command(b"a SELECT INBOX")
    assert raw.command(b"a SORT (REVERSE DATE) UTF-8 ALL") == [b"* SORT 3 2 1\r\n", b"a OK SORT completed\r\n"]
    assert raw.command(b"a UID THREAD REFERENCES UTF-8 ALL") == [b"* THREAD (1 2)(3)\r\n", b"a OK UID THREAD completed\r\n"]


COLUMN_CRITERIA = [
    (["UNSEEN", "SINCE", "2-Mar-2024"], [2, 3]),
    (["ON", "2-Mar-2024"], [2]),
    (["BEFORE", "2-Mar-2024", "SEEN"], [1]),
    (["SENTON", "3-Mar-2024"], [3]),
    (["SENTBEFORE", "3-Mar-2024", "SENTSINCE", "2-Mar-2024"], [2]),
    (["LARGER", "400", "DELETED"], [3]),
    (["SMALLER", "400"], [1, 2]),
    (["SUBJECT", "RÉSUMÉ", "2:*"], [3]),
    (["SUBJECT", "plans", "UID", "2"], [2]),
    (["UNFLAGGED", "1:2"], [1]),
    (["ANSWERED"], []),
]


@pytest.mark.parametrize(("criteria", "expected"), COLUMN_CRITERIA)
def test_keys_filtered_in_sql_give_what_full_matching_gives(client, criteria, expected):
    """Flag, date, size and Subject keys go to the database; NOT NOT (...) forces the full matcher."""
    assert client.search(criteria, charset="UTF-8") == expected
    if all(c.isascii() for c in criteria):  # imapclient sends nested lists as ASCII only
        assert client.search(["NOT", ["NOT", criteria]]) == expected


def test_subject_longer_than_the_cached_column_is_still_found(client, mailbox):
    store.append(mailbox, message("long " + "y" * 1200 + " tailword", "Di <di@example.org>", "body"))
    client.noop()
    assert client.search(["SUBJECT", "tailword"]) == [4]
