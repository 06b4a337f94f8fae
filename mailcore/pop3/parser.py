"""Command lines: keyword and arguments (RFC 1939 §3, RFC 2449 §3-4) and message-number arguments."""
from __future__ import annotations

import re
from dataclasses import dataclass

from mailcore.pop3.errors import Pop3Error

# RFC 2449 §4: "command lines ... MUST NOT exceed 255 octets, including the terminating CRLF."
MAX_COMMAND_LINE = 255
# RFC 2449 §4: "Each argument may be up to 40 characters long."
MAX_ARGUMENT = 40
# RFC 1939 §3: "Keywords are three or four characters long."
MAX_KEYWORD = 4
# RFC 5034 §4: the client's base64 SASL responses are not command lines; this is their limit.
MAX_SASL_LINE = 8192
# Commands whose argument is the rest of the line, spaces included (RFC 1939 §7: passwords may hold spaces).
REST_OF_LINE_COMMANDS = frozenset({"PASS"})
# RFC 5034 §4: a base64 initial response may be longer than 40 characters (the 255-octet line limit still holds).
LONG_ARGUMENT_COMMANDS = REST_OF_LINE_COMMANDS | {"AUTH"}

_KEYWORD = re.compile(r"[A-Za-z]{3,4}")
_MESSAGE_NUMBER = re.compile(r"[1-9][0-9]{0,9}")
_COUNT = re.compile(r"[0-9]{1,10}")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True)
class Command:
    verb: str
    rest: str  # everything after the keyword and one space

    @property
    def args(self) -> list[str]:
        return self.rest.split()


def strip_line_end(line: bytes) -> bytes:
    """The line without its CRLF (a bare LF is accepted too)."""
    if line.endswith(b"\r\n"):
        return line[:-2]
    return line[:-1] if line.endswith(b"\n") else line


def parse_command(line: bytes) -> Command:
    """RFC 1939 §3: a keyword, then arguments separated by single spaces, ended by CRLF."""
    if len(line) > MAX_COMMAND_LINE:
        raise Pop3Error(f"command line too long (limit {MAX_COMMAND_LINE} octets, RFC 2449 section 4)")
    text = _decode(strip_line_end(line))
    keyword, _, rest = text.partition(" ")
    if not keyword:
        raise Pop3Error("empty command")
    if not _KEYWORD.fullmatch(keyword):
        raise Pop3Error("unknown command")
    verb = keyword.upper()
    if verb not in LONG_ARGUMENT_COMMANDS and any(len(arg) > MAX_ARGUMENT for arg in rest.split()):
        raise Pop3Error(f"argument too long (limit {MAX_ARGUMENT} characters, RFC 2449 section 4)")
    return Command(verb, rest)


def _decode(raw: bytes) -> str:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as err:
        raise Pop3Error("command line must be printable ASCII") from err
    if not _PRINTABLE.fullmatch(text):
        raise Pop3Error("command line must be printable ASCII")
    return text


def message_number(arg: str) -> int:
    """RFC 1939 §5: a message-number is a positive decimal number."""
    if not _MESSAGE_NUMBER.fullmatch(arg):
        raise Pop3Error(f"invalid message number {arg[:MAX_ARGUMENT]!r}")
    return int(arg)


def line_count(arg: str) -> int:
    """RFC 1939 §7 TOP: the number of body lines, a non-negative decimal number."""
    if not _COUNT.fullmatch(arg):
        raise Pop3Error(f"invalid line count {arg[:MAX_ARGUMENT]!r}")
    return int(arg)


def expect_args(command: Command, least: int, most: int, usage: str) -> list[str]:
    args = command.args
    if not least <= len(args) <= most:
        raise Pop3Error(f"syntax: {usage}")
    return args
