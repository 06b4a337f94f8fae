"""The MX checks' DNS answer cache (MAIL_DNS_CACHE_SIZE): kept for the TTL only, failures never kept.

A real DNS server on loopback answers; its query log shows what reached it.
"""
from __future__ import annotations

import time

import pytest

from mailcore import dns as maildns
from mailcore.smtp import verification
from mailcore.smtp.spfcheck import check_spf
from tests.support import dnsserver
from tests.support.dnsserver import DNSServer, dns_server  # noqa: F401  (a fixture, used by name)

SPF_PASS = "v=spf1 ip4:192.0.2.1 -all"
SPF_FAIL = "v=spf1 -all"


@pytest.fixture
def cache_on(settings, dns_server):  # noqa: F811
    settings.MAIL_DNS_CACHE_SIZE = 100
    return dns_server


def test_a_repeated_spf_check_is_answered_from_the_cache(cache_on):
    cache_on.records["sender.test"] = {"TXT": [SPF_PASS]}
    assert check_spf("192.0.2.1", "a@sender.test", "mx.sender.test")[0] == "pass"
    assert check_spf("192.0.2.1", "b@sender.test", "mx.sender.test")[0] == "pass"
    assert cache_on.queries.count(("sender.test", "TXT")) == 1


def test_an_answer_is_kept_no_longer_than_its_ttl(cache_on, monkeypatch):
    monkeypatch.setattr(dnsserver, "TTL", 1)
    cache_on.records["sender.test"] = {"TXT": [SPF_PASS]}
    assert check_spf("192.0.2.1", "a@sender.test", "mx.sender.test")[0] == "pass"
    cache_on.records["sender.test"] = {"TXT": [SPF_FAIL]}
    time.sleep(1.5)  # the 1-second TTL runs out
    assert check_spf("192.0.2.1", "a@sender.test", "mx.sender.test")[0] == "fail"
    assert cache_on.queries.count(("sender.test", "TXT")) == 2


def test_a_servfail_is_not_kept_so_the_next_message_asks_again(cache_on):
    cache_on.records["_dmarc.sender.test"] = DNSServer.SERVFAIL
    assert verification.check_dmarc("sender.test", "", []) == ("temperror", "")
    cache_on.records["_dmarc.sender.test"] = {"TXT": ["v=DMARC1; p=reject"]}
    assert verification.check_dmarc("sender.test", "", []) == ("fail", "reject")


def test_outbound_lookups_never_use_the_cache(cache_on):
    cache_on.records["remote.test"] = {"TXT": ["one"]}
    assert maildns.txt("remote.test") == ["one"]
    cache_on.records["remote.test"] = {"TXT": ["two"]}
    assert maildns.txt("remote.test") == ["two"]


def test_size_zero_turns_the_cache_off(cache_on, settings):
    settings.MAIL_DNS_CACHE_SIZE = 0
    cache_on.records["sender.test"] = {"TXT": [SPF_PASS]}
    check_spf("192.0.2.1", "a@sender.test", "mx.sender.test")
    cache_on.records["sender.test"] = {"TXT": [SPF_FAIL]}
    assert check_spf("192.0.2.1", "a@sender.test", "mx.sender.test")[0] == "fail"


def test_answers_from_another_nameserver_are_never_served(cache_on, settings):
    cache_on.records["sender.test"] = {"TXT": [SPF_PASS]}
    assert check_spf("192.0.2.1", "a@sender.test", "mx.sender.test")[0] == "pass"
    with DNSServer({"sender.test": {"TXT": [SPF_FAIL]}}) as other:
        settings.MAIL_DNS_NAMESERVERS = [other.nameserver]
        assert check_spf("192.0.2.1", "a@sender.test", "mx.sender.test")[0] == "fail"
