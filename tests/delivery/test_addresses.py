"""Which addresses outbound connections go to and come from: IPv6 and IPv4 in the order
MAIL_OUTBOUND_IP_VERSIONS gives, and the source addresses MAIL_OUTBOUND_SOURCE_IPV4/_IPV6 name
(the address a receiver checks against reverse DNS and SPF). Receivers listen on ::1 and 127.0.0.1.
"""
from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from mailcore.checks import outbound_addresses
from mailcore.delivery import queue, worker
from mailcore.models import OutboundRecipient
from tests.support.smtpreceiver import SMTPReceiver

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: hi\r\n\r\nHello Bob.\r\n"
DUAL_STACK_ZONE = {
    "remote.test": {"MX": ["10 mx.remote.test."]},
    "mx.remote.test": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
}


@pytest.fixture
def receivers(settings, dns_server, alice) -> Iterator[dict[str, SMTPReceiver]]:
    """mx.remote.test with an IPv6 and an IPv4 address, a receiver on each, both on the outbound port."""
    dns_server.records.update(DUAL_STACK_ZONE)
    settings.MAIL_HOSTNAME = "mail.example.test"
    settings.MAIL_ALLOW_PRIVATE_MX = True
    v6 = SMTPReceiver(starttls=False, host="::1").start()
    try:
        v4 = _receiver_on(v6.port)
    except BaseException:
        v6.stop()
        raise
    settings.MAIL_OUTBOUND_PORT = v6.port
    try:
        yield {"6": v6, "4": v4}
    finally:
        v4.stop()
        v6.stop()


def _receiver_on(port: int) -> SMTPReceiver:
    """An IPv4 receiver on 127.0.0.1 at `port` (chosen free for ::1; taken on 127.0.0.1 only by chance)."""
    try:
        return SMTPReceiver(starttls=False, port=port).start()
    except OSError as err:  # aiosmtpd passes the bind error on
        if err.errno == errno.EADDRINUSE:
            pytest.skip(f"port {port} is taken on 127.0.0.1")
        raise


def send() -> OutboundRecipient:
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    return OutboundRecipient.objects.get(message_id=message_id)


def test_ipv6_is_tried_first_by_default(receivers):
    assert send().state == "delivered"
    assert [m.peer for m in receivers["6"].messages] == ["::1"] and receivers["4"].messages == []


def test_ipv4_first_when_the_versions_say_so(receivers, settings):
    settings.MAIL_OUTBOUND_IP_VERSIONS = ["4", "6"]
    assert send().state == "delivered"
    assert [m.peer for m in receivers["4"].messages] == ["127.0.0.1"] and receivers["6"].messages == []


def test_ipv4_only_never_asks_for_ipv6_addresses(receivers, settings, dns_server):
    settings.MAIL_OUTBOUND_IP_VERSIONS = ["4"]
    dns_server.records["mx.remote.test"] = {"A": ["127.0.0.3"], "AAAA": ["::1"]}  # no IPv4 listener there
    row = send()
    assert (row.state, row.last_reply) == ("deferred", f"451 4.4.1 connection to mx.remote.test [127.0.0.3]:"
                                           f"{receivers['6'].port} failed: [Errno 111] Connection refused")
    assert receivers["6"].messages == []
    assert ("mx.remote.test", "AAAA") not in dns_server.queries and ("mx.remote.test", "A") in dns_server.queries


def test_ipv6_only_with_a_host_that_has_no_ipv6_address_waits(receivers, settings, dns_server):
    settings.MAIL_OUTBOUND_IP_VERSIONS = ["6"]
    dns_server.records["mx.remote.test"] = {"A": ["127.0.0.1"]}
    row = send()
    assert (row.state, row.last_reply) == ("deferred", "451 4.4.4 no usable address for any mail exchanger of remote.test")
    assert receivers["4"].messages == []


def test_connections_come_from_the_source_address_given(receivers, settings):
    settings.MAIL_OUTBOUND_IP_VERSIONS = ["4"]
    settings.MAIL_OUTBOUND_SOURCE_IPV4 = "127.0.0.2"  # any 127/8 address is this host's on Linux
    assert send().state == "delivered"
    assert [m.peer for m in receivers["4"].messages] == ["127.0.0.2"]


def test_an_ipv6_source_address_is_used_for_ipv6_only(receivers, settings):
    settings.MAIL_OUTBOUND_SOURCE_IPV4 = "127.0.0.2"
    settings.MAIL_OUTBOUND_SOURCE_IPV6 = "::1"
    assert send().state == "delivered"
    assert [m.peer for m in receivers["6"].messages] == ["::1"]


def test_a_source_address_this_host_does_not_have_defers_with_the_reason(receivers, settings):
    settings.MAIL_OUTBOUND_IP_VERSIONS = ["4"]
    settings.MAIL_OUTBOUND_SOURCE_IPV4 = "192.0.2.1"  # RFC 5737 documentation address: not on this host
    row = send()
    assert row.state == "deferred" and row.last_reply == (
        f"451 4.4.1 connection to mx.remote.test [127.0.0.1]:{receivers['4'].port} failed: "
        "[Errno 99] Cannot assign requested address")
    assert receivers["4"].messages == []


@pytest.mark.parametrize(("name", "value", "error"), [
    ("MAIL_OUTBOUND_IP_VERSIONS", ["5"], "MAIL_OUTBOUND_IP_VERSIONS is '5': give 6,4 or 4,6 (the order tried), 4 or 6"),
    ("MAIL_OUTBOUND_IP_VERSIONS", ["4", "4"],
     "MAIL_OUTBOUND_IP_VERSIONS is '4,4': give 6,4 or 4,6 (the order tried), 4 or 6"),
    ("MAIL_OUTBOUND_IP_VERSIONS", [], "MAIL_OUTBOUND_IP_VERSIONS is '': give 6,4 or 4,6 (the order tried), 4 or 6"),
    ("MAIL_OUTBOUND_SOURCE_IPV4", "::1", "MAIL_OUTBOUND_SOURCE_IPV4 is '::1': give an IPv4 address of this host, or nothing"),
    ("MAIL_OUTBOUND_SOURCE_IPV6", "mail.example.test",
     "MAIL_OUTBOUND_SOURCE_IPV6 is 'mail.example.test': give an IPv6 address of this host, or nothing"),
])
def test_unusable_settings_are_refused_at_start_up(settings, name, value, error):
    setattr(settings, name, value)
    assert [(m.id, m.msg) for m in outbound_addresses()] == [("mailcore.E001", error)]
    with pytest.raises(SystemCheckError, match=r"mailcore\.E001"):
        call_command("check")


def test_the_defaults_pass_the_check():
    assert outbound_addresses() == []
