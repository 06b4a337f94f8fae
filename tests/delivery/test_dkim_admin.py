"""The admin's "Create DKIM key" action on domains: the createdkimkey code, the TXT record shown to publish."""
from __future__ import annotations

import html
import re

import dkim
from cryptography.hazmat.primitives import serialization

from mailcore import dns as maildns
from mailcore.delivery import dkim as outbound_dkim
from mailcore.delivery import queue, worker
from mailcore.models import DkimKey

DOMAINS = "/admin/mailcore/domain/"
MESSAGE = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: signed\r\n\r\nbody\r\n"
TXT_SHOWN = re.compile(r'(\S+)\._domainkey\.example\.test\. IN TXT "(v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+)"')


def create_key_action(admin_client, domain):
    return admin_client.post(DOMAINS, {"action": "create_dkim_key", "_selected_action": [str(domain.pk)]}, follow=True)


def test_action_creates_an_rsa_2048_key_and_shows_the_txt_record_to_publish(admin_client, domain):
    page = create_key_action(admin_client, domain)
    assert page.status_code == 200
    [key] = DkimKey.objects.filter(domain="example.test")
    assert key.selector == outbound_dkim.default_selector()  # the selector createdkimkey would choose
    private = serialization.load_pem_private_key(key.private_key.encode(), password=None)
    assert private.key_size == 2048  # type: ignore[union-attr]
    shown = html.unescape(page.content.decode())
    assert f"DKIM key {key.selector} for example.test created; it signs from now on. " in shown
    assert f"Publish this TXT record: {outbound_dkim.txt_record(key)}" in shown


def test_a_second_key_the_same_day_is_refused_with_a_warning(admin_client, domain):
    create_key_action(admin_client, domain)
    page = create_key_action(admin_client, domain)
    assert DkimKey.objects.filter(domain="example.test").count() == 1
    assert "for example.test exists already (one a day); the newest active key signs." in html.unescape(page.content.decode())


def test_the_record_shown_verifies_the_signature_of_mail_sent_afterwards(admin_client, domain, remote, dns_server):
    page = create_key_action(admin_client, domain)
    selector, record = TXT_SHOWN.search(html.unescape(page.content.decode())).groups()
    dns_server.records[f"{selector}._domainkey.example.test"] = {"TXT": [record]}
    worker.deliver_message(queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"]))
    [received] = remote.messages

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return maildns.txt(name.decode().rstrip("."))[0].encode()

    assert dkim.verify(received.data, dnsfunc=dnsfunc)
