"""mailcore.dns against the real loopback DNS server in tests/support/dnsserver.py."""
from __future__ import annotations

import asyncio
import socket
import time

import dns.message
import dns.query
import pytest

from mailcore import dns as maildns
from tests.support.dnsserver import DNSServer

ZONE = {
    "remote.test": {"MX": ["20 mx2.remote.test.", "10 mx1.remote.test."], "TXT": ["v=spf1 -all"]},
    "mx1.remote.test": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
    "nullmx.test": {"MX": ["0 ."]},
    "long.test": {"TXT": ["k=rsa; p=" + "A" * 600]},
    "broken.test": DNSServer.SERVFAIL,
    "slow.test": DNSServer.TIMEOUT,
}


@pytest.fixture
def zone(dns_server):
    dns_server.records.update(ZONE)
    return dns_server


def test_mx_records_are_served_with_their_preferences(zone):
    assert sorted(maildns.mx("remote.test")) == [(10, "mx1.remote.test"), (20, "mx2.remote.test")]


def test_null_mx_is_preference_zero_and_empty_exchange(zone):
    assert maildns.mx("nullmx.test") == [(0, "")]


def test_addresses_are_ipv6_then_ipv4(zone):
    assert maildns.addresses("mx1.remote.test") == ["::1", "127.0.0.1"]


def test_name_without_records_of_the_type_is_an_empty_list(zone):
    assert maildns.mx("mx1.remote.test") == []


def test_nxdomain_is_a_permanent_error(zone):
    with pytest.raises(maildns.PermanentDNSError) as info:
        maildns.mx("nowhere.test")
    assert info.value.reason == "NXDOMAIN" and not info.value.temporary


def test_servfail_is_a_temporary_error(zone):
    with pytest.raises(maildns.TemporaryDNSError):
        maildns.mx("broken.test")


def test_silent_server_is_a_temporary_timeout(zone):
    started = time.monotonic()
    with pytest.raises(maildns.TemporaryDNSError) as info:
        maildns.txt("slow.test")
    assert info.value.reason == "timeout"
    assert ("slow.test", "TXT") in zone.queries
    assert time.monotonic() - started < 10  # bounded by MAIL_DNS_TIMEOUT, not hanging


def test_long_txt_record_is_joined_and_truncated_udp_falls_back_to_tcp(zone):
    assert maildns.txt("long.test") == ["k=rsa; p=" + "A" * 600]


def test_async_txt_lookup_uses_the_same_configuration(zone):
    assert asyncio.run(maildns.atxt("remote.test")) == ["v=spf1 -all"]


def test_tcp_and_udp_answer_on_the_same_port(zone):
    query = dns.message.make_query("remote.test", "MX")
    over_udp = dns.query.udp(query, "127.0.0.1", port=zone.port, timeout=2)
    over_tcp = dns.query.tcp(query, "127.0.0.1", port=zone.port, timeout=2)
    assert over_udp.answer == over_tcp.answer and len(over_udp.answer[0]) == 2


def test_configured_nameservers_replace_the_system_resolver(zone, settings):
    settings.MAIL_DNS_NAMESERVERS = [zone.nameserver, "[::1]:5353"]
    res = maildns.resolver()
    assert [(n.address, n.port) for n in res.nameservers] == [("127.0.0.1", zone.port), ("::1", 5353)]


def test_nameserver_must_be_an_address_not_a_name(settings):
    settings.MAIL_DNS_NAMESERVERS = ["dns.example.com:53"]
    with pytest.raises(ValueError):
        maildns.resolver()


def test_garbage_datagram_gets_no_reply_and_server_keeps_serving(zone):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        sock.sendto(b"\x00garbage", ("127.0.0.1", zone.port))
        with pytest.raises(TimeoutError):
            sock.recv(512)
    assert maildns.mx("nullmx.test") == [(0, "")]
