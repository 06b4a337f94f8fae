"""Response syntax (RFC 9051 §4, §7): strings, NIL, lists, as bytes ready for the wire."""
from __future__ import annotations

import datetime as dt

from mailcore.imap.parser import MONTHS

_SAFE_QUOTED = frozenset(range(0x20, 0x7F))
_QUOTED_MAX = 200  # longer strings go as literals (easier on clients)


def string(value: str | bytes | None, utf8: bool = False) -> bytes:
    """A quoted string when possible, else a literal; None is NIL (RFC 9051 §4.3, §4.5)."""
    if value is None:
        return b"NIL"
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if len(data) <= _QUOTED_MAX and _quotable(data, utf8):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def _quotable(data: bytes, utf8: bool) -> bool:
    if all(byte in _SAFE_QUOTED for byte in data):
        return True
    if not utf8 or b"\r" in data or b"\n" in data or b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def astring(value: str, utf8: bool = False) -> bytes:
    """An atom when the name is a plain atom (e.g. INBOX), else a string."""
    data = value.encode("utf-8")
    if data and all(0x21 <= b < 0x7F and b not in b'(){%*"\\]' for b in data):
        return data
    return string(data, utf8)


def plist(items: list[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def date_time(value: dt.datetime) -> bytes:
    """RFC 9051 §9 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz"."""
    offset = value.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    date = f"{value.day:02d}-{MONTHS[value.month - 1]}-{value.year:04d}"
    text = f"{date} {value:%H:%M:%S} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    return b'"' + text.encode("ascii") + b'"'


def sequence_set(numbers: list[int]) -> str:
    """Compact `1:3,7` form of ascending numbers (RFC 9051 §9 sequence-set)."""
    parts: list[str] = []
    start = previous = None
    for number in numbers:
        if previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None:
            parts.append(f"{start}" if start == previous else f"{start}:{previous}")
        start = previous = number
    if start is not None:
        parts.append(f"{start}" if start == previous else f"{start}:{previous}")
    return ",".join(parts)
