"""Bytes on the wire: multi-line responses, dot-stuffing (RFC 1939 §3) and TOP's cut (RFC 1939 §7)."""
from __future__ import annotations

CRLF = b"\r\n"
TERMINATOR = b".\r\n"


def dot_stuff(data: bytes) -> bytes:
    """RFC 1939 §3: "If any line of the multi-line response begins with the termination octet, the line is
    "byte-stuffed" by pre-pending the termination octet to that line"; the body ends with CRLF."""
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if stuffed and not stuffed.endswith(CRLF):
        stuffed += CRLF
    return stuffed


def multiline(first: str, body: bytes) -> bytes:
    """A positive multi-line response: status line, the dot-stuffed body, the terminating dot line."""
    return f"+OK {first}\r\n".encode("ascii") + dot_stuff(body) + TERMINATOR


def listing(first: str, lines: list[str]) -> bytes:
    """A multi-line response of short ASCII lines (CAPA, LIST, UIDL)."""
    body = "".join(f"{line}\r\n" for line in lines).encode("ascii")
    return f"+OK {first}\r\n".encode("ascii") + body + TERMINATOR


def top_of(message: bytes, body_lines: int) -> bytes:
    """RFC 1939 §7 TOP: the header, the blank line, then the first `body_lines` lines of the body."""
    if message.startswith(CRLF):
        header_end = 2
    else:
        blank = message.find(b"\r\n\r\n")
        if blank < 0:
            return message
        header_end = blank + 4
    body = message[header_end:]
    position = 0
    for _ in range(body_lines):
        line_end = body.find(CRLF, position)
        if line_end < 0:
            position = len(body)
            break
        position = line_end + 2
    return message[:header_end] + body[:position]
