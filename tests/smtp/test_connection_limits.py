"""Open connections per listener, in all and from one client address (MAIL_SMTP_MAX_CONNECTIONS,
MAIL_SMTP_MAX_CONNECTIONS_PER_IP): one too many is greeted with 421 and closed, and its slot
comes back when a connection ends."""
from __future__ import annotations

import socket
import time

import pytest

from mailcore.connlimits import client_key

from .conftest import HOSTNAME, TIMEOUT, RawClient

pytestmark = pytest.mark.django_db(transaction=True)

READY = f"220 {HOSTNAME} ESMTP ready"
FROM_YOUR_ADDRESS = f"421 4.7.0 {HOSTNAME} Too many connections from your address; try again later"
IN_ALL = f"421 4.3.2 {HOSTNAME} Too many connections; try again later"


class ClientFrom(RawClient):
    """A raw client connecting from a loopback address of its own (any 127/8 address is this host's)."""

    def __init__(self, port: int, source: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
        self.buffer = b""


def greeting_once_slot_is_free(port: int, attempts: int = 50) -> str:
    """The greeting of a new connection, waiting (briefly) for the server to see a closed one go."""
    for _ in range(attempts):
        client = RawClient(port)
        greeting = client.reply()
        client.close()
        if greeting == READY:
            return greeting
        time.sleep(0.05)
    return greeting


def test_one_connection_too_many_from_an_address_is_421_and_closed(smtp_settings, mx_port, raw_client):
    smtp_settings.MAIL_SMTP_MAX_CONNECTIONS_PER_IP = 2
    first, _second = raw_client(mx_port), raw_client(mx_port)
    third = raw_client(mx_port, greet=False)
    assert third.reply() == FROM_YOUR_ADDRESS
    assert third.is_closed()
    assert first.command("EHLO client.remote.test").startswith("250-")  # the admitted ones go on
    first.close()
    assert greeting_once_slot_is_free(mx_port) == READY


def test_other_addresses_are_not_held_back_by_one_that_is_at_its_limit(smtp_settings, mx_port, raw_client):
    smtp_settings.MAIL_SMTP_MAX_CONNECTIONS_PER_IP = 1
    raw_client(mx_port)
    assert raw_client(mx_port, greet=False).reply() == FROM_YOUR_ADDRESS
    other = ClientFrom(mx_port, "127.0.0.2")
    try:
        assert other.reply() == READY
    finally:
        other.close()


def test_one_connection_too_many_in_all_is_421(smtp_settings, mx_port):
    smtp_settings.MAIL_SMTP_MAX_CONNECTIONS = 2
    clients = [ClientFrom(mx_port, f"127.0.0.{n}") for n in (2, 3, 4)]
    try:
        assert [c.reply() for c in clients] == [READY, READY, IN_ALL]
    finally:
        for client in clients:
            client.close()


def test_a_flood_on_the_mx_leaves_submission_open(smtp_settings, servers, raw_client):
    smtp_settings.MAIL_SMTP_MAX_CONNECTIONS_PER_IP = 1
    mx, submission = servers.start("mx"), servers.start("submission")
    raw_client(mx)
    assert raw_client(mx, greet=False).reply() == FROM_YOUR_ADDRESS
    raw_client(submission)  # greeted 220: its own count


def test_starttls_does_not_count_the_connection_twice(smtp_settings, mx_port, raw_client):
    smtp_settings.MAIL_SMTP_MAX_CONNECTIONS_PER_IP = 1
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    assert client.command("STARTTLS") == "220 2.0.0 Ready to start TLS"
    client.starttls()
    assert client.command("EHLO client.remote.test").startswith("250-")  # still admitted under TLS
    client.close()
    assert greeting_once_slot_is_free(mx_port) == READY  # and its slot is given back once


@pytest.mark.parametrize(("address", "key"), [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # one host often holds a whole /64
    ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4 client on a dual-stack socket
])
def test_clients_are_counted_by_address_and_ipv6_by_64_prefix(address, key):
    assert client_key(address) == key
