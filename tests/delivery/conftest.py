"""Fixtures for delivery tests: the loopback DNS server and SMTP receiver (shared helpers), a zone."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import celeryqueue
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


@pytest.fixture(autouse=True, scope="session")
def private_celery_queue() -> Iterator[str]:
    """With a broker, this run's tasks go to a queue of its own (deleted after), not to real workers'."""
    with celeryqueue.private_celery_queue("test-delivery") as name:
        yield name


@pytest.fixture(autouse=True)
def no_pending_wake_marks_after_the_test() -> Iterator[None]:
    """Tests send tasks no worker takes: their domains' pending marks (mailcore/delivery/wake.py) must not
    silence the next test's wake-ups. Only this run's own keys go (its private queue's)."""
    yield
    from mailcore.delivery.wake import forget_pending

    forget_pending()


@pytest.fixture(autouse=True)
def no_pooled_connections_after_the_test() -> Iterator[None]:
    """Connections a test's runs kept open (mailcore/delivery/pool.py) are closed when it ends."""
    yield
    from mailcore.delivery import pool

    pool.close_idle(0)
