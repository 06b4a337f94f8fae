"""MAIL FROM / RCPT TO paths: the fast path for `<local@domain>` reads exactly what aiosmtpd's parser reads."""
import asyncio

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given
from hypothesis import strategies as st

from mailcore.smtp.server import ListenerConfig, SMTPServer

PATHS = [
    "<alice@example.test>", "<alice@example.test> SIZE=4096", "<a.b+c@d-e.test>  BODY=8BITMIME SMTPUTF8",
    "<x@y>", "  <alice@example.test>", "<alice@example.test>trailing", "<>", "alice@example.test",
    '<"quoted local"@example.test>', "<a..b@example.test>", "<a@[127.0.0.1]>", "<ünï@example.test>",
    "<alice@example.test", "<alice@@example.test>", "<alice@>", "<" + "l" * 70 + "@example.test>",
    "<alice@example.test> <bob@example.test>", "<", "< ", "=@[", "<a@b.test>\t SIZE=1", "<a@b.test> (comment) SIZE=1", "<a@b.test>(c)", "<a@b.test>   ",
]


@pytest.fixture(scope="module")
def server():
    async def make():
        return SMTPServer(handler=object(), listener=ListenerConfig("mx", False, None))

    return asyncio.run(make())


def both(server, arg):
    try:
        full = SMTP._getaddr(server, arg)
    except Exception:  # noqa: BLE001 - the stdlib parser crashes on some input; ours reads a malformed address
        full = (None, None)
    return SMTPServer._getaddr(server, arg), full


@pytest.mark.parametrize("arg", PATHS)
def test_usual_paths_read_as_the_full_parser_reads_them(server, arg):
    ours, full = both(server, arg)
    assert ours == full


def test_the_fast_path_takes_the_usual_path_and_keeps_the_parameters(server):
    assert SMTPServer._getaddr(server, "<alice@example.test> SIZE=10") == ("alice@example.test", "SIZE=10")


@given(st.text(alphabet='ab.@<> "=\t[]()', max_size=24))
def test_any_path_reads_as_the_full_parser_reads_it(server, arg):
    if arg.lstrip().startswith("<@"):
        return  # source routes are refused before either parser (test_mx)
    ours, full = both(server, arg)
    assert ours == full
