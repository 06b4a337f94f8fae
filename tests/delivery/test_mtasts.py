"""MTA-STS (RFC 8461) in outbound delivery: the policy found through the loopback DNS server, fetched over real
HTTPS from a loopback server with a certificate of a test CA, and enforced against loopback SMTP receivers."""
from __future__ import annotations

import datetime as dt
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme
from django.utils import timezone

from mailcore.delivery import mtasts, queue, worker
from mailcore.models import MtaStsPolicy, OutboundRecipient
from tests.support.smtpreceiver import SMTPReceiver

MESSAGE = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: sts\r\n\r\nover TLS, please\r\n"
ENFORCE = "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n"
RECORD_ID = "20261128T0900"

pytestmark = pytest.mark.django_db


class PolicyServer:
    """HTTPS on 127.0.0.1 with a certificate for mta-sts.remote.test; serves `body` with `status` and `content_type`."""

    def __init__(self, ca: trustme.CA) -> None:
        self.body, self.status, self.content_type = ENFORCE, 200, "text/plain"
        self.drip = 0.0  # seconds between the body's bytes, when set
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("mta-sts.remote.test").configure_cert(context)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append((self.path, self.headers.get("Host", "")))
                payload = owner.body.encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", owner.content_type)
                if 300 <= owner.status < 400:
                    self.send_header("Location", "https://elsewhere.test/policy.txt")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if not owner.drip:
                    self.wfile.write(payload)
                    return
                for byte in payload:  # a byte at a time, each well within the socket's timeout
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(owner.drip)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def policy_server(ca, settings, tmp_path) -> Iterator[PolicyServer]:
    """The policy's HTTPS server; MAIL_OUTBOUND_HTTPS_PORT points at it, MAIL_OUTBOUND_CA_FILE trusts its CA."""
    server = PolicyServer(ca)
    server.thread.start()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    settings.MAIL_OUTBOUND_HTTPS_PORT = server.port
    settings.MAIL_OUTBOUND_CA_FILE = str(tmp_path / "ca.pem")
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def sts(remote, dns_server, policy_server) -> PolicyServer:
    """remote.test publishes an MTA-STS record; its policy host is the loopback HTTPS server."""
    dns_server.records["_mta-sts.remote.test"] = {"TXT": [f"v=STSv1; id={RECORD_ID};"]}
    dns_server.records["mta-sts.remote.test"] = {"A": ["127.0.0.1"]}
    return policy_server


@pytest.fixture
def trusted_receiver(ca, settings) -> Iterator[SMTPReceiver]:
    """remote.test's MX with a certificate for mx.remote.test from the trusted CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("mx.remote.test").configure_cert(context)
    yield from serving(SMTPReceiver(tls_context=context), settings)


@pytest.fixture
def plain_receiver(settings) -> Iterator[SMTPReceiver]:
    """remote.test's MX without STARTTLS."""
    yield from serving(SMTPReceiver(starttls=False), settings)


def serving(receiver: SMTPReceiver, settings) -> Iterator[SMTPReceiver]:
    """`receiver` started as remote.test's MX (MAIL_OUTBOUND_PORT), stopped after the test."""
    receiver.start()
    settings.MAIL_OUTBOUND_PORT = receiver.port
    try:
        yield receiver
    finally:
        receiver.stop()


def send() -> OutboundRecipient:
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    return OutboundRecipient.objects.get(message_id=message_id)


# Enforced over real sockets -------------------------------------------------------------------------


def test_enforce_sends_over_verified_tls_to_a_host_the_policy_names(sts, trusted_receiver, dns_server):
    row = send()
    assert row.state == "delivered"
    # Found through the configured (loopback) resolver: the record, then the policy host's address.
    assert {("_mta-sts.remote.test", "TXT"), ("mta-sts.remote.test", "A")} <= set(dns_server.queries)
    [received] = trusted_receiver.messages
    assert received.tls
    assert sts.requests == [("/.well-known/mta-sts.txt", f"mta-sts.remote.test:{sts.port}")]
    held = MtaStsPolicy.objects.get(domain="remote.test")
    assert (held.policy_id, held.mode, held.mx, held.max_age) == (RECORD_ID, "enforce", "mx.remote.test", 86400)


def test_enforce_defers_when_the_certificate_is_not_valid_for_the_host(sts, remote):
    row = send()  # the receiver of `remote` has the project's self-signed certificate
    assert row.state == "deferred"
    assert row.last_reply.startswith(
        "451 4.7.5 certificate of mx.remote.test not valid, as its domain's MTA-STS policy requires: ")
    assert remote.messages == []


def test_enforce_defers_when_the_host_offers_no_starttls(sts, plain_receiver):
    row = send()
    assert (row.state, row.last_reply) == (
        "deferred", "451 4.7.5 mx.remote.test does not offer STARTTLS, which its domain's MTA-STS policy requires")
    assert plain_receiver.messages == []


def test_enforce_defers_when_no_mx_host_is_in_the_policy(sts, trusted_receiver):
    sts.body = ENFORCE.replace("mx: mx.remote.test", "mx: *.other.test")
    row = send()
    assert (row.state, row.last_reply) == (
        "deferred", "451 4.7.5 no MX host of remote.test matches its MTA-STS policy (*.other.test)")
    assert trusted_receiver.messages == []


def test_tls_required_no_waives_the_policy_for_that_message_alone(sts, remote, dns_server):
    """RFC 8689 §4: the waived message goes over opportunistic TLS on a connection of its own; the next one,
    to the same domain in the same run, keeps the policy and waits."""
    waived = MESSAGE.replace(b"Subject: sts", b"TLS-Required: No\r\nSubject: sts")
    first = queue.enqueue(waived, "alice@example.test", ["bob@remote.test"])
    second = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(None, ["remote.test"])
    rows = {r.message_id: r for r in OutboundRecipient.objects.all()}
    assert rows[first].state == "delivered"
    assert rows[second].state == "deferred" and rows[second].last_reply.startswith("451 4.7.5 certificate of ")
    [received] = remote.messages
    assert received.tls and b"TLS-Required: No" in received.data


def test_testing_mode_sends_as_without_a_policy(sts, remote):
    sts.body = ENFORCE.replace("enforce", "testing")
    assert send().state == "delivered"
    assert remote.messages[0].tls  # opportunistic STARTTLS, the self-signed certificate accepted


def test_without_a_record_nothing_is_fetched_and_mail_goes_as_before(remote, policy_server):
    assert send().state == "delivered"
    assert policy_server.requests == [] and not MtaStsPolicy.objects.exists()


@pytest.mark.parametrize("change", [
    {"status": 404}, {"status": 301}, {"content_type": "text/html"}, {"body": ENFORCE.replace("STSv1", "STSv2")},
    {"untrusted": True},
])
def test_a_policy_that_cannot_be_fetched_leaves_mail_to_go_as_without_one(sts, remote, settings, change):
    if change.pop("untrusted", False):
        settings.MAIL_OUTBOUND_CA_FILE = ""  # the system's CAs do not know the test CA
    for name, value in change.items():
        setattr(sts, name, value)
    assert send().state == "delivered"
    assert not MtaStsPolicy.objects.exists()


def test_a_policy_dripped_a_byte_at_a_time_is_given_up_after_the_fetch_timeout(sts, remote, monkeypatch):
    """Each byte comes within the socket's timeout, the whole policy does not: the fetch is cut after
    FETCH_TIMEOUT in all, and the mail goes as without a policy."""
    monkeypatch.setattr(mtasts, "FETCH_TIMEOUT", 1.0)
    sts.drip = 0.05  # the policy's 70 bytes take 3.5 s
    assert send().state == "delivered"
    assert not MtaStsPolicy.objects.exists()
    with pytest.raises(mtasts.PolicyError, match=r"^mta-sts\.remote\.test \[127\.0\.0\.1\]: no whole policy within 1 s$"):
        mtasts.fetch("remote.test")


# The policy held ------------------------------------------------------------------------------------


def test_the_policy_held_serves_while_the_record_id_is_unchanged_and_is_fetched_again_when_it_changes(
        sts, dns_server):
    assert mtasts.policy_for("remote.test") == mtasts.Policy("enforce", ("mx.remote.test",), 86400)
    assert mtasts.policy_for("remote.test").mode == "enforce"
    assert len(sts.requests) == 1
    dns_server.records["_mta-sts.remote.test"] = {"TXT": ["v=STSv1; id=2"]}
    sts.body = "version: STSv1\nmode: testing\nmx: *.remote.test\nmax_age: 600\n"
    assert mtasts.policy_for("remote.test") == mtasts.Policy("testing", ("*.remote.test",), 600)
    assert len(sts.requests) == 2


def test_the_policy_held_outlives_its_record_and_a_failed_fetch_until_max_age(sts, dns_server):
    assert mtasts.policy_for("remote.test").mode == "enforce"
    dns_server.records["_mta-sts.remote.test"] = {"TXT": ["v=STSv1; id=3"]}
    sts.status = 500
    assert mtasts.policy_for("remote.test").mode == "enforce"  # §5.1: a failed refresh keeps the valid policy
    del dns_server.records["_mta-sts.remote.test"]
    assert mtasts.policy_for("remote.test").mode == "enforce"
    MtaStsPolicy.objects.update(fetched_at=timezone.now() - dt.timedelta(seconds=86401))
    assert mtasts.policy_for("remote.test") is None


def test_mode_none_withdraws_a_policy(sts, dns_server):
    assert mtasts.policy_for("remote.test").mode == "enforce"
    dns_server.records["_mta-sts.remote.test"] = {"TXT": ["v=STSv1; id=4"]}
    sts.body = "version: STSv1\nmode: none\nmax_age: 86400\n"
    assert mtasts.policy_for("remote.test") is None
    assert MtaStsPolicy.objects.get().mode == "none"


def test_the_setting_turns_it_off(sts, settings):
    settings.MAIL_OUTBOUND_MTA_STS = False
    assert mtasts.policy_for("remote.test") is None and sts.requests == []


# Parsing and matching -------------------------------------------------------------------------------


@pytest.mark.parametrize(("records", "expected"), [
    (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
    (["v=STSv1;id=abc"], "abc"),
    (["v=spf1 -all", "v=STSv1; id=a1; ext=x"], "a1"),
    (["v=STSv1; id=a1", "v=STSv1; id=a2"], None),  # §3.1: more than one
    (["v=STSv1; id=not-alnum"], None),
    (["v=STSv1; id=" + "a" * 33], None),
    (["v=STSv1;"], None),
    ([], None),
    (["v=STSv10; id=a1"], None),
])
def test_record(records, expected):
    assert mtasts.parse_record(records) == expected


def test_policy_fields_with_lf_or_crlf_unknown_fields_ignored_first_occurrence_kept():
    text = "version: STSv1\nmode:enforce\nmx: MX1.Example.COM.\nmx:*.example.net\nfuture: x\nmax_age:  604800  \n"
    assert mtasts.parse_policy(text) == mtasts.Policy("enforce", ("mx1.example.com", "*.example.net"), 604800)
    assert mtasts.parse_policy(text.replace("\n", "\r\n") + "mode: none\n").mode == "enforce"


@pytest.mark.parametrize(("text", "reason"), [
    ("mode: enforce\nmx: a.test\nmax_age: 1\n", "version is None, not STSv1"),
    ("version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", "mode 'strict' is not enforce, testing or none"),
    ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n", "max_age '31557601' is not 0-31557600"),
    ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n", "max_age '-1' is not 0-31557600"),
    ("version: STSv1\nmode: enforce\nmax_age: 60\n", "no mx pattern"),
])
def test_invalid_policies(text, reason):
    with pytest.raises(mtasts.PolicyError, match=f"^{reason}$"):
        mtasts.parse_policy(text)


@pytest.mark.parametrize(("host", "expected"), [
    ("mx.remote.test", True), ("MX.Remote.Test.", True), ("a.example.net", True),
    ("example.net", False), ("a.b.example.net", False), ("other.remote.test", False),
])
def test_mx_patterns_match_one_leftmost_label_at_most(host, expected):
    assert mtasts.matches(host, ("mx.remote.test", "*.example.net")) is expected


def test_the_admin_lists_the_policies_held(sts, admin_client):
    mtasts.policy_for("remote.test")
    page = admin_client.get("/admin/mailcore/mtastspolicy/").content.decode()
    assert "remote.test" in page and RECORD_ID in page and "enforce" in page
    held = MtaStsPolicy.objects.get()
    detail = admin_client.get(f"/admin/mailcore/mtastspolicy/{held.pk}/change/")
    assert detail.status_code == 200 and "mx.remote.test" in detail.content.decode()
