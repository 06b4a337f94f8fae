"""The command parser (RFC 9051 §9 formal syntax): handlers pull the grammar elements they expect.

A command arrives as raw bytes with its literals inline (`{n}` or `{n+}`, CRLF,
then n bytes: RFC 9051 §4.3, RFC 7888 LITERAL+); the final CRLF is removed.
Every error is a `Bad` carrying the reason, so the session answers `BAD` and goes on.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import TypeVar

from mailcore.imap.errors import Bad

T = TypeVar("T")

MAX_NESTING = 16  # parenthesised lists and search keys (a named limit against stack exhaustion)
MAX_SEQUENCE_RANGES = 10_000  # comma-separated ranges in one sequence set
MAX_NUMBER = 2**32 - 1  # RFC 9051 §9 number: unsigned 32-bit
MAX_NUMBER64 = 2**63 - 1  # RFC 7162 §7 mod-sequence-value

# RFC 9051 §9: atom-specials are ( ) { SP CTL list-wildcards quoted-specials resp-specials.
_ATOM = re.compile(rb"[^(){ \x00-\x1f\x7f%*\"\\\]]+")
_ASTRING_ATOM = re.compile(rb"[^(){ \x00-\x1f\x7f%*\"\\]+")
_LIST_MAILBOX = re.compile(rb"[^(){ \x00-\x1f\x7f\"\\]+")  # atom chars plus % * ]
_TAG = re.compile(rb"[^(){ \x00-\x1f\x7f%*\"\\+]+")
_NUMBER = re.compile(rb"[0-9]+")
_LITERAL = re.compile(rb"~?\{([0-9]{1,20})(\+?)\}\r\n")
_SEQ_RANGE = re.compile(rb"(\*|[0-9]+)(?::(\*|[0-9]+))?")
_DATE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})$")
_DATE_TIME = re.compile(r" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$")
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

# A sequence set: (first, last) ranges, with None for `*` (RFC 9051 §9 seq-range).
SequenceSet = list[tuple[int | None, int | None]]


class SavedResult(list[tuple[int | None, int | None]]):
    """RFC 5182 `$`: the saved SEARCH result, as UID ranges whether the command counts in UIDs or not."""

    def __repr__(self) -> str:
        return "$" + super().__repr__()


def uid_ranges(uids: list[int]) -> SavedResult:
    """Ascending UIDs as ranges of consecutive numbers."""
    ranges = SavedResult()
    for uid in uids:
        if ranges and ranges[-1][1] == uid - 1:
            ranges[-1] = (ranges[-1][0], uid)
        else:
            ranges.append((uid, uid))
    return ranges
SAVED_RESULT = "$"  # RFC 5182 search result reference (not supported: BAD)


class Parser:
    """A cursor over one command's bytes."""

    def __init__(self, data: bytes, saved: list[int] | None = None) -> None:
        self.data = data
        self.pos = 0
        self.depth = 0
        self.saved = saved or []  # RFC 5182: the UIDs `$` stands for in this command

    # Low level ------------------------------------------------------------------

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self, text: bytes) -> bool:
        return self.data.startswith(text, self.pos)

    def peek_upper(self, word: str) -> bool:
        return self.data[self.pos : self.pos + len(word)].upper() == word.encode("ascii")

    def take(self, text: bytes) -> bool:
        if self.peek(text):
            self.pos += len(text)
            return True
        return False

    def expect(self, text: bytes, what: str | None = None) -> None:
        if not self.take(text):
            raise Bad(f"expected {what or text.decode('ascii')!s} at position {self.pos}")

    def sp(self) -> None:
        self.expect(b" ", "a space")

    def end(self) -> None:
        """RFC 9051 §9: the command ends here (its CRLF was removed by the reader)."""
        if not self.at_end():
            raise Bad(f"unexpected characters at end of command: {self._snippet()}")

    def _snippet(self) -> str:
        text = self.data[self.pos : self.pos + 20].decode("ascii", "replace")
        return "".join(c if c.isprintable() else "?" for c in text).strip()

    def _match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        found = pattern.match(self.data, self.pos)
        if not found or not found.group(0):
            raise Bad(f"expected {what} at position {self.pos}")
        self.pos = found.end()
        return found.group(0)

    # Elements -------------------------------------------------------------------

    def tag(self) -> str:
        return self._match(_TAG, "a tag").decode("ascii")

    def atom(self) -> str:
        return self._match(_ATOM, "an atom").decode("ascii", "replace")

    def keyword(self) -> str:
        """An atom, upper-cased: command names, FETCH items, search keys."""
        return self.atom().upper()

    def number(self, limit: int = MAX_NUMBER) -> int:
        value = int(self._match(_NUMBER, "a number"))
        if value > limit:
            raise Bad("number out of range")
        return value

    def nz_number(self) -> int:
        value = self.number()
        if value == 0:
            raise Bad("zero is not a valid number here")
        return value

    def quoted(self) -> bytes:
        """RFC 9051 §4.3 quoted string: `\\` escapes only `"` and `\\`; no CR or LF."""
        self.expect(b'"', "a quoted string")
        out = bytearray()
        while True:
            if self.at_end():
                raise Bad("unterminated quoted string")
            char = self.data[self.pos]
            self.pos += 1
            if char == 0x22:
                return bytes(out)
            if char == 0x5C:
                if self.at_end() or self.data[self.pos] not in b'"\\':
                    raise Bad("invalid escape in quoted string")
                char = self.data[self.pos]
                self.pos += 1
            elif char in (0x0D, 0x0A, 0x00):
                raise Bad("CR, LF or NUL in quoted string")
            out.append(char)

    def literal(self) -> bytes:
        found = _LITERAL.match(self.data, self.pos)
        if not found:
            raise Bad(f"expected a literal at position {self.pos}")
        size = int(found.group(1))
        start = found.end()
        if start + size > len(self.data):
            raise Bad("literal is shorter than announced")
        self.pos = start + size
        return self.data[start : start + size]

    def string(self) -> bytes:
        if self.peek(b'"'):
            return self.quoted()
        if self.peek(b"{") or self.peek(b"~{"):
            return self.literal()
        raise Bad(f"expected a string at position {self.pos}")

    def astring(self) -> bytes:
        if self.peek(b'"') or self.peek(b"{") or self.peek(b"~{"):
            return self.string()
        return self._match(_ASTRING_ATOM, "an atom or string")

    def astring_text(self) -> str:
        return _utf8(self.astring())

    def nstring(self) -> bytes | None:
        if self.peek_upper("NIL") and not _ATOM.match(self.data, self.pos + 3):
            self.pos += 3
            return None
        return self.string()

    def list_mailbox(self) -> str:
        """RFC 9051 §6.3.9 LIST pattern: an atom that may hold `%` and `*`, or a string."""
        if self.peek(b'"') or self.peek(b"{"):
            return _utf8(self.string())
        return _utf8(self._match(_LIST_MAILBOX, "a mailbox pattern"))

    def parenthesised(self, item: Callable[[], T], allow_empty: bool = True) -> list[T]:
        """`(` item *(SP item) `)`, with the nesting depth bounded (MAX_NESTING)."""
        self.expect(b"(")
        self.enter()
        items: list[T] = []
        try:
            if self.take(b")"):
                if not allow_empty:
                    raise Bad("empty list is not allowed here")
                return items
            items.append(item())
            while self.take(b" "):
                items.append(item())
            self.expect(b")")
        finally:
            self.leave()
        return items

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise Bad(f"nesting deeper than {MAX_NESTING} levels")

    def leave(self) -> None:
        self.depth -= 1

    def flag(self) -> str:
        """RFC 9051 §9 flag: `\\` atom for system flags, else a keyword atom."""
        if self.take(b"\\"):
            if self.take(b"*"):
                return "\\*"
            name = self.atom()
            return "\\" + name[:1].upper() + name[1:].lower()
        return self.atom()

    def flag_list(self) -> list[str]:
        if self.peek(b"("):
            return self.parenthesised(self.flag)
        flags = [self.flag()]
        while self.peek(b" ") and not self.peek(b" (") and self._next_is_flag():
            self.sp()
            flags.append(self.flag())
        return flags

    def _next_is_flag(self) -> bool:
        return bool(_ATOM.match(self.data, self.pos + 1)) or self.data[self.pos + 1 : self.pos + 2] == b"\\"

    def sequence_set(self) -> SequenceSet:
        """RFC 9051 §9 sequence-set: ranges separated by commas; `*` is the largest number in use."""
        if self.take(b"$"):
            return uid_ranges(self.saved)  # RFC 5182 §2.1
        ranges: SequenceSet = []
        while True:
            found = _SEQ_RANGE.match(self.data, self.pos)
            if not found:
                raise Bad(f"expected a sequence set at position {self.pos}")
            self.pos = found.end()
            first = _seq_number(found.group(1))
            last = _seq_number(found.group(2)) if found.group(2) else first
            ranges.append((first, last))
            if len(ranges) > MAX_SEQUENCE_RANGES:
                raise Bad(f"sequence set has more than {MAX_SEQUENCE_RANGES} ranges")
            if not self.take(b","):
                return ranges

    def date(self) -> dt.date:
        """RFC 9051 §9 date: `d-Mon-yyyy`, optionally quoted."""
        text = _utf8(self.astring())
        found = _DATE.match(text)
        if not found:
            raise Bad("invalid date, expected d-Mon-yyyy")
        day, month, year = found.groups()
        try:
            return dt.date(int(year), _month(month), int(day))
        except ValueError as err:
            raise Bad("invalid date") from err

    def date_time(self) -> dt.datetime:
        """RFC 9051 §9 date-time: `"dd-Mon-yyyy hh:mm:ss +zzzz"`."""
        text = _utf8(self.quoted())
        found = _DATE_TIME.match(text)
        if not found:
            raise Bad("invalid date-time")
        day, month, year, hour, minute, second, sign, zh, zm = found.groups()
        offset = dt.timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == "-" else 1)
        try:
            return dt.datetime(
                int(year), _month(month), int(day), int(hour), int(minute), int(second), tzinfo=dt.timezone(offset)
            )
        except ValueError as err:
            raise Bad("invalid date-time") from err


def _seq_number(text: bytes) -> int | None:
    if text == b"*":
        return None
    value = int(text)
    if value == 0 or value > MAX_NUMBER:
        raise Bad("invalid sequence number")
    return value


def _month(name: str) -> int:
    try:
        return [m.lower() for m in MONTHS].index(name.lower()) + 1
    except ValueError as err:
        raise Bad("invalid month") from err


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Bad("string is not valid UTF-8") from err
