"""STLS (RFC 2595), implicit TLS (RFC 8314) and AUTH PLAIN (RFC 5034, RFC 4616) with poplib over real sockets."""
from __future__ import annotations

import base64
import poplib
import ssl

import pytest

from mailcore.pop3.authorization import plaintext_login_allowed
from tests.pop3.conftest import RawClient, client_tls_context, deliver, message, pop

pytestmark = pytest.mark.django_db(transaction=True)


def plain(authzid: str, login: str, password: str) -> str:
    return base64.b64encode(f"{authzid}\0{login}\0{password}".encode()).decode()


def test_stls_then_login_and_retr_under_tls(server, alice):
    deliver(message(1))
    client = pop(server)
    assert client.stls(client_tls_context()) == b"+OK begin TLS negotiation"
    assert isinstance(client.sock, ssl.SSLSocket)
    assert "STLS" not in client.capa()
    assert "USER" in client.capa()
    client.user("alice@example.test")
    assert client.pass_("alice-secret-pw").startswith(b"+OK maildrop has 1 messages")
    assert b"\r\n".join(client.retr(1)[1]) + b"\r\n" == message(1)
    client.quit()


def test_a_second_stls_is_refused(server, alice):
    client = pop(server)
    client.stls(client_tls_context())
    with pytest.raises(poplib.error_proto) as err:
        client._shortcmd("STLS")
    assert err.value.args[0] == b"-ERR TLS is already active"
    client.quit()


def test_commands_pipelined_after_stls_are_refused(server, alice):
    raw = RawClient(server.port)
    raw.line()
    raw.send(b"STLS\r\nUSER alice@example.test\r\n")
    assert raw.line() == b"-ERR command sent after STLS before the TLS handshake"
    assert raw.closed()


def test_implicit_tls_listener(tls_server, alice):
    deliver(message(1))
    client = poplib.POP3_SSL("127.0.0.1", tls_server.port, context=client_tls_context(), timeout=10)
    assert client.getwelcome() == b"+OK POP3 server ready"
    assert "STLS" not in client.capa()
    client.user("alice@example.test")
    assert client.pass_("alice-secret-pw").startswith(b"+OK maildrop has 1 messages")
    client.quit()


def test_a_plaintext_client_on_the_tls_port_gets_no_pop3_reply(tls_server, alice):
    raw = RawClient(tls_server.port)
    raw.send(b"USER alice@example.test\r\n")
    with pytest.raises((EOFError, ConnectionResetError)):
        raw.line()


@pytest.mark.parametrize(
    ("peer", "tls", "allowed"),
    [
        ("127.0.0.1", False, True),
        ("127.8.9.10", False, True),
        ("::1", False, True),
        ("192.0.2.7", False, False),
        ("2001:db8::1", False, False),
        ("192.0.2.7", True, True),
        ("not-an-ip", False, False),
    ],
)
def test_passwords_need_tls_except_from_loopback(peer, tls, allowed):
    assert plaintext_login_allowed(peer, tls) is allowed


def test_auth_plain_with_initial_response(server, alice):
    client = pop(server)
    reply = client._shortcmd("AUTH PLAIN " + plain("", "alice@example.test", "alice-secret-pw"))
    assert reply == b"+OK maildrop has 0 messages (0 octets)"
    client.quit()


def test_auth_plain_with_a_continuation(server, alice):
    raw = RawClient(server.port)
    raw.line()
    assert raw.command(b"AUTH PLAIN") == b"+ "
    assert raw.command(plain("alice@example.test", "alice@example.test", "alice-secret-pw").encode()) == (
        b"+OK maildrop has 0 messages (0 octets)"
    )
    raw.close()


def test_poplib_auth_plain(server, alice):
    client = pop(server)
    # poplib has no AUTH helper; this is the exchange its users write by hand
    assert client._shortcmd("AUTH PLAIN") == b"+ "
    assert client._shortcmd(plain("", "alice@example.test", "alice-secret-pw")).startswith(b"+OK maildrop")
    client.quit()


@pytest.mark.parametrize(
    ("exchange", "reply"),
    [
        ([b"AUTH PLAIN", b"*"], b"-ERR authentication cancelled"),
        ([b"AUTH PLAIN !!!notbase64"], b"-ERR invalid base64 in SASL response"),
        ([b"AUTH PLAIN " + base64.b64encode(b"no-nuls-here")], b"-ERR PLAIN response must be authzid NUL authcid NUL password"),
        ([b"AUTH PLAIN " + plain("bob@example.test", "alice@example.test", "alice-secret-pw").encode()],
         b"-ERR [AUTH] authorization identity must be empty or your own login"),
        ([b"AUTH PLAIN " + plain("", "alice@example.test", "wrong").encode()], b"-ERR [AUTH] invalid login or password"),
        ([b"AUTH PLAIN ="], b"-ERR PLAIN response must be authzid NUL authcid NUL password"),
        ([b"AUTH CRAM-MD5"], b"-ERR unsupported SASL mechanism CRAM-MD5"),
    ],
)
def test_bad_auth_exchanges_are_err_and_the_session_goes_on(server, alice, exchange, reply):
    raw = RawClient(server.port)
    raw.line()
    for line in exchange[:-1]:
        assert raw.command(line) == b"+ "
    assert raw.command(exchange[-1]) == reply
    assert raw.command(b"USER alice@example.test") == b"+OK send PASS"
    raw.close()


def test_auth_without_a_mechanism_lists_them(server, alice):
    raw = RawClient(server.port)
    raw.line()
    assert raw.command(b"AUTH") == b"+OK SASL mechanisms follow"
    assert raw.multiline() == b"PLAIN\r\n"
    raw.close()
