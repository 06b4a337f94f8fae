"""Bad input, the state table, pipelining, the crash rule, IN-USE and UIDL stability, over real sockets."""
from __future__ import annotations

import socket
import struct
import time

import pytest

from mailcore import store
from mailcore.pop3.session import MAX_BAD_COMMANDS
from tests.pop3.conftest import ALICE, RawClient, ServerThread, deliver, inbox_uids, login, message, pop
from tests.support.net import stalled_reader

pytestmark = pytest.mark.django_db(transaction=True)


def logged_in_raw(server) -> RawClient:
    raw = RawClient(server.port)
    assert raw.line() == b"+OK POP3 server ready"
    assert raw.command(b"USER alice@example.test") == b"+OK send PASS"
    assert raw.command(b"PASS alice-secret-pw").startswith(b"+OK maildrop has ")
    return raw


# Malformed input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"", b"-ERR empty command"),
        (b"FOOBAR", b"-ERR unknown command"),
        (b"XYZW", b"-ERR unknown command"),
        (b"RETR\x001", b"-ERR command line must be printable ASCII"),
        (b"USER \xc3\xa9", b"-ERR command line must be printable ASCII"),
        (b"USER a\tb", b"-ERR command line must be printable ASCII"),
        (b"USER " + b"a" * 41, b"-ERR argument too long (limit 40 characters, RFC 2449 section 4)"),
        (b"USER " + b"a" * 300, b"-ERR command line too long (limit 255 octets, RFC 2449 section 4)"),
        (b"CAPA extra", b"-ERR syntax: CAPA"),
        (b"AUTH FOO", b"-ERR unsupported SASL mechanism FOO"),
    ],
)
def test_malformed_lines_get_err_with_a_reason_and_the_session_goes_on(server, alice, line, reply):
    raw = RawClient(server.port)
    raw.line()
    assert raw.command(line) == reply
    assert raw.command(b"USER alice@example.test") == b"+OK send PASS"
    raw.close()


def test_a_100k_line_is_discarded_with_err_and_the_session_goes_on(server, alice):
    raw = RawClient(server.port)
    raw.line()
    assert raw.command(b"X" * 100_000) == b"-ERR line too long"
    assert raw.command(b"USER alice@example.test") == b"+OK send PASS"
    assert raw.command(b"PASS alice-secret-pw") == b"+OK maildrop has 0 messages (0 octets)"
    raw.close()


def test_bare_lf_line_ends_are_accepted(server, alice):
    raw = RawClient(server.port)
    raw.line()
    raw.send(b"USER alice@example.test\n")
    assert raw.line() == b"+OK send PASS"


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"STAT", b"-ERR STAT not allowed in AUTHORIZATION state"),
        (b"LIST", b"-ERR LIST not allowed in AUTHORIZATION state"),
        (b"RETR 1", b"-ERR RETR not allowed in AUTHORIZATION state"),
        (b"DELE 1", b"-ERR DELE not allowed in AUTHORIZATION state"),
        (b"UIDL", b"-ERR UIDL not allowed in AUTHORIZATION state"),
        (b"TOP 1 1", b"-ERR TOP not allowed in AUTHORIZATION state"),
        (b"RSET", b"-ERR RSET not allowed in AUTHORIZATION state"),
        (b"NOOP", b"-ERR NOOP not allowed in AUTHORIZATION state"),
    ],
)
def test_transaction_commands_before_login_are_refused(server, alice, line, reply):
    raw = RawClient(server.port)
    raw.line()
    assert raw.command(line) == reply
    raw.close()


@pytest.mark.parametrize("line", [b"USER alice@example.test", b"PASS x", b"AUTH PLAIN", b"STLS"])
def test_authorization_commands_after_login_are_refused(server, alice, line):
    raw = logged_in_raw(server)
    verb = line.split()[0]
    assert raw.command(line) == b"-ERR " + verb + b" not allowed in TRANSACTION state"
    assert raw.command(b"STAT") == b"+OK 0 0"
    raw.close()


def test_too_many_bad_commands_close_the_connection(server, alice):
    raw = RawClient(server.port)
    raw.line()
    for _ in range(MAX_BAD_COMMANDS - 1):
        assert raw.command(b"BOGUS") == b"-ERR unknown command"
    assert raw.command(b"BOGUS") == b"-ERR unknown command"
    assert raw.line() == b"-ERR too many bad commands, closing connection"
    assert raw.closed()


def test_pipelined_commands_are_answered_in_order(server, alice):
    deliver(message(1))
    raw = RawClient(server.port)
    raw.line()
    raw.send(b"USER alice@example.test\r\nPASS alice-secret-pw\r\nSTAT\r\nUIDL 1\r\nRETR 1\r\nNOOP\r\nQUIT\r\n")
    uid = inbox_uids(alice)[0]
    uidvalidity = store.get_folder(alice.pk, "INBOX").uidvalidity
    assert raw.line() == b"+OK send PASS"
    assert raw.line() == f"+OK maildrop has 1 messages ({len(message(1))} octets)".encode()
    assert raw.line() == f"+OK 1 {len(message(1))}".encode()
    assert raw.line() == f"+OK 1 {uidvalidity}.{uid}".encode()
    assert raw.line() == f"+OK {len(message(1))} octets".encode()
    assert raw.multiline() == message(1)
    assert raw.line() == b"+OK"
    assert raw.line() == b"+OK bye, 0 messages deleted"
    assert raw.closed()


# The crash rule: deletions only in UPDATE ----------------------------------------------------------


def test_closing_the_socket_after_dele_deletes_nothing(server, alice):
    deliver(message(1))
    deliver(message(2))
    raw = logged_in_raw(server)
    assert raw.command(b"DELE 1") == b"+OK message 1 deleted"
    assert raw.command(b"DELE 2") == b"+OK message 2 deleted"
    raw.close()
    client = wait_for_login(server)
    assert client.stat()[0] == 2  # the lock was released and nothing was deleted
    client.quit()
    assert len(inbox_uids(alice)) == 2


def test_resetting_the_connection_after_dele_deletes_nothing(server, alice):
    deliver(message(1))
    raw = logged_in_raw(server)
    assert raw.command(b"DELE 1") == b"+OK message 1 deleted"
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    raw.close()
    client = wait_for_login(server)
    assert client.stat()[0] == 1
    client.quit()
    flags = store.fetch(store.get_folder(alice.pk, "INBOX"))[0].flags
    assert "\\Deleted" not in flags


def test_a_server_stop_after_dele_deletes_nothing(transactional_db, alice):
    deliver(message(1))
    first = ServerThread().start()
    raw = logged_in_raw(first)
    assert raw.command(b"DELE 1") == b"+OK message 1 deleted"
    first.stop()  # every session is cancelled, as on a crash or restart
    second = ServerThread().start()
    try:
        client = login(second)
        assert client.stat()[0] == 1
        client.quit()
    finally:
        second.stop()
    assert len(inbox_uids(alice)) == 1


def test_an_idle_session_is_logged_out_and_deletes_nothing(server, alice, monkeypatch):
    monkeypatch.setattr("mailcore.pop3.session.IDLE_TIMEOUT", 0.5)  # RFC 1939 §3 wants 10 minutes; tests can't wait
    deliver(message(1))
    raw = logged_in_raw(server)
    assert raw.command(b"DELE 1") == b"+OK message 1 deleted"
    assert raw.line() == b"-ERR autologout, idle for too long"
    assert raw.closed()
    client = wait_for_login(server)
    assert client.stat()[0] == 1
    client.quit()
    assert len(inbox_uids(alice)) == 1


def wait_for_login(server):
    """Log in once the previous session's lock is gone (the server frees it right after the disconnect)."""
    import poplib

    deadline = time.monotonic() + 5
    while True:
        client = pop(server)
        client.user(ALICE[0])
        try:
            client.pass_(ALICE[1])
            return client
        except poplib.error_proto as err:
            client.close()
            if b"[IN-USE]" not in err.args[0] or time.monotonic() > deadline:
                raise


# IN-USE ----------------------------------------------------------------------------------------------


def test_a_second_session_for_the_same_maildrop_is_in_use(server, alice, bob):
    first = login(server)
    second = pop(server)
    second.user("alice@example.test")
    import poplib

    with pytest.raises(poplib.error_proto) as err:
        second.pass_("alice-secret-pw")
    assert err.value.args[0] == b"-ERR [IN-USE] maildrop already in use by another session"
    other = login(server, ("bob@example.test", "bob-secret-pw"))  # another maildrop is not affected
    other.quit()
    first.quit()
    second.user("alice@example.test")
    assert second.pass_("alice-secret-pw").startswith(b"+OK maildrop has")
    second.quit()


def test_a_lock_held_by_another_process_is_in_use_until_it_expires(server, alice):
    import poplib

    ref = store.get_folder(alice.pk, "INBOX")
    assert store.acquire_lock(ref, "pop3:otherhost:1-1", 60)
    client = pop(server)
    client.user(ALICE[0])
    with pytest.raises(poplib.error_proto) as err:
        client.pass_(ALICE[1])
    assert err.value.args[0] == b"-ERR [IN-USE] maildrop already in use by another session"
    store.release_lock(ref, "pop3:otherhost:1-1")
    assert store.acquire_lock(ref, "pop3:crashedhost:1-1", -1)  # a crashed holder: its lock has expired
    client.user(ALICE[0])
    assert client.pass_(ALICE[1]).startswith(b"+OK maildrop has")
    assert not store.acquire_lock(ref, "pop3:otherhost:1-1", 60)
    client.quit()
    assert store.acquire_lock(ref, "pop3:otherhost:1-1", 60)  # QUIT released it


# UIDL stability ----------------------------------------------------------------------------------------


def test_uidl_values_survive_deletions_and_a_server_restart(transactional_db, alice):
    for n in range(1, 4):
        deliver(message(n))
    first = ServerThread().start()
    try:
        client = login(first)
        before = dict(line.split() for line in client.uidl()[1])
        client.dele(2)
        client.quit()
    finally:
        first.stop()
    deliver(message(4))
    second = ServerThread().start()
    try:
        client = login(second)
        after = [line.split()[1] for line in client.uidl()[1]]
        client.quit()
    finally:
        second.stop()
    assert after[:2] == [before[b"1"], before[b"3"]]
    assert after[2] not in before.values()
    assert len(set(after)) == 3


def test_a_client_that_stops_reading_a_large_retr_is_disconnected_and_loses_nothing(server, alice, settings):
    """MAIL_SEND_TIMEOUT: the reply's bytes are not held for ever for a client that never reads them."""
    settings.MAIL_SEND_TIMEOUT = 1
    body = ("x" * 998 + "\r\n") * 12_000  # 12 MB: far more than the socket buffers on both sides hold
    deliver(message(1, body))
    request = b"USER alice@example.test\r\nPASS alice-secret-pw\r\nRETR 1\r\n"
    received = stalled_reader(server.port, request, stall_seconds=4)  # longer than the timeout
    assert received.startswith(b"+OK POP3 server ready\r\n+OK send PASS\r\n+OK maildrop has 1 message")
    assert 0 < len(received) < len(body)  # cut off: the server gave up on this client
    client = wait_for_login(server)
    assert client.stat()[0] == 1  # nothing deleted, the next session works
    client.quit()
