"""Pure functions of the POP3 package and SASL PLAIN: table-driven, with hostile inputs and Hypothesis."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcore.auth.sasl import PlainCredentials, SaslError, decode_base64_response, decode_plain
from mailcore.pop3.errors import Pop3Error
from mailcore.pop3.maildrop import unique_id
from mailcore.pop3.parser import Command, message_number, parse_command
from mailcore.pop3.wire import dot_stuff, top_of
from tests.pop3.conftest import unstuff


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"stat\r\n", Command("STAT", "")),
        (b"RETR 1\r\n", Command("RETR", "1")),
        (b"TOP 2 10\n", Command("TOP", "2 10")),
        (b"PASS pass word with spaces\r\n", Command("PASS", "pass word with spaces")),
        (b"PASS " + b"x" * 100 + b"\r\n", Command("PASS", "x" * 100)),
    ],
)
def test_commands_parse(line, command):
    assert parse_command(line) == command


@pytest.mark.parametrize("line", [b"\r\n", b"RE\r\n", b"RETRIEVE 1\r\n", b"12 3\r\n", b"\xff\r\n", b"A" * 256])
def test_bad_command_lines_raise_pop3_errors(line):
    with pytest.raises(Pop3Error):
        parse_command(line)


@pytest.mark.parametrize("arg", ["0", "01", "+1", "-1", "1.0", "", "12345678901", "\uff11"])
def test_only_positive_decimal_message_numbers(arg):
    with pytest.raises(Pop3Error):
        message_number(arg)


def test_unique_ids_are_printable_and_short():
    uid = unique_id(4294967295, 2**63)
    assert 1 <= len(uid) <= 70 and all(0x21 <= ord(c) <= 0x7E for c in uid)


@given(st.lists(st.sampled_from([b"", b".", b"..", b".x", b"x.", b"a b", b"."]), min_size=1, max_size=12))
def test_dot_stuffing_round_trips_and_never_ends_early(lines):
    data = b"\r\n".join(lines) + b"\r\n"
    stuffed = dot_stuff(data)
    assert b"\r\n.\r\n" not in b"\r\n" + stuffed
    assert unstuff(stuffed) == data


@pytest.mark.parametrize(
    ("message", "n", "top"),
    [
        (b"A: 1\r\n\r\nb1\r\nb2\r\n", 1, b"A: 1\r\n\r\nb1\r\n"),
        (b"A: 1\r\n\r\nb1\r\nb2\r\n", 0, b"A: 1\r\n\r\n"),
        (b"A: 1\r\n\r\nb1\r\nb2", 5, b"A: 1\r\n\r\nb1\r\nb2"),
        (b"A: 1\r\nB: 2\r\n", 3, b"A: 1\r\nB: 2\r\n"),
        (b"\r\nbody\r\n", 0, b"\r\n"),
    ],
)
def test_top_cuts_after_n_body_lines(message, n, top):
    assert top_of(message, n) == top


def test_sasl_plain_decodes_and_refuses_malformed_responses():
    assert decode_plain(b"\0alice@example.test\0pw") == PlainCredentials("", "alice@example.test", "pw")
    assert decode_base64_response("=") == b""
    for bad in (b"alice\0pw", b"\0\0pw", b"\0alice\0", b"a\0b\0c\0d", b"\0\xff\0pw"):
        with pytest.raises(SaslError):
            decode_plain(bad)
    for bad in ("not base64!", "YWJj=ZGVm", "é"):
        with pytest.raises(SaslError):
            decode_base64_response(bad)
