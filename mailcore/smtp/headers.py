"""Trace and result header fields the SMTP server adds: Received, Return-Path, Authentication-Results.

All functions take and return raw message bytes with CRLF line ends.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailcore.mime.headers import first, parse_fields, raw_fields, split_header

CRLF = b"\r\n"
MAX_HELO_ECHO = 255  # a client's EHLO name copied into Received, cut to a domain's length
_AUTHSERV_ID = re.compile(rb"^\s*([^\s;()]+)")


@dataclass(frozen=True)
class TraceInfo:
    """What Received needs to know about the session (RFC 5321 §4.4)."""

    helo: str
    ip: str
    session_id: str
    tls: bool
    authenticated: bool
    smtputf8: bool
    login: str = ""  # the authenticated identity, for Authentication-Results auth= (RFC 8601 §2.7.4)


def protocol_name(trace: TraceInfo) -> str:
    """The `with` keyword: RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA), RFC 6531 §3.7.4 (UTF8SMTP...)."""
    base = "UTF8SMTP" if trace.smtputf8 else "ESMTP"
    return base + ("S" if trace.tls else "") + ("A" if trace.authenticated else "")


def clean(text: str, limit: int = MAX_HELO_ECHO) -> str:
    """Client-supplied text made safe inside a header field: no controls, no comment breakers."""
    return "".join(c for c in text if c.isprintable() and c not in "()\\")[:limit]


def received(trace: TraceInfo, hostname: str, recipients: list[str], when: dt.datetime | None = None) -> bytes:
    """A Received field (RFC 5321 §4.4 Time-stamp-line); `for` only with a single recipient."""
    stamp = email.utils.format_datetime(when or dt.datetime.now(dt.UTC))
    parts = [
        f"Received: from {clean(trace.helo) or 'unknown'} ([{trace.ip}])",
        f"\tby {hostname} with {protocol_name(trace)} id {trace.session_id}",
    ]
    if len(recipients) == 1:
        parts.append(f"\tfor <{clean(recipients[0])}>; {stamp}")
    else:
        parts[-1] += f"; {stamp}"
    return "\r\n".join(parts).encode("utf-8") + CRLF


def return_path(sender: str) -> bytes:
    """RFC 5321 §4.4: the delivering server records the envelope sender (`<>` for bounces)."""
    return f"Return-Path: <{sender}>".encode() + CRLF


def authentication_results(hostname: str, results: Iterable[str]) -> bytes:
    """RFC 8601 §2.2: `authserv-id; method=result props; ...` (or `none` when nothing was checked)."""
    items = list(results) or ["none"]
    return ("Authentication-Results: " + hostname + ";" + ";".join(f"\r\n\t{item}" for item in items)).encode(
        "utf-8"
    ) + CRLF


def remove_fields(raw: bytes, should_remove: Callable[[str, bytes], bool]) -> bytes:
    """`raw` without the header fields for which `should_remove(lowercased name, field)` is true (`raw`
    itself, not a copy, when there are none)."""
    end, _body = split_header(raw)
    fields = raw_fields(raw[:end])
    kept = [field for name, field in fields if not should_remove(name, field)]
    if len(kept) == len(fields):
        return raw
    return b"".join([*kept, memoryview(raw)[end:]])


BLIND_COPY_FIELDS = ("bcc", "resent-bcc")


def remove_blind_copies(raw: bytes) -> bytes:
    """RFC 5322 §3.6.3: Bcc (and Resent-Bcc, §3.6.6) name recipients the others must not see. A client that
    leaves the field in would show them to everyone; the submission server removes it, as Postfix does."""
    return remove_fields(raw, lambda name, _field: name in BLIND_COPY_FIELDS)


def remove_forged_results(raw: bytes, hostname: str) -> bytes:
    """RFC 8601 §5: delete Authentication-Results that claim our authserv-id (and stale Return-Path)."""
    ours = hostname.lower().encode()

    def forged(name: str, field: bytes) -> bool:
        if name == "return-path":
            return True
        if name != "authentication-results":
            return False
        match = _AUTHSERV_ID.match(field.partition(b":")[2])
        return bool(match and match.group(1).lower() == ours)

    return remove_fields(raw, forged)


def header_values(raw: bytes) -> list[tuple[str, str]]:
    end, _body = split_header(raw)
    return parse_fields(raw[:end])


def add_missing_identity(raw: bytes, hostname: str, when: dt.datetime | None = None) -> bytes:
    """RFC 6409 §8.2, §8.3: add Message-ID and Date when the client left them out."""
    values = header_values(raw)
    added = b""
    if first(values, "date") is None:
        added += b"Date: " + email.utils.format_datetime(when or dt.datetime.now(dt.UTC)).encode() + CRLF
    if first(values, "message-id") is None:
        added += f"Message-ID: <{secrets.token_hex(16)}@{hostname}>".encode() + CRLF
    if not added:
        return raw
    end, _body = split_header(raw)
    return b"".join([*(field for _name, field in raw_fields(raw[:end])), added, memoryview(raw)[end:]])
