"""POP3 over real sockets with poplib: every command and its exact replies (RFC 1939, RFC 2449)."""
from __future__ import annotations

import poplib
import time

import pytest

from mailcore import store
from tests.pop3.conftest import ALICE, RawClient, deliver, inbox_uids, login, message, pop

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_messages(alice):
    deliver(message(1))
    deliver(message(2, "Second.\r\n.leading dot\r\n..two dots"))
    return [len(message(1)), len(message(2, "Second.\r\n.leading dot\r\n..two dots"))]


def test_greeting_and_capabilities_before_login(server, alice):
    client = pop(server)
    assert client.getwelcome() == b"+OK POP3 server ready"
    assert client.capa() == {
        "TOP": [], "UIDL": [], "RESP-CODES": [], "AUTH-RESP-CODE": [], "PIPELINING": [],
        "USER": [], "SASL": ["PLAIN"], "STLS": [], "IMPLEMENTATION": ["mailcore"],
    }
    assert client.quit() == b"+OK bye"


def test_capabilities_after_login_leave_out_login_and_stls(server, alice):
    client = login(server)
    assert list(client.capa()) == ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION"]
    client.quit()


def test_user_pass_opens_the_maildrop_with_count_and_size(server, two_messages):
    client = pop(server)
    assert client.user("alice@example.test") == b"+OK send PASS"
    assert client.pass_("alice-secret-pw") == f"+OK maildrop has 2 messages ({sum(two_messages)} octets)".encode()
    assert client.stat() == (2, sum(two_messages))
    client.quit()


def test_login_is_case_insensitive_in_the_address(server, alice):
    client = pop(server)
    client.user("ALICE@Example.Test")
    assert client.pass_("alice-secret-pw") == b"+OK maildrop has 0 messages (0 octets)"
    client.quit()


def test_wrong_password_is_err_auth_and_the_session_goes_on(server, alice):
    client = pop(server)
    client.user("alice@example.test")
    with pytest.raises(poplib.error_proto) as err:
        client.pass_("wrong")
    assert err.value.args[0] == b"-ERR [AUTH] invalid login or password"
    client.user("nobody@example.test")
    with pytest.raises(poplib.error_proto) as err:
        client.pass_("wrong")
    assert err.value.args[0] == b"-ERR [AUTH] invalid login or password"
    client.user("alice@example.test")
    assert client.pass_("alice-secret-pw").startswith(b"+OK maildrop has 0 messages")
    client.quit()


def test_third_failed_login_closes_the_session(server, alice):
    raw = RawClient(server.port)
    raw.line()
    for _ in range(3):
        assert raw.command(b"USER alice@example.test") == b"+OK send PASS"
        assert raw.command(b"PASS nope") == b"-ERR [AUTH] invalid login or password"
    assert raw.closed()


def test_blocked_address_is_refused_before_the_password_check(server, alice):
    from mailcore.auth import throttle

    for _ in range(throttle.MAX_FAILURES):
        throttle.record_failure("127.0.0.1")
    raw = RawClient(server.port)
    raw.line()
    raw.command(b"USER alice@example.test")
    assert raw.command(b"PASS alice-secret-pw") == (
        b"-ERR [AUTH] too many failed logins from your address, try again later"
    )
    assert raw.closed()


def test_pass_without_user_and_user_without_name(server, alice):
    raw = RawClient(server.port)
    raw.line()
    assert raw.command(b"PASS secret") == b"-ERR send USER first"
    assert raw.command(b"USER") == b"-ERR syntax: USER name"
    assert raw.command(b"USER alice@example.test") == b"+OK send PASS"
    assert raw.command(b"PASS") == b"-ERR syntax: PASS password"
    assert raw.command(b"QUIT") == b"+OK bye"


def test_password_with_spaces_is_the_rest_of_the_line(server, domain):
    from mailcore.directory import create_account

    create_account("carol@example.test", "pass word with spaces")
    client = pop(server)
    client.user("carol@example.test")
    assert client.pass_("pass word with spaces").startswith(b"+OK")
    client.quit()


def test_list_and_list_one_message(server, two_messages):
    client = login(server)
    assert client.list() == (
        f"+OK 2 messages ({sum(two_messages)} octets)".encode(),
        [f"1 {two_messages[0]}".encode(), f"2 {two_messages[1]}".encode()],
        len(f"1 {two_messages[0]}") + len(f"2 {two_messages[1]}") + 4,
    )
    assert client.list(2) == f"+OK 2 {two_messages[1]}".encode()
    client.quit()


@pytest.mark.parametrize(
    ("arg", "reply"),
    [
        ("0", b"-ERR invalid message number '0'"),
        ("3", b"-ERR no such message, only 2 in maildrop"),
        ("abc", b"-ERR invalid message number 'abc'"),
        ("-1", b"-ERR invalid message number '-1'"),
        ("99999999999", b"-ERR invalid message number '99999999999'"),
    ],
)
def test_bad_message_numbers_are_err_with_a_reason(server, two_messages, arg, reply):
    client = login(server)
    for command in ("LIST", "RETR", "DELE", "UIDL"):
        with pytest.raises(poplib.error_proto) as err:
            client._shortcmd(f"{command} {arg}")
        assert err.value.args[0] == reply
    with pytest.raises(poplib.error_proto) as err:
        client._shortcmd(f"TOP {arg} 1")
    assert err.value.args[0] == reply
    assert client.noop() == b"+OK"
    client.quit()


def test_retr_is_byte_exact_and_dot_unstuffed(server, two_messages):
    client = login(server)
    response, lines, _ = client.retr(2)
    expected = message(2, "Second.\r\n.leading dot\r\n..two dots")
    assert response == f"+OK {len(expected)} octets".encode()
    assert b"\r\n".join(lines) + b"\r\n" == expected
    client.quit()


def test_retr_sends_dot_stuffed_lines_on_the_wire(server, two_messages):
    raw = RawClient(server.port)
    raw.line()
    raw.command(b"USER alice@example.test")
    raw.command(b"PASS alice-secret-pw")
    assert raw.command(b"RETR 2").startswith(b"+OK ")
    body = raw.multiline()
    assert b"\r\n..leading dot\r\n...two dots\r\n" in body
    assert raw.command(b"QUIT") == b"+OK bye, 0 messages deleted"


def test_top_sends_headers_blank_line_and_n_body_lines(server, alice):
    deliver(message(1, "line 1\r\nline 2\r\nline 3"))
    client = login(server)
    head = [b"From: sender@example.org", b"To: alice@example.test", b"Subject: message 1",
            b"Message-ID: <m1@example.org>", b""]
    response, lines, _ = client.top(1, 2)
    assert response == b"+OK top of message follows"
    assert lines == [*head, b"line 1", b"line 2"]
    assert client.top(1, 0)[1] == head
    assert client.top(1, 99)[1] == [*head, b"line 1", b"line 2", b"line 3"]
    with pytest.raises(poplib.error_proto) as err:
        client._shortcmd("TOP 1 x")
    assert err.value.args[0] == b"-ERR invalid line count 'x'"
    with pytest.raises(poplib.error_proto) as err:
        client._shortcmd("TOP 1")
    assert err.value.args[0] == b"-ERR syntax: TOP msg n"
    client.quit()


def test_uidl_is_uidvalidity_dot_uid(server, two_messages, alice):
    ref = store.get_folder(alice.pk, "INBOX")
    first, second = inbox_uids(alice)
    client = login(server)
    assert client.uidl() == (
        b"+OK unique-id listing follows",
        [f"1 {ref.uidvalidity}.{first}".encode(), f"2 {ref.uidvalidity}.{second}".encode()],
        len(f"1 {ref.uidvalidity}.{first}") + len(f"2 {ref.uidvalidity}.{second}") + 4,
    )
    assert client.uidl(2) == f"+OK 2 {ref.uidvalidity}.{second}".encode()
    client.quit()


def test_dele_marks_and_quit_removes_in_update_state(server, two_messages, alice):
    client = login(server)
    assert client.dele(1) == b"+OK message 1 deleted"
    with pytest.raises(poplib.error_proto) as err:
        client.dele(1)
    assert err.value.args[0] == b"-ERR message 1 already deleted"
    with pytest.raises(poplib.error_proto) as err:
        client.retr(1)
    assert err.value.args[0] == b"-ERR message 1 already deleted"
    assert client.stat() == (1, two_messages[1])
    assert client.list()[1] == [f"2 {two_messages[1]}".encode()]
    assert len(inbox_uids(alice)) == 2  # nothing removed before QUIT
    assert client.quit() == b"+OK bye, 1 messages deleted"
    assert len(inbox_uids(alice)) == 1


def test_rset_unmarks_deleted_messages(server, two_messages, alice):
    client = login(server)
    client.dele(1)
    client.dele(2)
    assert client.rset() == f"+OK maildrop has 2 messages ({sum(two_messages)} octets)".encode()
    assert client.stat() == (2, sum(two_messages))
    assert client.quit() == b"+OK bye, 0 messages deleted"
    assert len(inbox_uids(alice)) == 2


def test_retrieved_messages_are_seen_for_imap(server, two_messages, alice):
    client = login(server)
    client.retr(2)
    client.top(1, 0)  # TOP does not count as reading the message
    client.quit()
    flags = {info.uid: info.flags for info in store.fetch(store.get_folder(alice.pk, "INBOX"))}
    first, second = inbox_uids(alice)
    assert "\\Seen" in flags[second]
    assert "\\Seen" not in flags[first]


def test_a_long_session_marks_retrieved_messages_seen_before_it_ends(server, two_messages, alice, monkeypatch):
    monkeypatch.setattr("mailcore.pop3.transaction.SEEN_FLUSH_SECONDS", 0.0)  # "long" from the first RETR on
    client = login(server)
    client.retr(1)
    first = inbox_uids(alice)[0]
    folder = store.get_folder(alice.pk, "INBOX")
    for _ in range(100):
        if "\\Seen" in store.fetch(folder, [first])[0].flags:
            break
        time.sleep(0.05)
    assert "\\Seen" in store.fetch(folder, [first])[0].flags  # stored while the session is still open
    client.quit()


def test_retrieved_messages_are_seen_even_when_the_client_drops(server, two_messages, alice):
    raw = RawClient(server.port)
    raw.line()
    raw.command(b"USER alice@example.test")
    raw.command(b"PASS alice-secret-pw")
    raw.command(b"RETR 1")
    raw.multiline()
    raw.close()
    first = inbox_uids(alice)[0]
    for _ in range(100):
        if "\\Seen" in store.fetch(store.get_folder(alice.pk, "INBOX"), [first])[0].flags:
            break
        time.sleep(0.05)
    assert "\\Seen" in store.fetch(store.get_folder(alice.pk, "INBOX"), [first])[0].flags


def test_the_message_list_is_fixed_for_the_session(server, two_messages, alice):
    client = login(server)
    deliver(message(3))
    assert client.stat()[0] == 2
    assert len(client.list()[1]) == 2
    client.quit()
    client = login(server)
    assert client.stat()[0] == 3
    client.quit()


def test_noop_and_quit_without_login(server, two_messages):
    client = login(server)
    assert client.noop() == b"+OK"
    client.quit()
    raw = RawClient(server.port)
    raw.line()
    assert raw.command(b"QUIT") == b"+OK bye"
    assert raw.closed()


def test_other_users_mail_is_out_of_reach(server, two_messages, bob):
    client = login(server, ("bob@example.test", "bob-secret-pw"))
    assert client.stat() == (0, 0)
    with pytest.raises(poplib.error_proto) as err:
        client.retr(1)
    assert err.value.args[0] == b"-ERR no such message, only 0 in maildrop"
    client.quit()


def test_login_after_quit_of_first_session(server, alice):
    first = login(server)
    first.quit()
    second = login(server, ALICE)
    assert second.stat() == (0, 0)
    second.quit()
