"""SEARCH keys (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 7162 §3.1.5 MODSEQ): parse into a tree, then match messages.

Keys that need the message text (BODY, TEXT, HEADER and the address keys on
fields not in the envelope) read the blob once per message; the others use the
row the store returns (flags, dates, size, cached envelope).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailcore import store
from mailcore.imap.errors import Bad
from mailcore.imap.parser import Parser, SequenceSet
from mailcore.mime.headers import decode_words, parse_fields
from mailcore.mime.text import extract_text
from mailcore.store.rows import ColumnFilter

# Keys with no argument: the flag each needs set (True) or clear (False).
FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
}
STRING_KEYS = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"}
DATE_KEYS = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"}
ARGUMENT_KEYS = STRING_KEYS | DATE_KEYS | {
    "KEYWORD", "UNKEYWORD", "LARGER", "SMALLER", "UID", "HEADER", "NOT", "OR", "MODSEQ",
}
NEEDS_TEXT = {"BODY", "TEXT", "HEADER", "BCC"}


@dataclass
class Key:
    name: str
    args: list[Any] = field(default_factory=list)


@dataclass
class Candidate:
    """One message under test; `raw` is filled in only when a key needs the text."""

    seq: int
    info: store.MessageInfo
    raw: bytes = b""
    recent: bool = False  # RFC 3501 §2.3.2, as the searching session sees it


def parse_program(p: Parser) -> list[Key]:
    """search-key *(SP search-key): the keys are ANDed (RFC 9051 §6.4.4)."""
    keys = [parse_key(p)]
    while p.take(b" "):
        keys.append(parse_key(p))
    return keys


def parse_key(p: Parser) -> Key:
    if p.peek(b"("):
        return Key("AND", p.parenthesised(lambda: _and(p), allow_empty=False))
    if p.data[p.pos : p.pos + 1].isdigit() or p.peek(b"*") or p.peek(b"$"):
        return Key("SEQ", [p.sequence_set()])
    name = p.keyword()
    if name in FLAG_KEYS or name in ("ALL", "OLD", "RECENT", "NEW"):
        return Key(name)
    if name not in ARGUMENT_KEYS:
        raise Bad(f"unknown search key {name}")
    p.sp()
    if name in STRING_KEYS:
        return Key(name, [p.astring().decode("utf-8", "replace").casefold()])
    if name in DATE_KEYS:
        return Key(name, [p.date()])
    if name in ("KEYWORD", "UNKEYWORD"):
        return Key(name, [p.flag()])
    if name in ("LARGER", "SMALLER"):
        return Key(name, [p.number()])
    if name == "UID":
        return Key(name, [p.sequence_set()])
    if name == "HEADER":
        field_name = p.astring().decode("ascii", "replace").lower()
        p.sp()
        return Key(name, [field_name, p.astring().decode("utf-8", "replace").casefold()])
    return _compound(p, name)


def _compound(p: Parser, name: str) -> Key:
    if name in ("NOT", "OR"):
        p.enter()
        try:
            keys = [parse_key(p)]
            if name == "OR":
                p.sp()
                keys.append(parse_key(p))
        finally:
            p.leave()
        return Key(name, keys)
    if name == "MODSEQ":  # RFC 7162 §3.1.5: MODSEQ [entry-name entry-type] mod-sequence-valzer
        if p.peek(b'"'):
            p.quoted()
            p.sp()
            p.atom()
            p.sp()
        return Key(name, [p.number(2**63 - 1)])
    raise Bad(f"unknown search key {name}")


def _and(p: Parser) -> Key:
    return parse_key(p)


# Keys answered from the UID and sequence number alone, after the column filter.
NUMBER_KEYS = {"ALL", "OLD", "RECENT", "SEQ", "UID"}


def column_plan(keys: list[Key]) -> tuple[ColumnFilter, list[Key]] | None:
    """Split ANDed keys into a filter the database applies and keys matched on UIDs (and Subject) here.

    None when some key needs more (text, keywords, NOT/OR, MODSEQ): the caller then
    matches every message in full.
    """
    where, rest = ColumnFilter(), []
    pending = list(keys)
    while pending:
        key = pending.pop()
        name = key.name
        if name == "AND":
            pending.extend(key.args)
        elif name == "NEW":
            where.flags_clear.append("\\Seen")
            rest.append(Key("RECENT"))
        elif name in FLAG_KEYS:
            flag, wanted = FLAG_KEYS[name]
            (where.flags_set if wanted else where.flags_clear).append(flag)
        elif name == "LARGER":
            where.larger_than.append(key.args[0])
        elif name == "SMALLER":
            where.smaller_than.append(key.args[0])
        elif name in DATE_KEYS:
            _plan_date(where, name, key.args[0])
        elif name in NUMBER_KEYS or name == "SUBJECT":
            rest.append(key)
        else:
            return None
    return where, rest


def _plan_date(where: ColumnFilter, name: str, day: dt.date) -> None:
    """RFC 9051 §6.4.4 date keys as whole-day bounds (the same comparison as `_date_match`)."""
    since, before = (where.sent_since, where.sent_before) if name.startswith("SENT") else (
        where.internal_since, where.internal_before)
    kind = name.removeprefix("SENT")
    if kind in ("SINCE", "ON"):
        since.append(day)
    if kind == "ON":
        before.append(day + dt.timedelta(days=1))
    if kind == "BEFORE":
        before.append(day)


def number_match(key: Key, seq: int, uid: int, resolve: Resolver, recent: set[int]) -> bool:
    """A key of NUMBER_KEYS (or SUBJECT, checked by the caller) for one message."""
    if key.name in ("RECENT", "OLD"):
        return (uid in recent) == (key.name == "RECENT")
    if key.name == "SEQ":
        return seq in resolve(key.args[0], False)
    if key.name == "UID":
        return uid in resolve(key.args[0], True)
    return True


def walk(keys: list[Key]) -> list[Key]:
    out: list[Key] = []
    for key in keys:
        out.append(key)
        if key.name in ("AND", "NOT", "OR"):
            out.extend(walk(key.args))
    return out


def needs_text(keys: list[Key]) -> bool:
    return any(key.name in NEEDS_TEXT for key in walk(keys))


Resolver = Callable[[SequenceSet, bool], set[int]]


def matches(keys: list[Key], candidate: Candidate, resolve: Resolver) -> bool:
    return all(_match(key, candidate, resolve) for key in keys)


def _match(key: Key, c: Candidate, resolve: Resolver) -> bool:
    name, info = key.name, c.info
    if name in FLAG_KEYS:
        flag, wanted = FLAG_KEYS[name]
        return (flag in info.flags) == wanted
    if name == "ALL":
        return True
    if name in ("RECENT", "OLD"):
        return c.recent == (name == "RECENT")
    if name == "NEW":  # RFC 3501 §6.4.4: "RECENT UNSEEN"
        return c.recent and "\\Seen" not in info.flags
    if name in ("AND", "NOT", "OR"):
        results = [_match(k, c, resolve) for k in key.args]
        return all(results) if name == "AND" else (not results[0]) if name == "NOT" else any(results)
    if name == "KEYWORD":
        return key.args[0] in info.flags
    if name == "UNKEYWORD":
        return key.args[0] not in info.flags
    if name == "LARGER":
        return info.size > key.args[0]
    if name == "SMALLER":
        return info.size < key.args[0]
    if name == "SEQ":
        return c.seq in resolve(key.args[0], False)
    if name == "UID":
        return info.uid in resolve(key.args[0], True)
    if name == "MODSEQ":
        return info.modseq >= key.args[0]
    if name in DATE_KEYS:
        return _date_match(name, key.args[0], info)
    return _text_match(key, c)


def _date_match(name: str, day: dt.date, info: store.MessageInfo) -> bool:
    """RFC 9051 §6.4.4: dates compare without time or timezone (the internal date's own, the Date: header's)."""
    if name.startswith("SENT"):
        if info.sent_date is None:
            return False
        value = info.sent_date.date()
        name = name[4:]
    else:
        value = info.internal_date.date()
    return value < day if name == "BEFORE" else value == day if name == "ON" else value >= day


def _text_match(key: Key, c: Candidate) -> bool:
    name, needle = key.name, key.args[-1]
    if name == "SUBJECT":
        return needle in decode_words(c.info.envelope.get("subject") or "").casefold()
    if name in ("FROM", "TO", "CC"):
        return needle in _addresses(c.info.envelope.get(name.lower()) or []).casefold()
    headers = header_text(c.raw, c.info.bodystructure)
    if name == "BCC":
        return any(needle in value.casefold() for field_name, value in headers if field_name == "bcc")
    if name == "HEADER":
        return any(needle in value.casefold() for field_name, value in headers if field_name == key.args[0])
    body = extract_text(c.raw, c.info.bodystructure).casefold()
    if name == "BODY":
        return needle in body
    return needle in body or any(needle in f"{n}: {v}".casefold() for n, v in headers)  # TEXT


def header_text(raw: bytes, structure: dict[str, Any]) -> list[tuple[str, str]]:
    """The top-level header fields as (lowercased name, value with encoded-words decoded)."""
    return [(name, decode_words(value)) for name, value in parse_fields(raw[: structure["header_end"]])]


def _addresses(entries: list[list[str | None]]) -> str:
    parts = []
    for name, _adl, mailbox, host in entries:
        display = decode_words(name) if name else ""
        parts.append(f"{display} <{mailbox or ''}@{host or ''}>")
    return ", ".join(parts)
