"""Session basics over real sockets: greeting, CAPABILITY, LOGIN/AUTHENTICATE, STARTTLS, ID, ENABLE, bad input."""
from __future__ import annotations

import imaplib
import ssl

import pytest
from imapclient import IMAPClient

from tests.imap.conftest import PASSWORD, RawClient, client_context

pytestmark = pytest.mark.django_db(transaction=True)


def test_greeting_is_untagged_ok_with_capabilities(raw):
    assert raw.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
    assert b"AUTH=PLAIN" in raw.greeting  # loopback may log in before TLS
    assert b"STARTTLS" in raw.greeting


def test_login_with_imaplib_and_logout(imap_server, account):
    client = imaplib.IMAP4("127.0.0.1", imap_server.port)
    typ, data = client.login("alice@example.test", PASSWORD)
    assert typ == "OK" and b"LOGIN completed" in data[0]
    assert client.logout()[0] == "BYE"


def test_wrong_password_is_no_authenticationfailed(raw):
    assert raw.command(b"a LOGIN alice@example.test wrong") == [
        b"a NO [AUTHENTICATIONFAILED] invalid login or password\r\n"
    ]


def test_authenticate_plain_with_initial_response(raw):
    import base64

    token = base64.b64encode(b"\0alice@example.test\0" + PASSWORD.encode())
    reply = raw.command(b"a AUTHENTICATE PLAIN " + token)
    assert reply[-1].startswith(b"a OK [CAPABILITY ") and reply[-1].endswith(b"AUTHENTICATE completed\r\n")


def test_authenticate_plain_with_continuation(raw):
    import base64

    raw.send(b"a AUTHENTICATE PLAIN\r\n")
    assert raw.line() == b"+ \r\n"
    raw.send(base64.b64encode(b"\0alice@example.test\0" + PASSWORD.encode()) + b"\r\n")
    assert raw.until(b"a")[-1].endswith(b"AUTHENTICATE completed\r\n")


def test_authenticate_cancel_is_bad(raw):
    raw.send(b"a AUTHENTICATE PLAIN\r\n")
    assert raw.line() == b"+ \r\n"
    raw.send(b"*\r\n")
    assert raw.until(b"a") == [b"a BAD authentication cancelled\r\n"]


def test_starttls_then_login_with_imaplib(imap_server, account):
    client = imaplib.IMAP4("127.0.0.1", imap_server.port)
    client.starttls(ssl_context=client_context())
    assert "STARTTLS" not in client.capabilities
    assert client.login("alice@example.test", PASSWORD)[0] == "OK"
    client.logout()


def test_implicit_tls_with_imapclient(imap_server, account):
    with IMAPClient("127.0.0.1", port=imap_server.tls_port, ssl=True, ssl_context=client_context()) as client:
        client.login("alice@example.test", PASSWORD)
        assert b"IDLE" in client.capabilities()
        assert b"STARTTLS" not in client.capabilities()


def test_login_disabled_before_tls_for_non_loopback_peer(imap_server, account, monkeypatch):
    from mailcore.imap import session

    monkeypatch.setattr(session, "is_loopback", lambda peer: False)
    raw = RawClient(imap_server.port)
    assert b"LOGINDISABLED" in raw.greeting and b"AUTH=PLAIN" not in raw.greeting
    assert raw.command(b"a LOGIN alice@example.test " + PASSWORD.encode()) == [
        b"a NO [PRIVACYREQUIRED] log in over TLS (STARTTLS) first\r\n"
    ]
    raw.send(b"b STARTTLS\r\n")
    assert raw.line() == b"b OK Begin TLS negotiation now\r\n"
    tls = client_context().wrap_socket(raw.sock, server_hostname="localhost")
    tls.sendall(b"c CAPABILITY\r\n")
    reply = tls.recv(4096)
    assert b"AUTH=PLAIN" in reply and b"LOGINDISABLED" not in reply and b"c OK CAPABILITY completed" in reply
    tls.close()


def test_id_and_enable(raw):
    raw.login()
    assert raw.command(b'a ID ("name" "test")') == [
        b'* ID ("name" "mailcore" "vendor" "mailcore")\r\n',
        b"a OK ID completed\r\n",
    ]
    assert raw.command(b"a ENABLE CONDSTORE X-UNKNOWN") == [b"* ENABLED CONDSTORE\r\n", b"a OK ENABLE completed\r\n"]


def test_enable_before_login_is_bad(raw):
    assert raw.command(b"a ENABLE IMAP4rev2") == [b"a BAD ENABLE is not allowed in the not authenticated state\r\n"]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"a FROB", b"a BAD unknown command FROB\r\n"),
        (b"a NOOP extra", b"a BAD unexpected characters at end of command: extra\r\n"),
        (b"a LOGIN \"unterminated", b"a BAD unterminated quoted string\r\n"),
        (b"a LOGIN \"bad\\escape\" x", b"a BAD invalid escape in quoted string\r\n"),
        (b"a SELECT INBOX", b"a BAD SELECT is not allowed in the not authenticated state\r\n"),
        (b"", b"* BAD missing or invalid tag\r\n"),
        (b"a", b"a BAD expected a space at position 1\r\n"),
    ],
)
def test_malformed_commands_get_bad_and_the_session_goes_on(raw, line, reply):
    raw.send(line + b"\r\n")
    assert raw.line() == reply
    assert raw.command(b"z NOOP", b"z") == [b"z OK NOOP completed\r\n"]


def test_line_too_long_is_bad_and_session_survives(raw, settings):
    raw.send(b"a NOOP " + b"x" * 70_000 + b"\r\n")
    assert raw.line() == b"a BAD command line too long\r\n"
    assert raw.command(b"z NOOP", b"z") == [b"z OK NOOP completed\r\n"]


def test_oversized_literal_is_refused_before_it_is_read(raw):
    raw.login()
    raw.send(b"a LOGIN {999999}\r\n")
    assert raw.line() == b"a BAD literal larger than 65536 bytes\r\n"
    raw.login_state = None
    assert raw.command(b"z NOOP", b"z") == [b"z OK NOOP completed\r\n"]


def test_literal_login_with_synchronising_and_non_synchronising_literals(raw):
    raw.send(b"a LOGIN {18}\r\n")
    assert raw.line() == b"+ Ready for literal data\r\n"
    raw.send(b"alice@example.test {15+}\r\n" + PASSWORD.encode() + b"\r\n")
    assert raw.until(b"a")[-1].endswith(b"LOGIN completed\r\n")


def test_deep_nesting_is_bad(raw):
    raw.login()
    reply = raw.command(b"a STATUS INBOX " + b"(" * 40 + b")" * 40)
    assert reply == [b"a BAD expected an atom at position 16\r\n"] or reply[-1].startswith(b"a BAD")


def test_ssl_error_does_not_kill_server(imap_server, account):
    import socket

    sock = socket.create_connection(("127.0.0.1", imap_server.tls_port))
    sock.sendall(b"not tls at all\r\n")
    sock.close()
    client = IMAPClient("127.0.0.1", port=imap_server.tls_port, ssl=True, ssl_context=client_context())
    client.login("alice@example.test", PASSWORD)
    client.logout()
    assert ssl  # the module is used for contexts above


def test_a_client_that_stops_reading_a_large_fetch_is_disconnected(imap_server, account, settings):
    """MAIL_SEND_TIMEOUT: a FETCH nobody reads does not hold the connection and the bytes for ever."""
    from mailcore import store
    from tests.support.net import stalled_reader

    settings.MAIL_SEND_TIMEOUT = 1
    body = ("y" * 998 + "\r\n") * 12_000  # 12 MB, more than both sides' socket buffers
    store.deliver(f"From: a@example.org\r\nSubject: big\r\n\r\n{body}".encode(), ["alice@example.test"])
    request = f"a LOGIN alice@example.test {PASSWORD}\r\nb SELECT INBOX\r\nc FETCH 1 BODY.PEEK[]\r\n".encode()
    received = stalled_reader(imap_server.port, request, stall_seconds=4)  # longer than the timeout
    assert b"a OK" in received and b"* 1 FETCH (BODY[] {" in received
    assert len(received) < len(body)  # cut off: the server gave up on this client
    again = imaplib.IMAP4("127.0.0.1", imap_server.port)  # the server goes on
    assert again.login("alice@example.test", PASSWORD)[0] == "OK"
    again.logout()
