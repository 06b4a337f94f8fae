"""Authenticated state: SELECT, EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, NAMESPACE, STATUS, APPEND.

RFC 9051 §6.3; RFC 3501 §6.3.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from mailcore import store
from mailcore.imap import wire
from mailcore.imap.errors import Bad, No
from mailcore.imap.parser import Parser, SequenceSet
from mailcore.imap.selected import MailboxView
from mailcore.store import aio, recent

if TYPE_CHECKING:
    from mailcore.imap.session import Session

SYSTEM_FLAGS = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"
# RFC 9051 §6.3.11 STATUS items (RFC 8438 SIZE, RFC 7162 HIGHESTMODSEQ).
STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "RECENT", "SIZE", "HIGHESTMODSEQ", "DELETED")
COUNTED_STATUS_ITEMS = {"RECENT": recent.count_recent, "DELETED": recent.count_deleted}  # need a count query


async def cmd_SELECT(s: Session, p: Parser) -> str:
    """RFC 9051 §6.3.2; RFC 3501 §6.3.1; RFC 7162 §3.1.8 (CONDSTORE) and §3.2.5 (QRESYNC)."""
    return await _select(s, p, readonly=False)


async def cmd_EXAMINE(s: Session, p: Parser) -> str:
    """RFC 9051 §6.3.3: SELECT, read-only."""
    return await _select(s, p, readonly=True)


async def _select(s: Session, p: Parser, readonly: bool) -> str:
    from mailcore.imap.session import AUTHENTICATED, SELECTED

    p.sp()
    name = s.mailbox_arg(p)
    qresync = _select_params(s, p)
    p.end()
    if s.selected is not None:
        s.selected.close()
        s.selected, s.state = None, AUTHENTICATED
        if "QRESYNC" in s.enabled or s.rev2:
            s.untagged("OK [CLOSED] previous mailbox closed")  # RFC 7162 §3.2.11, RFC 9051 §7.1
    ref = await aio.run(store.get_folder, s.account_id, name)
    view = MailboxView(ref, readonly)
    view.shows_recent = not s.rev2
    info = await view.load()
    _send_select_data(s, view, info)
    if qresync is not None and qresync[0] == ref.uidvalidity:
        await _qresync(s, view, qresync[1], qresync[2])
    s.selected, s.state = view, SELECTED
    mode = "READ-ONLY" if readonly else "READ-WRITE"
    return f"[{mode}] {'EXAMINE' if readonly else 'SELECT'} completed"


def _select_params(s: Session, p: Parser) -> tuple[int, int, list[tuple[int | None, int | None]] | None] | None:
    """`(CONDSTORE)` or `(QRESYNC (uidvalidity modseq [known-uids]))`; returns the QRESYNC data."""
    if not p.take(b" "):
        return None
    p.expect(b"(")
    result = None
    word = p.keyword()
    if word == "CONDSTORE":
        s.enabled.add("CONDSTORE")  # RFC 7162 §3.1: a CONDSTORE-enabling command
    elif word == "QRESYNC":
        if "QRESYNC" not in s.enabled:
            raise Bad("QRESYNC must be enabled first (RFC 7162 §3.2.3)")
        p.sp()
        p.expect(b"(")
        uidvalidity = p.nz_number()
        p.sp()
        modseq = p.number(2**63 - 1)
        known = None
        if p.take(b" "):
            known = p.sequence_set()
            if p.take(b" "):
                p.parenthesised(p.sequence_set)  # seq-match-data: accepted, not needed (we keep tombstones)
        p.expect(b")")
        result = (uidvalidity, modseq, known)
    else:
        raise Bad(f"unknown SELECT parameter {word}")
    p.expect(b")")
    return result


def _send_select_data(s: Session, view: MailboxView, info: store.FolderInfo) -> None:
    """RFC 9051 §6.3.2: FLAGS, EXISTS, PERMANENTFLAGS, UIDVALIDITY, UIDNEXT (and RECENT for IMAP4rev1)."""
    s.untagged(f"FLAGS ({SYSTEM_FLAGS})")
    s.untagged(f"{len(view.uids)} EXISTS")
    if not s.rev2:
        s.untagged(f"{len(view.recent)} RECENT")  # RFC 3501 §7.3.2
    permanent = "" if view.readonly else f"{SYSTEM_FLAGS} \\*"
    s.untagged(f"OK [PERMANENTFLAGS ({permanent})] flags that can be stored")
    s.untagged(f"OK [UIDVALIDITY {info.uidvalidity}] UIDs valid")
    s.untagged(f"OK [UIDNEXT {info.uidnext}] predicted next UID")
    if "CONDSTORE" in s.enabled:
        s.untagged(f"OK [HIGHESTMODSEQ {info.highestmodseq}] highest mod-sequence")  # RFC 7162 §3.1.2.1


async def _qresync(s: Session, view: MailboxView, modseq: int, known: SequenceSet | None) -> None:
    """RFC 7162 §3.2.5.1: VANISHED (EARLIER) for expunged UIDs, FETCH for changed messages."""
    vanished = await aio.run(store.expunged_since, view.ref, modseq)
    if known is not None:
        vanished = [uid for uid in vanished if any(_in_range(uid, r) for r in known)]
    if vanished:
        s.untagged(f"VANISHED (EARLIER) {wire.sequence_set(vanished)}")
    for message in await aio.run(store.fetch, view.ref, None, modseq, False):
        seq = view.seq_of(message.uid)
        if seq is not None:
            flags = view.flag_text(message.uid, message.flags)
            s.untagged(f"{seq} FETCH (UID {message.uid} FLAGS ({flags}) MODSEQ ({message.modseq}))")


def _in_range(uid: int, bounds: tuple[int | None, int | None]) -> bool:
    low, high = sorted((bounds[0] or 2**32, bounds[1] or 2**32))
    return low <= uid <= high


async def cmd_CREATE(s: Session, p: Parser) -> str:
    """RFC 9051 §6.3.4: a trailing delimiter is dropped; missing parents are created."""
    p.sp()
    name = s.mailbox_arg(p).rstrip(store.DELIMITER)
    p.end()
    if name.upper() == store.INBOX:
        raise No("INBOX always exists", "ALREADYEXISTS")
    await aio.run(store.create_folder, s.account_id, name)
    return "CREATE completed"


async def cmd_DELETE(s: Session, p: Parser) -> str:
    """RFC 9051 §6.3.5: INBOX cannot be deleted; subfolders stay."""
    p.sp()
    name = s.mailbox_arg(p)
    p.end()
    await aio.run(store.delete_folder, s.account_id, name)
    return "DELETE completed"


async def cmd_RENAME(s: Session, p: Parser) -> str:
    """RFC 9051 §6.3.6; renaming INBOX moves its messages (RFC 3501 §6.3.5)."""
    p.sp()
    old = s.mailbox_arg(p)
    p.sp()
    new = s.mailbox_arg(p)
    p.end()
    await aio.run(store.rename_folder, s.account_id, old, new)
    return "RENAME completed"


async def cmd_SUBSCRIBE(s: Session, p: Parser) -> str:
    """RFC 9051 §6.3.7."""
    p.sp()
    name = s.mailbox_arg(p)
    p.end()
    await aio.run(store.set_subscribed, s.account_id, name, True)
    return "SUBSCRIBE completed"


async def cmd_UNSUBSCRIBE(s: Session, p: Parser) -> str:
    """RFC 9051 §6.3.8."""
    p.sp()
    name = s.mailbox_arg(p)
    p.end()
    await aio.run(store.set_subscribed, s.account_id, name, False)
    return "UNSUBSCRIBE completed"


async def cmd_NAMESPACE(s: Session, p: Parser) -> str:
    """RFC 9051 §6.3.10 (RFC 2342): one personal namespace, no shared or other users' ones."""
    p.end()
    s.untagged(f'NAMESPACE (("" "{store.DELIMITER}")) NIL NIL')
    return "NAMESPACE completed"


async def cmd_STATUS(s: Session, p: Parser) -> str:
    """RFC 9051 §6.3.11."""
    p.sp()
    name = s.mailbox_arg(p)
    p.sp()
    items = [item.upper() for item in p.parenthesised(p.atom, allow_empty=False)]
    p.end()
    check_status_items(items)
    ref = await aio.run(store.get_folder, s.account_id, name)
    info = await aio.run(store.folder_info, ref)
    s.untagged(status_line(s, info, items, await status_counts(ref, items)))
    return "STATUS completed"


def check_status_items(items: list[str]) -> None:
    unknown = [item for item in items if item not in STATUS_ITEMS]
    if unknown:
        raise Bad(f"unknown STATUS item {unknown[0]}")


async def status_counts(ref: store.FolderRef, items: list[str]) -> dict[str, int]:
    """The STATUS values the folder row does not carry (RECENT, DELETED), only when asked for."""
    return {item: await aio.run(COUNTED_STATUS_ITEMS[item], ref) for item in items if item in COUNTED_STATUS_ITEMS}


def status_line(s: Session, info: store.FolderInfo, items: list[str], counts: dict[str, int]) -> bytes:
    check_status_items(items)
    values = {
        "MESSAGES": info.messages,
        "UIDNEXT": info.uidnext,
        "UIDVALIDITY": info.uidvalidity,
        "UNSEEN": info.unseen,
        "SIZE": info.size,
        "HIGHESTMODSEQ": info.highestmodseq,
        **counts,
    }
    pairs = " ".join(f"{item} {values[item]}" for item in dict.fromkeys(items))
    return b"STATUS " + s.mailbox_out(info.name) + f" ({pairs})".encode()


async def cmd_APPEND(s: Session, p: Parser) -> str:
    """RFC 9051 §6.3.12 with RFC 4315 APPENDUID; RFC 3516 literal8; flags and date optional."""
    p.sp()
    name = s.mailbox_arg(p)
    p.sp()
    flags: list[str] = []
    when: dt.datetime | None = None
    if p.peek(b"("):
        flags = [f for f in p.parenthesised(p.flag) if f not in ("\\Recent", "\\*")]
        p.sp()
    if p.peek(b'"'):
        when = p.date_time()
        p.sp()
    message = p.literal()
    p.end()
    try:
        ref = await aio.run(store.get_folder, s.account_id, name)
    except store.NoSuchFolder as err:
        raise No(str(err), "TRYCREATE") from err  # RFC 9051 §6.3.12
    appended = await aio.run_durable(store.append, ref, message, flags, when)
    return f"[APPENDUID {appended.uidvalidity} {appended.uid}] APPEND completed"
