"""Full-text search through the store's index: operators, folders, index upkeep on copy/expunge/delete."""
from __future__ import annotations

import datetime as dt

import pytest

from mailcore import store
from mailcore.store import SearchQuery
from tests.webmail.conftest import deliver, message
from webmail.searchquery import parse_search

pytestmark = pytest.mark.django_db


def subjects(account_id: int, text: str, folder=None) -> list[str]:
    parsed = parse_search(text)
    return sorted(e.info.subject for e in store.search_messages(account_id, parsed.query, folder))


@pytest.fixture
def mail(alice, inbox):
    deliver(message("Quarterly report", body="The numbers for the budget are attached", sender="dave@corp.test"))
    deliver(message("Lunch", body="Pizza on Friday?", sender="erin@food.test", to="alice@example.test, bob@x.test"))
    deliver(message("Tiếng Việt", body="Xin chào các bạn", sender="lan@vn.test"))
    return alice.pk


def test_free_text_matches_body_and_headers_by_word_prefix(mail):
    assert subjects(mail, "budget") == ["Quarterly report"]
    assert subjects(mail, "pizz") == ["Lunch"]
    assert subjects(mail, "quarterly numbers") == ["Quarterly report"]
    assert subjects(mail, "nothing-like-this") == []


def test_field_operators(mail):
    assert subjects(mail, "from:dave") == ["Quarterly report"]
    assert subjects(mail, "from:food.test") == ["Lunch"]
    assert subjects(mail, "to:bob") == ["Lunch"]
    assert subjects(mail, "subject:lunch") == ["Lunch"]
    assert subjects(mail, "subject:pizza") == []  # only in the body


def test_flag_operators(mail, inbox):
    store.store_flags(inbox, [1], ["\\Flagged"], store.FLAG_ADD)
    store.store_flags(inbox, [2], ["\\Seen"], store.FLAG_ADD)
    assert subjects(mail, "is:flagged") == ["Quarterly report"]
    assert subjects(mail, "is:unread") == ["Quarterly report", "Tiếng Việt"]


def test_has_attachment(mail):
    deliver(message("with file", content_type='multipart/mixed; boundary="b"',
                    body='--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\nContent-Type: application/pdf\r\n'
                         'Content-Disposition: attachment; filename="a.pdf"\r\n\r\nPDF\r\n--b--'))
    assert subjects(mail, "has:attachment") == ["with file"]


def test_dates_after_inclusive_before_exclusive(alice, inbox):
    for day in (1, 2, 3):
        store.append(inbox, message(f"day {day}"), internal_date=dt.datetime(2026, 3, day, 12, tzinfo=dt.UTC))
    assert subjects(alice.pk, "after:2026-03-02") == ["day 2", "day 3"]
    assert subjects(alice.pk, "before:2026/03/02") == ["day 1"]
    assert subjects(alice.pk, "after:2026-03-02 before:2026-03-03") == ["day 2"]


def test_vietnamese_matches_with_and_without_diacritics_on_sqlite(mail, django_db_blocker):
    from django.db import connection

    assert subjects(mail, "chào") == ["Tiếng Việt"]
    if connection.vendor == "sqlite":
        assert subjects(mail, "tieng") == ["Tiếng Việt"]


def test_in_folder_and_index_follows_copy_move_and_expunge(mail, alice, inbox):
    archive = store.folder_by_special_use(alice.pk, "\\Archive")
    store.copy(inbox, [1], archive)
    assert subjects(mail, "budget") == ["Quarterly report", "Quarterly report"]
    assert subjects(mail, "budget", folder=archive) == ["Quarterly report"]
    store.move(inbox, [2], archive)
    assert subjects(mail, "pizza", folder=archive) == ["Lunch"]
    assert subjects(mail, "pizza", folder=inbox) == []
    store.store_flags(archive, store.uids(archive), ["\\Deleted"], store.FLAG_ADD)
    store.expunge(archive)
    assert subjects(mail, "budget") == ["Quarterly report"]
    store.delete_folder(alice.pk, "Archive")
    assert subjects(mail, "pizza") == []


def test_search_results_page_by_keyset(alice, inbox):
    for n in range(5):
        deliver(message(f"common {n}", body="shared words"))
    query = SearchQuery(terms=[("", "shared")])
    first = store.search_messages(alice.pk, query, limit=3)
    assert [e.info.subject for e in first] == ["common 4", "common 3", "common 2"]
    rest = store.search_messages(alice.pk, query, before_key=first[-1].key, limit=3)
    assert [e.info.subject for e in rest] == ["common 1", "common 0"]


def test_query_syntax_characters_are_not_operators(mail):
    for text in ('"', 'AND OR NOT', "a*b", "NEAR(x y)", "budget)", "col:umn", "'; DROP TABLE x; --", "&|!:*"):
        subjects(mail, text)  # never raises


def test_search_page_uses_the_operators(alice_client, mail):
    page = alice_client.get("/search/", {"q": "from:dave budget"}).content.decode()
    assert "Quarterly report" in page and "Lunch" not in page and "INBOX" in page
    page = alice_client.get("/search/", {"q": "in:Nowhere x"}).content.decode()
    assert "No such folder" in page
    page = alice_client.get("/search/", {"q": "in:inbox pizza"}).content.decode()
    assert "Lunch" in page
    assert "Not understood" in alice_client.get("/search/", {"q": "before:yesterday"}).content.decode()
