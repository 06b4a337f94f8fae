"""The Django admin as an operator uses it (Django's test client over the real URL routing)."""
import pytest
from django.contrib.auth import get_user_model

from mailcore.auth import check_login
from mailcore.models import Account, Alias, Domain


@pytest.fixture
def admin_client(client, db):
    get_user_model().objects.create_superuser("admin", "admin@example.test", "admin-pw-123")
    client.login(username="admin", password="admin-pw-123")
    return client


def test_admin_adds_domain_account_and_alias(admin_client):
    response = admin_client.post("/admin/mailcore/domain/add/", {"name": "Example.TEST", "active": "on"})
    assert response.status_code == 302 and Domain.objects.get().name == "example.test"
    response = admin_client.post(
        "/admin/mailcore/account/add/", {"email": "carol@example.test", "password": "carol-pw-123", "quota_bytes": 0}
    )
    assert response.status_code == 302
    assert check_login("carol@example.test", "carol-pw-123") is not None
    response = admin_client.post(
        "/admin/mailcore/alias/add/",
        {
            "source_text": "info@example.test",
            "active": "on",
            "targets-TOTAL_FORMS": "1",
            "targets-INITIAL_FORMS": "0",
            "targets-0-address": "carol@example.test",
        },
    )
    assert response.status_code == 302
    info = Alias.objects.get(source="info@example.test")
    assert list(info.targets.values_list("address", flat=True)) == ["carol@example.test"]


def test_admin_refuses_account_in_unhosted_domain(admin_client):
    response = admin_client.post(
        "/admin/mailcore/account/add/", {"email": "x@nowhere.test", "password": "pw-1234567", "quota_bytes": 0}
    )
    assert response.status_code == 200
    assert b"domain nowhere.test is not hosted here" in response.content
    assert Account.objects.count() == 0


def test_admin_sets_an_accounts_own_sending_limit(admin_client, alice):
    page = admin_client.get(f"/admin/mailcore/account/{alice.pk}/change/").content.decode()
    assert "Recipients outside our domains per hour" in page
    response = admin_client.post(
        f"/admin/mailcore/account/{alice.pk}/change/", {"quota_bytes": 0, "active": "on", "recipients_per_hour": 5000}
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.recipients_per_hour == 5000


def test_admin_sets_a_new_password(admin_client, alice):
    response = admin_client.post(
        f"/admin/mailcore/account/{alice.pk}/change/", {"quota_bytes": 0, "active": "on", "new_password": "new-pw-456"}
    )
    assert response.status_code == 302
    assert check_login("alice@example.test", "new-pw-456") is not None
    assert check_login("alice@example.test", "alice-secret-pw") is None


def test_deleting_a_domain_asks_and_lists_what_goes_with_it(admin_client, alice):
    page = admin_client.get(f"/admin/mailcore/domain/{alice.domain.pk}/delete/")
    assert page.status_code == 200
    assert b"Are you sure" in page.content and b"Alice@example.test" in page.content
    assert Domain.objects.count() == 1
    admin_client.post(f"/admin/mailcore/domain/{alice.domain.pk}/delete/", {"post": "yes"})
    assert Domain.objects.count() == 0 and Account.objects.count() == 0


def test_messages_are_read_only_and_searchable(admin_client, alice):
    from mailcore import store

    store.deliver(b"Subject: Quarterly report\r\n\r\nnumbers", ["alice@example.test"])
    page = admin_client.get("/admin/mailcore/message/?q=Quarterly")
    assert page.status_code == 200 and b"Quarterly report" in page.content
    assert admin_client.get("/admin/mailcore/message/add/").status_code == 403
