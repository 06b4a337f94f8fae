"""The command parser, table-driven and with Hypothesis: hostile bytes give Bad, never another exception."""
from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcore.imap import mutf7, wire
from mailcore.imap.errors import Bad
from mailcore.imap.parser import Parser


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'"a\\"b"', b'a"b'),
        (b"{3}\r\nabc", b"abc"),
        (b"{3+}\r\nabc", b"abc"),
        (b"atom]x", b"atom]x"),
        (b'""', b""),
    ],
)
def test_astring_forms(data, expected):
    parser = Parser(data)
    assert parser.astring() == expected
    parser.end()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"1", [(1, 1)]),
        (b"1:3,5,*", [(1, 3), (5, 5), (None, None)]),
        (b"4:*", [(4, None)]),
    ],
)
def test_sequence_sets(data, expected):
    assert Parser(data).sequence_set() == expected


@pytest.mark.parametrize("data", [b"0", b"1:0", b"99999999999", b",1", b"a"])
def test_bad_sequence_sets(data):
    with pytest.raises(Bad):
        Parser(data).sequence_set()


def test_literal_shorter_than_announced_is_bad():
    with pytest.raises(Bad, match="shorter"):
        Parser(b"{10}\r\nabc").literal()


@pytest.mark.parametrize("name", ["INBOX", "Été", "a&b", "日本語/子", "~peter/mail"])
def test_modified_utf7_round_trip(name):
    assert mutf7.decode(mutf7.encode(name)) == name


def test_modified_utf7_known_value():
    assert mutf7.encode("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"


def test_sequence_set_compaction():
    assert wire.sequence_set([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_bad_or_a_value(data):
    from mailcore.imap.commands.fetch import parse_items
    from mailcore.imap.search import parse_program

    for parse in (Parser.astring, Parser.sequence_set, Parser.flag_list, parse_items, parse_program, Parser.date):
        parser = Parser(data)
        with contextlib.suppress(Bad):
            parse(parser)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=50))
def test_quoted_output_parses_back(text):
    data = wire.string(text, utf8=True)
    assert Parser(data).string() == text.encode("utf-8", "surrogateescape")
