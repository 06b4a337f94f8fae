"""Malformed and hostile input, sent as exact bytes: smuggling, STARTTLS injection, limits, timeouts."""
from __future__ import annotations

import base64

import pytest

from mailcore import store

from .conftest import HOSTNAME

pytestmark = pytest.mark.django_db(transaction=True)

BARE_LINE_END = "550 5.5.2 Message refused: bare CR or LF in message data (RFC 5321 §2.3.8 requires CRLF); closing"
SMUGGLED = b"MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nFrom: ceo@bank.test\r\n\r\nsmuggled\r\n"


def inbox_count(account) -> int:
    return store.folder_info(store.get_folder(account.pk, store.INBOX)).messages


def open_data(client) -> None:
    client.command("EHLO client.remote.test")
    assert client.command("MAIL FROM:<carol@remote.test>") == "250 2.1.0 Sender OK"
    assert client.command("RCPT TO:<bob@example.test>") == "250 2.1.5 Recipient OK"
    assert client.command("DATA") == "354 End data with <CR><LF>.<CR><LF>"


@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\n"],
    ids=["LF.LF", "LF.CRLF", "CR.CR", "CRLF.LF", "CR.CRLF", "CRLF.CR", "bare-LF"],
)
def test_smuggling_line_ends_never_end_data_and_the_message_is_refused(mx_port, bob, raw_client, fake_end):
    client = raw_client(mx_port)
    open_data(client)
    client.send(b"Subject: first\r\n\r\nfirst" + fake_end + SMUGGLED + b".\r\n")
    assert client.reply() == BARE_LINE_END
    assert client.is_closed()
    assert inbox_count(bob) == 0


def test_dot_stuffed_lines_and_a_proper_end_deliver_one_message(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    open_data(client)
    client.send(b"Subject: dots\r\n\r\n..leading dot\r\n.\r\n")
    assert client.reply().startswith("250 2.0.0 Message accepted")
    ref = store.get_folder(bob.pk, store.INBOX)
    assert store.read_message(ref, 1).endswith(b"Subject: dots\r\n\r\n.leading dot\r\n")


def test_commands_pipelined_after_starttls_are_discarded(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.send(b"STARTTLS\r\nMAIL FROM:<carol@remote.test>\r\nRCPT TO:<bob@example.test>\r\n")
    assert client.reply() == "220 2.0.0 Ready to start TLS"
    client.starttls()
    assert client.command("EHLO client.remote.test").startswith(f"250-{HOSTNAME} Hello")  # not a 250 for MAIL
    assert client.command("RCPT TO:<bob@example.test>") == "503 5.5.1 Error: need MAIL command"


def test_ehlo_is_needed_again_after_starttls(mx_port, raw_client):
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.command("STARTTLS")
    client.starttls()
    assert client.command("MAIL FROM:<carol@remote.test>") == "503 5.5.1 Error: send HELO first"
    assert client.command("EHLO client.remote.test").splitlines()[-1] == "250 DSN"
    assert client.command("STARTTLS") == "503 5.5.1 TLS already active"


def test_command_line_over_1000_octets_is_500_and_the_session_goes_on(mx_port, raw_client):
    client = raw_client(mx_port)
    assert client.command(b"NOOP " + b"x" * 995) == "500 5.5.2 Line too long (RFC 5321 §4.5.3.1.6 allows 1000 octets)"
    assert client.command(b"NOOP " + b"x" * 5000) == "500 5.5.2 Line too long (RFC 5321 §4.5.3.1.6 allows 1000 octets)"
    assert client.command(b"NOOP " + b"x" * 993) == "250 2.0.0 OK"


def test_data_line_over_1000_octets_is_500_after_the_end_and_nothing_is_stored(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    open_data(client)
    client.send(b"Subject: long\r\n\r\n" + b"y" * 999 + b"\r\n.\r\n")
    assert client.reply() == "500 5.5.2 Line too long (RFC 5321 §4.5.3.1.6 allows 1000 octets)"
    assert client.command("NOOP") == "250 2.0.0 OK"
    assert inbox_count(bob) == 0


def test_a_very_long_data_line_split_before_a_dot_does_not_end_data(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    open_data(client)
    # The reader's limit falls inside this line; its tail ".\r\n" must not count as the end.
    client.send(b"x" * 1001 + b".\r\n" + SMUGGLED + b".\r\n")
    assert client.reply() == "500 5.5.2 Line too long (RFC 5321 §4.5.3.1.6 allows 1000 octets)"
    assert client.command("NOOP") == "250 2.0.0 OK"
    assert inbox_count(bob) == 0


def folded_header(octets: int) -> bytes:
    """A header section of exactly `octets`, its lines' CRLFs counted and the empty line after it not:
    a Subject folded over short lines, then one field that takes up the rest."""
    head = b"From: carol@remote.test\r\nSubject: x\r\n"
    rest = octets - len(head)
    last = b"X: " + b"z" * (1 + (rest - 6) % 4) + b"\r\n"
    header = head + b" y\r\n" * ((rest - len(last)) // 4) + last
    assert len(header) == octets
    return header


@pytest.mark.parametrize("port", ["mx_port", "submission_port"])
def test_a_header_over_1_mb_is_552_after_the_end_and_nothing_is_stored(request, servers, bob, raw_client, port):
    # `servers` first, so that its listeners outlive the raw client's connection at teardown
    """Exim's header_maxsize: a header made to cost every reader of it work (it is unfolded by each)."""
    client = raw_client(request.getfixturevalue(port))
    if port == "mx_port":
        open_data(client)
    else:
        client.command("EHLO client.example.test")
        login = base64.b64encode(b"\0bob@example.test\0bob-secret-pw").decode()
        assert client.command(f"AUTH PLAIN {login}") == "235 2.7.0 Authentication successful"
        client.command("MAIL FROM:<bob@example.test>")
        client.command("RCPT TO:<bob@example.test>")
        client.command("DATA")
    client.send(folded_header(1024 * 1024 + 1) + b"\r\nbody\r\n.\r\n")
    assert client.reply() == "552 5.3.4 Message header exceeds the maximum size of 1048576 octets"
    assert client.command("NOOP") == "250 2.0.0 OK"
    assert inbox_count(bob) == 0


def test_a_header_of_1_mb_is_accepted(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    open_data(client)
    client.send(folded_header(1024 * 1024) + b"\r\nbody\r\n.\r\n")
    assert client.reply().startswith("250 2.0.0 Message accepted for delivery")
    assert inbox_count(bob) == 1


def test_a_message_with_no_empty_line_is_all_header_and_over_1_mb_is_552(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    open_data(client)
    client.send(b"Subject: no body\r\n" + b"line of text\r\n" * 90_000 + b".\r\n")
    assert client.reply() == "552 5.3.4 Message header exceeds the maximum size of 1048576 octets"
    assert inbox_count(bob) == 0


def hops(count: int) -> bytes:
    return b"".join(b"Received: from hop%d.example.test by hop%d.example.test; Sat, 28 Nov 2026 15:00:00 +0000\r\n"
                    % (n, n + 1) for n in range(count))


def test_more_than_100_received_fields_is_a_mail_loop_refused_with_554(mx_port, bob, raw_client):
    """RFC 5321 §6.3: an alias forwarding to an address that forwards back passed a message between two
    servers for ever; each hop adds a Received field, and more than 100 means a loop."""
    client = raw_client(mx_port)
    open_data(client)
    client.send(hops(60) + b"X-Loop: x\r\n" + hops(41).replace(b"Received:", b"RECEIVED :") + b"Subject: x\r\n\r\nb\r\n.\r\n")
    assert client.reply() == (
        "554 5.4.6 Message has more than 100 Received header fields: a mail loop (RFC 5321 \u00a76.3)")
    assert inbox_count(bob) == 0


def test_100_received_fields_are_taken_and_the_body_is_not_counted(mx_port, bob, raw_client):
    client = raw_client(mx_port)
    open_data(client)
    client.send(hops(100) + b"Subject: x\r\n\r\n" + hops(5) + b".\r\n")
    assert client.reply().startswith("250 2.0.0 Message accepted for delivery")
    assert inbox_count(bob) == 1


def test_nul_byte_in_a_command_is_refused(mx_port, raw_client):
    client = raw_client(mx_port)
    assert client.command(b"EHLO a\x00b") == "500 5.5.2 NUL character in command refused"
    assert client.command(b"NOOP\rX") == "500 5.5.2 Bare CR in command refused"


def test_more_than_100_bad_commands_is_421_and_close(mx_port, raw_client):
    client = raw_client(mx_port)
    client.send(b"FOO\r\n" * 101)
    replies = [client.reply() for _ in range(101)]
    assert replies[:100] == ['500 5.5.1 Command "FOO" not recognized'] * 100
    assert replies[100] == '500 5.5.1 Command "FOO" not recognized'
    assert client.reply() == f"421 4.7.0 {HOSTNAME} Too many errors, closing connection"
    assert client.is_closed()


def test_idle_session_gets_421_and_is_closed(servers, raw_client):
    client = raw_client(servers.start("mx", idle_timeout=0.3))
    assert client.reply() == f"421 4.4.2 {HOSTNAME} Idle timeout, closing connection"
    assert client.is_closed()


def test_unknown_verb_is_echoed_safely(mx_port, raw_client):
    client = raw_client(mx_port)
    assert client.command("X\x7fY") == '500 5.5.1 Command "X?Y" not recognized'


@pytest.mark.parametrize("command", [b"MAIL FROM:<", b"MAIL FROM:< ", b"MAIL FROM: <", b"MAIL FROM:=@["])
def test_a_broken_path_is_a_malformed_address_not_a_server_error(mx_port, raw_client, command):
    # The stdlib address parser raises IndexError on a lone "<" and AttributeError on "=@[": a malformed address
    # (RFC 3463 X.1.3), not a 451 with a traceback.
    client = raw_client(mx_port)
    client.command("EHLO client.remote.test")
    client.send(command + b"\r\n")
    assert client.reply() == "553 5.1.3 Error: malformed address"
    assert client.command("MAIL FROM:<carol@remote.test>") == "250 2.1.0 Sender OK"
