"""Ops fixtures: production-like hostname and ports, and an admin client."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.support.dnsserver import dns_server  # noqa: F401 - a fixture for the DNS set-up tests

PRODUCTION_PORTS = {
    "MAIL_SMTP_PORT": 25, "MAIL_SUBMISSION_PORT": 587, "MAIL_SUBMISSIONS_PORT": 465,
    "MAIL_IMAP_PORT": 143, "MAIL_IMAPS_PORT": 993, "MAIL_POP3_PORT": 110, "MAIL_POP3S_PORT": 995,
}


@pytest.fixture
def production_names(settings):
    """MAIL_HOSTNAME mail.example.test and the standard ports, as an operator would configure them."""
    settings.MAIL_HOSTNAME = "mail.example.test"
    for name, port in PRODUCTION_PORTS.items():
        setattr(settings, name, port)
    settings.ALLOWED_HOSTS = ["*"]
    return settings


@pytest.fixture
def admin_client(client, db):
    get_user_model().objects.create_superuser("admin", "admin@example.test", "admin-pw-123")
    client.login(username="admin", password="admin-pw-123")
    return client


from tests.smtp.conftest import mx_port, servers, smtp_settings, submission_port, tls_files  # noqa: E402,F401
from tests.support.smtpreceiver import smtp_receiver  # noqa: E402,F401 - a loopback MX for delivery
