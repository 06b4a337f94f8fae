"""New mail without reloading: the page carries the store's change marker, /counts/ reports it, and the
first page of a folder reloads its rows (the htmx partial) when it moved."""
from __future__ import annotations

import re

import pytest

from mailcore import store
from tests.webmail.conftest import deliver, message

pytestmark = pytest.mark.django_db


def page_state(page: str) -> str:
    return re.search(r'id="folders"[^>]*data-state="([^"]*)"', page).group(1)


def test_page_state_matches_counts_until_mail_arrives(alice_client, inbox):
    page = alice_client.get(f"/mail/{inbox.mailbox_id}/").content.decode()
    assert page_state(page) == alice_client.get("/counts/").json()["state"]
    deliver(message("Fresh", body="new"))
    counts = alice_client.get("/counts/").json()
    assert counts["state"] != page_state(page) and counts["inbox_unread"] == 1


def test_a_flag_change_moves_the_state_too(alice_client, inbox):
    uid = deliver(message("Old", body="x"))
    before = alice_client.get("/counts/").json()["state"]
    store.store_flags(inbox, [uid], ["\\Flagged"], store.FLAG_ADD)
    assert alice_client.get("/counts/").json()["state"] != before


def test_only_the_first_page_refreshes_itself(alice_client, inbox):
    uids = [deliver(message(f"m{n}", body=str(n))) for n in range(3)]
    first = alice_client.get(f"/mail/{inbox.mailbox_id}/").content.decode()
    assert f'data-refresh-url="/mail/{inbox.mailbox_id}/"' in first
    older = alice_client.get(f"/mail/{inbox.mailbox_id}/?before={uids[-1]}").content.decode()
    assert "data-refresh-url" not in older


def test_the_refresh_gets_only_the_rows_with_the_new_message(alice_client, inbox):
    deliver(message("Earlier", body="x"))
    uid = deliver(message("Just arrived", body="y"))
    partial = alice_client.get(f"/mail/{inbox.mailbox_id}/", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<table class="messages"') and "<html" not in partial
    assert re.findall(r'data-uid="(\d+)"', partial)[0] == str(uid) and "Just arrived" in partial
