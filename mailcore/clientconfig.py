"""What a mail client needs to know, built from MAIL_HOSTNAME and the listener ports.

One list of services (`mail_services()`) feeds every client document
(Thunderbird autoconfig, Outlook autodiscover, the Apple profile) and the RFC
6186 SRV records of the DNS set-up page, so they never disagree. Implicit TLS
comes before STARTTLS (RFC 8314 §3: implicit TLS is preferred), and a listener
whose port is 0 is left out.
"""
from __future__ import annotations

import plistlib
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from mailcore.address import display_domain
from mailcore.conf import conf

# (kind, port setting name, socket type): implicit TLS first within each kind.
SERVICE_TABLE: tuple[tuple[str, str, str], ...] = (
    ("imap", "IMAPS", "SSL"),
    ("imap", "IMAP", "STARTTLS"),
    ("pop3", "POP3S", "SSL"),
    ("pop3", "POP3", "STARTTLS"),
    ("smtp", "SUBMISSIONS", "SSL"),
    ("smtp", "SUBMISSION", "STARTTLS"),
)
INCOMING_KINDS = ("imap", "pop3")
THUNDERBIRD_AUTH = "password-cleartext"  # PLAIN/LOGIN inside TLS
OUTLOOK_TYPES = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}
# Outlook's <Encryption>: "SSL" is implicit TLS, "TLS" is STARTTLS.
OUTLOOK_ENCRYPTION = {"SSL": "SSL", "STARTTLS": "TLS"}
AUTODISCOVER_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
AUTODISCOVER_OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
APPLE_ACCOUNT_TYPES = {"imap": "EmailTypeIMAP", "pop3": "EmailTypePOP"}
PROFILE_NAMESPACE = uuid.UUID("8a6d1d0e-3c52-4b7e-9a43-5f0c2f1d6b11")  # fixed: one profile UUID per address


@dataclass(frozen=True)
class Service:
    """One client-facing listener: kind (imap, pop3, smtp), host, port, socket type (SSL or STARTTLS)."""

    kind: str
    hostname: str
    port: int
    socket_type: str

    @property
    def implicit_tls(self) -> bool:
        return self.socket_type == "SSL"


def mail_services(kind: str | None = None) -> list[Service]:
    """The enabled client services, best first; only those of `kind` when given."""
    services = []
    for service_kind, port_name, socket_type in SERVICE_TABLE:
        port = conf.port(port_name)
        if port and (kind is None or kind == service_kind):
            services.append(Service(service_kind, conf.hostname, port, socket_type))
    return services


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = text
    return child


def _xml(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# --- Thunderbird: https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat ---


def thunderbird_config(domain: str) -> bytes:
    """config-v1.1.xml for a hosted `domain` (an A-label)."""
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    _text(provider, "domain", domain)
    _text(provider, "displayName", f"{display_domain(domain)} mail")
    _text(provider, "displayShortName", display_domain(domain))
    for service in mail_services():
        tag = "outgoingServer" if service.kind == "smtp" else "incomingServer"
        server = ET.SubElement(provider, tag, type=service.kind)
        _text(server, "hostname", service.hostname)
        _text(server, "port", str(service.port))
        _text(server, "socketType", service.socket_type)
        _text(server, "authentication", THUNDERBIRD_AUTH)
        _text(server, "username", "%EMAILADDRESS%")
    return _xml(root)


# --- Outlook: [MS-OXDSCLI] POX autodiscover, "outlook" response schema 2006a ---


def outlook_autodiscover(address: str) -> bytes:
    """The settings response for `address`: every incoming and outgoing service, best first."""
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER_RESPONSE_NS)
    response = ET.SubElement(root, "Response", xmlns=AUTODISCOVER_OUTLOOK_NS)
    account = ET.SubElement(response, "Account")
    _text(account, "AccountType", "email")
    _text(account, "Action", "settings")
    for service in mail_services():
        protocol = ET.SubElement(account, "Protocol")
        _text(protocol, "Type", OUTLOOK_TYPES[service.kind])
        _text(protocol, "Server", service.hostname)
        _text(protocol, "Port", str(service.port))
        _text(protocol, "DomainRequired", "off")
        _text(protocol, "LoginName", address)
        _text(protocol, "SPA", "off")
        _text(protocol, "SSL", "on")
        _text(protocol, "Encryption", OUTLOOK_ENCRYPTION[service.socket_type])
        _text(protocol, "AuthRequired", "on")
        if service.kind == "smtp":
            _text(protocol, "UsePOPAuth", "on")
            _text(protocol, "SMTPLast", "off")
    return _xml(root)


def outlook_error(code: str, message: str) -> bytes:
    """An autodiscover error response (600 "Invalid Request", 500 "unknown address")."""
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER_RESPONSE_NS)
    response = ET.SubElement(root, "Response")
    error = ET.SubElement(response, "Error", Id="0", Time="00:00:00")
    _text(error, "ErrorCode", code)
    _text(error, "Message", message)
    ET.SubElement(error, "DebugData")
    return _xml(root)


# --- Apple: Configuration Profile Reference, com.apple.mail.managed ---


def apple_profile(address: str, display_name: str = "") -> bytes | None:
    """An (unsigned) .mobileconfig for `address`; None when no incoming or outgoing service is on."""
    incoming = next(iter(mail_services("imap") or mail_services("pop3")), None)
    outgoing = next(iter(mail_services("smtp")), None)
    if incoming is None or outgoing is None:
        return None
    host_label = ".".join(reversed(conf.hostname.split(".")))
    account_uuid = uuid.uuid5(PROFILE_NAMESPACE, f"account:{address}:{conf.hostname}")
    mail_payload = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{host_label}.mail.{account_uuid}",
        "PayloadUUID": str(account_uuid).upper(),
        "PayloadDisplayName": address,
        "EmailAccountDescription": address,
        "EmailAccountName": display_name or address,
        "EmailAccountType": APPLE_ACCOUNT_TYPES[incoming.kind],
        "EmailAddress": address,
        "IncomingMailServerHostName": incoming.hostname,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": True,  # SSL on a STARTTLS port means "upgrade with STARTTLS"
        "IncomingMailServerUsername": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": outgoing.hostname,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    profile_uuid = uuid.uuid5(PROFILE_NAMESPACE, f"profile:{address}:{conf.hostname}")
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{host_label}.profile.{profile_uuid}",
        "PayloadUUID": str(profile_uuid).upper(),
        "PayloadDisplayName": f"Mail: {address}",
        "PayloadDescription": f"Sets up {address} on {conf.hostname}",
        "PayloadContent": [mail_payload],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)
