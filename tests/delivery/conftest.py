"""Fixtures for delivery tests: the loopback DNS server and SMTP receiver (shared helpers), a zone."""
from __future__ import annotations

import pytest

from tests.support.dnsserver import dns_server  # noqa: F401  (fixtures, used by name)
from tests.support.smtpreceiver import smtp_receiver  # noqa: F401

REMOTE_ZONE = {
    "remote.test": {"MX": ["10 mx.remote.test."]},
    "mx.remote.test": {"A": ["127.0.0.1"]},
    "nullmx.test": {"MX": ["0 ."]},
    "broken.test": "SERVFAIL",
    "slow.test": "TIMEOUT",
}


@pytest.fixture
def remote(settings, dns_server, smtp_receiver, alice):  # noqa: F811
    """alice@example.test is local; remote.test's MX is the loopback receiver."""
    dns_server.records.update(REMOTE_ZONE)
    settings.MAIL_HOSTNAME = "mail.example.test"
    return smtp_receiver
