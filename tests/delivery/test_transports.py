"""The transport per sender domain: chosen on the admin's Domain page, used by delivery for that domain's mail."""
from __future__ import annotations

import pytest
import trustme

from mailcore import store
from mailcore.checks import relay_tls
from mailcore.conf import conf
from mailcore.delivery import pool, queue, worker
from mailcore.directory import create_domain
from mailcore.models import DeliveryAttempt, Domain, OutboundMessage, OutboundRecipient
from tests.support.espserver import esp_server  # noqa: F401  (fixture by name)

MESSAGE = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: which way\r\n\r\nbody\r\n"
OTHER = b"From: zoe@other.test\r\nTo: bob@remote.test\r\nSubject: which way\r\n\r\nbody\r\n"


def change_page(domain: Domain) -> str:
    return f"/admin/mailcore/domain/{domain.pk}/change/"


def choose(admin_client, domain: Domain, transport: str) -> None:
    response = admin_client.post(change_page(domain), {"name": domain.name, "active": "on", "transport": transport})
    assert response.status_code == 302, response.content


def state_of(message_id: int) -> str:
    return OutboundRecipient.objects.get(message_id=message_id).state


def test_domain_page_offers_the_four_transports_and_saves_the_choice(admin_client, domain):
    page = admin_client.get(change_page(domain))
    assert page.status_code == 200
    html = page.content.decode()
    assert '<select name="transport" aria-describedby="id_transport_helptext" id="id_transport">' in html
    assert '<option value="" selected>default (MAIL_RELAY)</option>' in html
    for value, label in [("mx", "direct to MX"), ("smarthost", "smarthost (MAIL_RELAY_HOST)"),
                         ("anymail", "anymail (MAIL_ANYMAIL_BACKEND)")]:
        assert f'<option value="{value}">{label}</option>' in html
    choose(admin_client, domain, "anymail")
    assert Domain.objects.get(pk=domain.pk).transport == "anymail"
    listing = admin_client.get("/admin/mailcore/domain/?transport__exact=anymail")
    assert b"example.test" in listing.content


def test_a_domain_set_to_anymail_sends_through_the_esp_while_others_go_to_the_mx(admin_client, remote, esp_server):  # noqa: F811
    create_domain("other.test")
    choose(admin_client, Domain.objects.get(name="example.test"), "anymail")
    via_esp = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    via_mx = queue.enqueue(OTHER, "zoe@other.test", ["bob@remote.test"])
    worker.deliver_due()
    assert (state_of(via_esp), state_of(via_mx)) == ("delivered", "delivered")
    [request] = esp_server.requests
    assert request.body["From"] == "alice@example.test"
    [received] = remote.messages
    assert received.sender == "zoe@other.test"
    transports = dict(DeliveryAttempt.objects.values_list("message_id", "transport"))
    assert transports == {via_esp: "anymail", via_mx: "mx"}


def test_a_domain_set_to_smarthost_relays_without_an_mx_lookup(admin_client, remote, settings, dns_server):
    settings.MAIL_RELAY_HOST, settings.MAIL_RELAY_PORT = "127.0.0.1", remote.port
    choose(admin_client, Domain.objects.get(name="example.test"), "smarthost")
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@unlisted.test"])
    assert worker.deliver_message(message_id) == 1
    [received] = remote.messages
    assert received.recipients == ["bob@unlisted.test"]
    assert not any(name == "unlisted.test" for name, _ in dns_server.queries)
    assert OutboundRecipient.objects.get(message_id=message_id).mx_host == "127.0.0.1"


def test_smarthost_chosen_without_a_relay_host_defers(admin_client, remote, settings):
    settings.MAIL_RELAY_HOST = ""
    choose(admin_client, Domain.objects.get(name="example.test"), "smarthost")
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    row = OutboundRecipient.objects.get(message_id=message_id)
    assert (row.state, row.last_reply) == (
        "deferred", "451 4.3.5 transport smarthost chosen but MAIL_RELAY_HOST is not set"
    )
    assert remote.messages == []


def test_a_domain_set_to_mx_overrides_mail_relay_anymail(admin_client, remote, settings, esp_server):  # noqa: F811
    settings.MAIL_RELAY = "anymail"
    create_domain("other.test")
    choose(admin_client, Domain.objects.get(name="example.test"), "mx")
    via_mx = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    via_default = queue.enqueue(OTHER, "zoe@other.test", ["bob@remote.test"])
    bounce = queue.enqueue(MESSAGE, "", ["carol@remote.test"])  # a null sender takes the default
    worker.deliver_due()
    assert {state_of(i) for i in (via_mx, via_default, bounce)} == {"delivered"}
    [received] = remote.messages
    assert received.sender == "alice@example.test"
    assert sorted(r.body["From"] for r in esp_server.requests) == ["alice@example.test", "zoe@other.test"]


@pytest.fixture
def relay_certificate(settings, dns_server, tmp_path) -> None:
    """Our listeners' certificate is for relay.example.test (127.0.0.1 in DNS), from a CA the client trusts."""
    ca = trustme.CA()
    issued = ca.issue_cert("relay.example.test")
    for pem, name in ((issued.cert_chain_pems[0], "relay.pem"), (issued.private_key_pem, "relay.key"),
                      (ca.cert_pem, "ca.pem")):
        pem.write_to_path(str(tmp_path / name))
    settings.MAIL_TLS_CERT, settings.MAIL_TLS_KEY = str(tmp_path / "relay.pem"), str(tmp_path / "relay.key")
    settings.MAIL_OUTBOUND_CA_FILE = str(tmp_path / "ca.pem")
    dns_server.records["relay.example.test"] = {"A": ["127.0.0.1"]}


@pytest.mark.django_db(transaction=True)
def test_a_smarthost_with_implicit_tls_is_spoken_to_in_tls_from_the_first_byte_and_logged_in_to(
        settings, alice, relay_certificate):
    """MAIL_RELAY_TLS=implicit (RFC 8314 §3.3), as providers' smarthosts on port 465 want: TLS from the first
    byte, its certificate checked (a password is sent: MAIL_RELAY_TLS_VERIFY), then AUTH. Before, the client
    waited in clear for a greeting the smarthost never sent, and every message was deferred until it expired.
    The smarthost here is our own submission listener with implicit TLS: it takes the message from Alice,
    logged in, and queues it for bob@remote.test."""
    from tests.smtp.conftest import ServerThread

    smarthost = ServerThread()
    try:
        port = smarthost.start("submission", implicit_tls=True)
        settings.MAIL_RELAY, settings.MAIL_RELAY_HOST, settings.MAIL_RELAY_PORT = "smarthost", "relay.example.test", port
        settings.MAIL_RELAY_USER, settings.MAIL_RELAY_PASSWORD = "alice@example.test", "alice-secret-pw"
        settings.MAIL_RELAY_TLS = "implicit"
        message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
        assert worker.deliver_message(message_id, domains=[]) == 1  # not the relayed copy: it is in our queue too
    finally:
        pool.close_idle(0)  # QUIT while the smarthost still answers
        smarthost.stop()
    assert OutboundRecipient.objects.get(message_id=message_id).last_reply == (
        "250 2.0.0 Message accepted (0 delivered, 1 queued)")
    relayed = OutboundMessage.objects.exclude(pk=message_id).get()
    lines = store.read_blob(relayed.blob).split(b"\r\n")
    assert lines[1].startswith(b"\tby localhost with ESMTPSA id ")  # RFC 3848: under TLS, logged in
    assert lines[4] == b"\tauth=pass smtp.auth=alice@example.test"
    assert list(relayed.recipients.values_list("address", flat=True)) == ["bob@remote.test"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("implicit", ["implicit", "starttls"])
def test_the_relay_password_goes_to_no_host_whose_certificate_is_not_valid_for_the_smarthost(
        settings, alice, relay_certificate, implicit):
    """MAIL_RELAY_TLS_VERIFY (on when a password is set): whoever answers for MAIL_RELAY_HOST (a hijacked DNS
    answer, a man in the middle) without a valid certificate for it gets no password. Here the certificate is
    valid but for another name. Before, any certificate was taken and the password sent under it."""
    from tests.smtp.conftest import ServerThread

    smarthost = ServerThread()
    try:
        port = smarthost.start("submission", implicit_tls=implicit == "implicit")
        settings.MAIL_RELAY, settings.MAIL_RELAY_HOST, settings.MAIL_RELAY_PORT = "smarthost", "127.0.0.1", port
        settings.MAIL_RELAY_USER, settings.MAIL_RELAY_PASSWORD = "alice@example.test", "alice-secret-pw"
        settings.MAIL_RELAY_TLS = implicit
        message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
        assert worker.deliver_message(message_id, domains=[]) == 0
    finally:
        pool.close_idle(0)
        smarthost.stop()
    row = OutboundRecipient.objects.get(message_id=message_id)
    assert (row.state, row.last_reply) == ("deferred", "451 4.7.5 certificate of 127.0.0.1 not valid, as "
                                           "MAIL_RELAY_TLS_VERIFY requires: IP address mismatch, certificate is not "
                                           "valid for '127.0.0.1'.")
    assert OutboundMessage.objects.count() == 1  # nothing relayed


@pytest.mark.parametrize(("tls", "port", "implicit"), [
    ("", 465, True), ("", 587, False), ("", 25, False), ("implicit", 2465, True), ("IMPLICIT", 587, True),
    ("starttls", 465, False),
])
def test_implicit_tls_is_the_default_on_port_465_only(settings, tls, port, implicit):
    settings.MAIL_RELAY_TLS, settings.MAIL_RELAY_PORT = tls, port
    assert conf.relay_implicit_tls is implicit
    assert relay_tls() == []


@pytest.mark.parametrize(("verify", "user", "verified"), [
    ("", "alice", True), ("", "", False), ("0", "alice", False), ("1", "", True), ("yes", "", True),
])
def test_the_smarthost_certificate_is_checked_when_a_password_goes_to_it_unless_told(settings, verify, user, verified):
    settings.MAIL_RELAY_TLS_VERIFY, settings.MAIL_RELAY_USER = verify, user
    assert conf.relay_tls_verify is verified
    assert relay_tls() == []


def test_an_unknown_relay_tls_is_refused_at_start_up(settings):
    settings.MAIL_RELAY_TLS, settings.MAIL_RELAY_TLS_VERIFY = "ssl", "maybe"
    assert [(m.id, m.msg) for m in relay_tls()] == [
        ("mailcore.E001", "MAIL_RELAY_TLS is 'ssl': give implicit, starttls, or nothing (implicit on port 465)"),
        ("mailcore.E001", "MAIL_RELAY_TLS_VERIFY is 'maybe': give 1 or 0, or nothing (1 with a password)")]
