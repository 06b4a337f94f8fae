"""Webmail fixtures: signed-in Django test clients for alice and bob, and mail delivered through the store."""
from __future__ import annotations

import pytest
from django.test import Client

from mailcore import store

ALICE_PW = "alice-secret-pw"
BOB_PW = "bob-secret-pw"


def message(subject: str = "Hello", body: str = "Hi there", sender: str = "carol@remote.test",
            to: str = "alice@example.test", extra: str = "", content_type: str = "text/plain; charset=utf-8") -> bytes:
    return (
        f"From: Carol <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <{abs(hash(subject + body))}@remote.test>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n{extra}\r\n{body}\r\n"
    ).encode()


def deliver(raw: bytes, to: str = "alice@example.test") -> int:
    report = store.deliver(raw, [to])
    return report.delivered[to][0][1]


def signed_in(address: str, password: str) -> Client:
    client = Client()
    response = client.post("/login/", {"address": address, "password": password})
    assert response.status_code == 302, response.content
    return client


@pytest.fixture
def alice_client(alice) -> Client:
    return signed_in("alice@example.test", ALICE_PW)


@pytest.fixture
def bob_client(bob) -> Client:
    return signed_in("bob@example.test", BOB_PW)


@pytest.fixture
def inbox(alice) -> store.FolderRef:
    return store.get_folder(alice.pk, store.INBOX)


@pytest.fixture(autouse=True)
def send_at_once(settings):
    """Webmail tests send without the undo window unless they test it (tests/webmail/test_undo_send.py)."""
    settings.MAIL_WEBMAIL_UNDO_SEND_SECONDS = 0
