"""Client autoconfiguration: each document parsed as a client would, servers, ports and socket types checked."""
from __future__ import annotations

import plistlib
import subprocess
import xml.etree.ElementTree as ET

import pytest

from tests.webmail.conftest import ALICE_PW, signed_in

AUTODISCOVER_REQUEST = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
    b"<Request><EMailAddress>%s</EMailAddress>"
    b"<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    b"</AcceptableResponseSchema></Request></Autodiscover>"
)
NS = {
    "r": "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006",
    "o": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a",
}
THUNDERBIRD_EXPECTED = [
    ("incomingServer", "imap", "mail.example.test", "993", "SSL"),
    ("incomingServer", "imap", "mail.example.test", "143", "STARTTLS"),
    ("incomingServer", "pop3", "mail.example.test", "995", "SSL"),
    ("incomingServer", "pop3", "mail.example.test", "110", "STARTTLS"),
    ("outgoingServer", "smtp", "mail.example.test", "465", "SSL"),
    ("outgoingServer", "smtp", "mail.example.test", "587", "STARTTLS"),
]


def thunderbird_servers(document: bytes) -> list[tuple[str, ...]]:
    provider = ET.fromstring(document).find("emailProvider")
    assert provider is not None
    return [
        (s.tag, s.get("type"), s.findtext("hostname"), s.findtext("port"), s.findtext("socketType"))
        for s in provider if s.tag in ("incomingServer", "outgoingServer")
    ]


def outlook_protocols(document: bytes) -> list[tuple[str, ...]]:
    account = ET.fromstring(document).find("o:Response/o:Account", NS)
    assert account is not None and account.findtext("o:Action", namespaces=NS) == "settings"
    return [
        tuple(p.findtext(f"o:{tag}", namespaces=NS) for tag in ("Type", "Server", "Port", "Encryption", "LoginName"))
        for p in account.findall("o:Protocol", NS)
    ]


def test_thunderbird_config_by_address_lists_every_server_tls_first(client, domain, production_names):
    response = client.get("/mail/config-v1.1.xml", {"emailaddress": "alice@example.test"})
    assert response.status_code == 200 and response["Content-Type"] == "application/xml; charset=utf-8"
    assert thunderbird_servers(response.content) == THUNDERBIRD_EXPECTED
    root = ET.fromstring(response.content)
    assert root.get("version") == "1.1" and root.findtext("emailProvider/domain") == "example.test"
    assert {e.text for e in root.iter("username")} == {"%EMAILADDRESS%"}
    assert {e.text for e in root.iter("authentication")} == {"password-cleartext"}


def test_thunderbird_well_known_takes_the_domain_from_the_autoconfig_host(client, domain, production_names):
    response = client.get("/.well-known/autoconfig/mail/config-v1.1.xml", HTTP_HOST="autoconfig.example.test")
    assert response.status_code == 200
    assert ET.fromstring(response.content).findtext("emailProvider/domain") == "example.test"
    response = client.get("/.well-known/autoconfig/mail/config-v1.1.xml", HTTP_HOST="example.test")
    assert thunderbird_servers(response.content) == THUNDERBIRD_EXPECTED


def test_a_listener_turned_off_is_left_out_and_ports_follow_settings(client, domain, production_names):
    production_names.MAIL_POP3_PORT = 0
    production_names.MAIL_POP3S_PORT = 0
    production_names.MAIL_SUBMISSIONS_PORT = 2465
    response = client.get("/mail/config-v1.1.xml", {"emailaddress": "alice@example.test"})
    assert [s[1:] for s in thunderbird_servers(response.content)] == [
        ("imap", "mail.example.test", "993", "SSL"),
        ("imap", "mail.example.test", "143", "STARTTLS"),
        ("smtp", "mail.example.test", "2465", "SSL"),
        ("smtp", "mail.example.test", "587", "STARTTLS"),
    ]


@pytest.mark.parametrize("query", ["carol@nowhere.test", "not-an-address", ""])
def test_thunderbird_config_for_a_domain_not_hosted_here_is_404(client, domain, production_names, query):
    response = client.get("/mail/config-v1.1.xml", {"emailaddress": query} if query else {}, HTTP_HOST="other.test")
    assert response.status_code == 404


@pytest.mark.parametrize("url", ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"])
def test_outlook_autodiscover_answers_settings_for_a_hosted_address(client, domain, production_names, url):
    response = client.post(url, AUTODISCOVER_REQUEST % b"alice@example.test", content_type="text/xml")
    assert response.status_code == 200
    assert outlook_protocols(response.content) == [
        ("IMAP", "mail.example.test", "993", "SSL", "alice@example.test"),
        ("IMAP", "mail.example.test", "143", "TLS", "alice@example.test"),
        ("POP3", "mail.example.test", "995", "SSL", "alice@example.test"),
        ("POP3", "mail.example.test", "110", "TLS", "alice@example.test"),
        ("SMTP", "mail.example.test", "465", "SSL", "alice@example.test"),
        ("SMTP", "mail.example.test", "587", "TLS", "alice@example.test"),
    ]


def test_outlook_autodiscover_refuses_bad_requests_with_its_error_document(client, domain, production_names):
    url = "/autodiscover/autodiscover.xml"
    assert client.get(url).status_code == 405
    bad = client.post(url, b"<Autodiscover><Request>", content_type="text/xml")
    assert bad.status_code == 400
    assert ET.fromstring(bad.content).findtext("r:Response/r:Error/r:ErrorCode", namespaces=NS) == "600"
    bomb = b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><Autodiscover><EMailAddress>&b;</EMailAddress></Autodiscover>'
    assert client.post(url, bomb, content_type="text/xml").status_code == 400
    unknown = client.post(url, AUTODISCOVER_REQUEST % b"carol@nowhere.test", content_type="text/xml")
    assert unknown.status_code == 404
    assert ET.fromstring(unknown.content).findtext("r:Response/r:Error/r:ErrorCode", namespaces=NS) == "500"


def test_apple_profile_is_for_the_signed_in_user_only(client, alice, production_names):
    assert client.get("/settings/apple.mobileconfig").status_code == 302  # to the sign-in page
    alice_client = signed_in("alice@example.test", ALICE_PW)
    assert b'href="/settings/apple.mobileconfig"' in alice_client.get("/settings/").content
    response = alice_client.get("/settings/apple.mobileconfig")
    assert response.status_code == 200 and response["Content-Type"] == "application/x-apple-aspen-config"
    assert response["Content-Disposition"] == 'attachment; filename="alice-at-example.test.mobileconfig"'
    profile = plistlib.loads(response.content)
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
    (mail,) = profile["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert (mail["EmailAccountType"], mail["EmailAddress"]) == ("EmailTypeIMAP", "alice@example.test")
    assert (mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"]) == ("mail.example.test", 993)
    assert (mail["OutgoingMailServerHostName"], mail["OutgoingMailServerPortNumber"]) == ("mail.example.test", 465)
    assert mail["IncomingMailServerUseSSL"] is True and mail["OutgoingMailServerUseSSL"] is True
    assert mail["IncomingMailServerUsername"] == mail["OutgoingMailServerUsername"] == "alice@example.test"
    again = plistlib.loads(alice_client.get("/settings/apple.mobileconfig").content)
    assert again["PayloadUUID"] == profile["PayloadUUID"]  # a second download replaces, not duplicates


def test_apple_profile_falls_back_to_pop3_when_imap_is_off(alice, production_names):
    production_names.MAIL_IMAP_PORT = production_names.MAIL_IMAPS_PORT = 0
    profile = plistlib.loads(signed_in("alice@example.test", ALICE_PW).get("/settings/apple.mobileconfig").content)
    mail = profile["PayloadContent"][0]
    assert (mail["EmailAccountType"], mail["IncomingMailServerPortNumber"]) == ("EmailTypePOP", 995)


def curl(*args: str) -> bytes:
    result = subprocess.run(["curl", "--silent", "--show-error", "--fail", *args], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.django_db(transaction=True)
def test_curl_fetches_autoconfig_and_autodiscover_from_a_live_server(live_server, production_names):
    from mailcore.directory import create_domain

    create_domain("example.test")
    document = curl(f"{live_server.url}/mail/config-v1.1.xml?emailaddress=alice%40example.test")
    assert thunderbird_servers(document) == THUNDERBIRD_EXPECTED
    document = curl("-H", "Host: autoconfig.example.test", f"{live_server.url}/.well-known/autoconfig/mail/config-v1.1.xml")
    assert thunderbird_servers(document) == THUNDERBIRD_EXPECTED
    document = curl("-H", "Content-Type: text/xml", "--data-binary", (AUTODISCOVER_REQUEST % b"bob@example.test").decode(),
                    f"{live_server.url}/Autodiscover/Autodiscover.xml")
    assert outlook_protocols(document)[0] == ("IMAP", "mail.example.test", "993", "SSL", "bob@example.test")
