"""Identities: the account's address and each alias are From choices, each with its own signature."""
from __future__ import annotations

import re

import pytest

from mailcore import directory, store

pytestmark = pytest.mark.django_db


@pytest.fixture
def sales_alias(alice):
    directory.create_alias("sales@example.test", ["alice@example.test"])
    return "sales@example.test"


def preferences_form(**extra: str) -> dict[str, str]:
    return {"form": "preferences", "display_name": "Alice", "signature": "Alice, personally",
            "page_size": "50", "remote_images": "ask", "language": "", **extra}


def test_settings_keep_a_signature_per_identity(alice_client, alice, sales_alias):
    alice_client.post("/settings/", preferences_form(**{"signature:sales@example.test": "The sales team"}))
    page = alice_client.get("/settings/").content.decode()
    assert re.search(r'name="signature:sales@example.test"[^>]*>The sales team</textarea>', page)
    assert re.search(r'name="signature"[^>]*>Alice, personally</textarea>', page)


def test_compose_offers_each_identity_with_its_signature(alice_client, alice, sales_alias):
    alice_client.post("/settings/", preferences_form(**{"signature:sales@example.test": "The sales team"}))
    page = alice_client.get("/compose/").content.decode()
    assert '<option value="alice@example.test" data-signature="Alice, personally" selected>' in page
    assert '<option value="sales@example.test" data-signature="The sales team" >' in page
    assert "\n-- \nAlice, personally</textarea>" in page
    as_sales = alice_client.get("/compose/?from=sales@example.test").content.decode()
    assert "\n-- \nThe sales team</textarea>" in as_sales
    assert '<option value="sales@example.test" data-signature="The sales team" selected>' in as_sales


def test_sending_from_an_alias_uses_it_in_from(alice_client, alice, bob, sales_alias):
    response = alice_client.post("/compose/", {"action": "send", "sender": "sales@example.test",
                                               "to": "bob@example.test", "subject": "Offer", "text": "t"})
    assert response.status_code == 302
    got = store.fetch(store.get_folder(bob.pk, store.INBOX))[0]
    assert got.envelope["from"][0][2:] == ["sales", "example.test"]


def test_an_address_that_is_not_mine_is_not_an_identity(alice_client, alice, bob):
    page = alice_client.get("/compose/?from=bob@example.test").content.decode()
    assert 'value="bob@example.test" data-signature' not in page
    response = alice_client.post("/compose/", {"action": "send", "sender": "bob@example.test",
                                               "to": "bob@example.test", "subject": "forged", "text": "t"})
    assert response.status_code == 400
