"""FETCH and UID FETCH (RFC 9051 §6.4.5, §6.4.9; RFC 3516 BINARY; RFC 7162 §3.1.4 CHANGEDSINCE, §3.2.6 VANISHED)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailcore import store
from mailcore.imap import fetchdata, wire
from mailcore.imap.errors import Bad
from mailcore.imap.fetchdata import Section
from mailcore.imap.memo import Memo
from mailcore.imap.parser import Parser, SequenceSet
from mailcore.store import aio, rows

if TYPE_CHECKING:
    from mailcore.imap.selected import MailboxView
    from mailcore.imap.session import Session

_ITEM_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_TEXT = re.compile(rb"(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME)", re.IGNORECASE)
# RFC 9051 §6.4.5 macros.
MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
SIMPLE = {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ",
          "RFC822", "RFC822.HEADER", "RFC822.TEXT"}
SECTIONED = {"BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"}
SETS_SEEN = {"RFC822", "RFC822.TEXT", "BODY", "BINARY"}  # with a section: RFC 9051 §6.4.5
ENVELOPE_CACHE_SIZE = 100_000  # rendered ENVELOPEs kept per process (about 300 bytes each)
_ENVELOPES: Memo[tuple[int, int, bool], bytes] = Memo(ENVELOPE_CACHE_SIZE)
FLUSH_EVERY = 200  # messages per write, so a large FETCH streams instead of piling up
BODY_BATCH = 20  # messages (with their bytes) read per store call: one thread hop, bounded memory
MAX_LISTED_UIDS = 1_000  # beyond this many UIDs, reading the whole folder beats an IN (...) list
LIGHT_ITEMS = {"UID", "FLAGS", "MODSEQ", "ENVELOPE"}  # answered from the flag columns and the envelope cache


@dataclass
class Item:
    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None

    @property
    def needs_blob(self) -> bool:
        return self.section is not None or self.name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT")

    @property
    def sets_seen(self) -> bool:
        return self.name in SETS_SEEN and (self.section is not None or self.name.startswith("RFC822"))


async def cmd_FETCH(s: Session, p: Parser) -> str:
    """RFC 9051 §6.4.5."""
    await _fetch(s, p, uid_mode=False)
    return "FETCH completed"


async def cmd_UID_FETCH(s: Session, p: Parser) -> str:
    """RFC 9051 §6.4.9: UID FETCH always returns UID."""
    await _fetch(s, p, uid_mode=True)
    return "UID FETCH completed"


async def _fetch(s: Session, p: Parser, uid_mode: bool) -> None:
    view = s.selected
    assert view is not None
    p.sp()
    ranges = p.sequence_set()
    p.sp()
    items = parse_items(p)
    changed_since, vanished = _modifiers(s, p, uid_mode)
    p.end()
    if uid_mode and not any(i.name == "UID" for i in items):
        items.insert(0, Item("UID"))
    if changed_since is not None or any(i.name == "MODSEQ" for i in items):
        s.enabled.add("CONDSTORE")  # RFC 7162 §3.1: MODSEQ and CHANGEDSINCE enable CONDSTORE
        if not any(i.name == "MODSEQ" for i in items):
            items.append(Item("MODSEQ"))
    uids = view.resolve(ranges, uid_mode)
    if vanished:
        await _send_vanished(s, view, ranges, changed_since or 0)
    await _set_seen(s, view, uids, items)
    await _send_messages(s, view, uids, items, changed_since)


def parse_items(p: Parser) -> list[Item]:
    if p.peek(b"("):
        return p.parenthesised(lambda: _item(p), allow_empty=False)
    first = _item(p)
    if first.name in MACROS and first.section is None:
        return [Item(name) for name in MACROS[first.name]]
    return [first]


def _item(p: Parser) -> Item:
    found = _ITEM_NAME.match(p.data, p.pos)
    if not found:
        raise Bad(f"expected a FETCH item at position {p.pos}")
    p.pos = found.end()
    name = found.group(0).decode("ascii").upper()
    if p.peek(b"[") and name in SECTIONED:
        section = _section(p, binary=name.startswith("BINARY"))
        return Item(name, section, _partial(p) if name != "BINARY.SIZE" else None)
    if name not in SIMPLE:
        raise Bad(f"unknown FETCH item {name}")
    return Item(name)


def _section(p: Parser, binary: bool) -> Section:
    p.expect(b"[")
    section = Section()
    path: list[int] = []
    while p.data[p.pos : p.pos + 1].isdigit():
        path.append(p.nz_number())
        if not p.take(b"."):
            break
    section.path = tuple(path)
    found = _SECTION_TEXT.match(p.data, p.pos)
    if found and not binary:
        section.text = found.group(0).decode("ascii").upper()
        p.pos = found.end()
        if section.text == "MIME" and not path:
            raise Bad("MIME needs a part number")  # RFC 9051 §6.4.5
        if section.text.startswith("HEADER.FIELDS"):
            p.sp()
            section.fields = [f.decode("ascii", "replace").upper() for f in p.parenthesised(p.astring, False)]
    elif path and p.data[p.pos - 1 : p.pos] == b".":
        raise Bad("section number must not end with a dot")
    p.expect(b"]", "] ending the section")
    return section


def _partial(p: Parser) -> tuple[int, int] | None:
    if not p.take(b"<"):
        return None
    start = p.number()
    p.expect(b".")
    count = p.nz_number()
    p.expect(b">")
    return start, count


def _modifiers(s: Session, p: Parser, uid_mode: bool) -> tuple[int | None, bool]:
    """RFC 7162 §3.1.4.1 CHANGEDSINCE and §3.2.6 VANISHED (UID FETCH, QRESYNC enabled)."""
    if not p.take(b" "):
        return None, False
    changed_since, vanished = None, False

    def modifier() -> None:
        nonlocal changed_since, vanished
        word = p.keyword()
        if word == "CHANGEDSINCE":
            p.sp()
            changed_since = p.number(2**63 - 1)
        elif word == "VANISHED":
            vanished = True
        else:
            raise Bad(f"unknown FETCH modifier {word}")

    p.parenthesised(modifier, allow_empty=False)
    if vanished and (not uid_mode or changed_since is None or "QRESYNC" not in s.enabled):
        raise Bad("VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled")  # RFC 7162 §3.2.6
    return changed_since, vanished


async def _send_vanished(s: Session, view: MailboxView, ranges: SequenceSet, since: int) -> None:
    gone = await aio.run(store.expunged_since, view.ref, since)
    top = view.uidnext
    chosen = [uid for uid in gone if any(min(a or top, b or top) <= uid <= max(a or top, b or top) for a, b in ranges)]
    if chosen:
        s.untagged(f"VANISHED (EARLIER) {wire.sequence_set(chosen)}")


async def _set_seen(s: Session, view: MailboxView, uids: list[int], items: list[Item]) -> None:
    """RFC 9051 §6.4.5: fetching a body section (not .PEEK) sets \\Seen, in a read-write mailbox."""
    if view.readonly or not uids or not any(item.sets_seen for item in items):
        return
    result = await aio.run(store.store_flags, view.ref, uids, ["\\Seen"], store.FLAG_ADD)
    if result.changed and not any(item.name == "FLAGS" for item in items):
        items.append(Item("FLAGS"))
    for change in result.changed:
        view.own_changes[change.uid] = change.modseq


async def _send_messages(
    s: Session, view: MailboxView, uids: list[int], items: list[Item], changed_since: int | None
) -> None:
    if not uids:
        return
    if all(item.name in LIGHT_ITEMS for item in items):
        await _send_light(s, view, uids, items, changed_since)
        return
    needs_blob = any(item.needs_blob for item in items)
    structure = needs_blob or any(item.name in ("BODY", "BODYSTRUCTURE") for item in items)
    count = 0
    for start in range(0, len(uids), BODY_BATCH if needs_blob else len(uids)):
        chunk = uids[start : start + BODY_BATCH] if needs_blob else uids
        if needs_blob:
            found = await aio.run(rows.fetch_with_bytes, view.ref, chunk, changed_since)
        else:
            found = [(m, b"") for m in await aio.run(store.fetch, view.ref, chunk, changed_since, structure)]
        for message, raw in found:
            seq = view.seq_of(message.uid)
            if seq is None:
                continue
            s.raw(b"* %d FETCH (" % seq + b" ".join(render(s, item, message, raw) for item in items) + b")\r\n")
            count += 1
            if count % FLUSH_EVERY == 0:
                await s.flush()


async def _send_light(
    s: Session, view: MailboxView, uids: list[int], items: list[Item], changed_since: int | None
) -> None:
    """UID, FLAGS, MODSEQ and ENVELOPE: flag columns only, envelopes from the cache (the store for misses)."""
    everything = len(uids) == len(view.uids)  # resolved from the view: the same UIDs
    found = await aio.run(rows.flags, view.ref, None if everything else uids, changed_since)
    envelopes: dict[int, bytes] = {}
    if any(item.name == "ENVELOPE" for item in items):
        envelopes = await _envelopes(s, view, [row.uid for row in found])
    for count, row in enumerate(found, 1):
        seq = view.seq_of(row.uid)
        if seq is None:
            continue
        data = b" ".join(_light_item(view, item.name, row, envelopes) for item in items)
        s.raw(b"* %d FETCH (" % seq + data + b")\r\n")
        if count % FLUSH_EVERY == 0:
            await s.flush()


def _light_item(view: MailboxView, name: str, row: rows.FlagsRow, envelopes: dict[int, bytes]) -> bytes:
    if name == "FLAGS":
        return b"FLAGS (" + view.flag_text(row.uid, row.flags).encode() + b")"
    if name == "UID":
        return b"UID %d" % row.uid
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % row.modseq
    return b"ENVELOPE " + envelopes[row.uid]


async def _envelopes(s: Session, view: MailboxView, uids: list[int]) -> dict[int, bytes]:
    """Rendered ENVELOPEs of `uids`; the ones not cached are read from the store in one call."""
    mailbox_id, utf8 = view.ref.mailbox_id, s.utf8
    known, missing = _ENVELOPES.split((mailbox_id, uid, utf8) for uid in uids)
    result = {uid: value for (_, uid, _), value in known.items()}
    if missing:
        wanted = {uid for _, uid, _ in missing}
        listed = sorted(wanted) if len(wanted) <= MAX_LISTED_UIDS else None  # many: read the folder, not a list
        for message in await aio.run(store.fetch, view.ref, listed, None, False):
            if message.uid in wanted:
                result[message.uid] = _envelope(s, message)
    return result


def render(s: Session, item: Item, message: store.MessageInfo, raw: bytes) -> bytes:
    """One `NAME value` pair of a FETCH response (RFC 9051 §7.5.2)."""
    name = item.name
    if name == "FLAGS":
        assert s.selected is not None
        return b"FLAGS (" + s.selected.flag_text(message.uid, message.flags).encode() + b")"
    if name == "UID":
        return b"UID %d" % message.uid
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % message.modseq
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + wire.date_time(message.internal_date)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % message.size
    if name == "ENVELOPE":
        return b"ENVELOPE " + _envelope(s, message)
    if item.section is None:
        return _unsectioned(s, name, message, raw)
    return _sectioned(item, message, raw)


def _envelope(s: Session, message: store.MessageInfo) -> bytes:
    """ENVELOPE bytes, cached: a (folder, UID) pair never names another message (RFC 9051 §2.3.1.1)."""
    assert s.selected is not None
    key = (s.selected.ref.mailbox_id, message.uid, s.utf8)
    cached = _ENVELOPES.get(key)
    return cached if cached is not None else _ENVELOPES.put(key, fetchdata.envelope(message.envelope, s.utf8))


def _unsectioned(s: Session, name: str, message: store.MessageInfo, raw: bytes) -> bytes:
    if name in ("BODY", "BODYSTRUCTURE"):
        extended = name == "BODYSTRUCTURE"
        return name.encode() + b" " + fetchdata.body_structure(message.bodystructure, extended, s.utf8)
    section = {"RFC822": Section(), "RFC822.HEADER": Section(text="HEADER"), "RFC822.TEXT": Section(text="TEXT")}[name]
    data = fetchdata.section_bytes(raw, message.bodystructure, section)
    return name.encode() + b" " + wire.literal(data or b"")


def _sectioned(item: Item, message: store.MessageInfo, raw: bytes) -> bytes:
    section = item.section
    assert section is not None
    base = item.name.replace(".PEEK", "")
    if item.name.startswith("BINARY"):
        data = fetchdata.binary_bytes(raw, message.bodystructure, section.path)
        if base == "BINARY.SIZE":
            return f"BINARY.SIZE[{section.label()}] {len(data or b'')}".encode()
    else:
        data = fetchdata.section_bytes(raw, message.bodystructure, section)
    label = f"{base}[{section.label()}]"
    if item.partial is not None and data is not None:
        start, count = item.partial
        data = data[start : start + count]
        label += f"<{start}>"
    if data is None:
        return label.encode() + b" NIL"
    if base == "BINARY" and b"\x00" in data:
        return label.encode() + b" ~" + wire.literal(data)  # RFC 3516 §4.2 literal8
    return label.encode() + b" " + wire.literal(data)
