"""Selected state: CHECK, CLOSE, UNSELECT, EXPUNGE, STORE, COPY, MOVE and their UID forms.

RFC 9051 §6.4; RFC 4315 (UIDPLUS); RFC 6851 (MOVE).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mailcore import store
from mailcore.imap import wire
from mailcore.imap.errors import Bad, No
from mailcore.imap.parser import Parser
from mailcore.store import aio, rows

if TYPE_CHECKING:
    from mailcore.imap.session import Session

STORE_MODES = {"FLAGS": store.FLAG_REPLACE, "+FLAGS": store.FLAG_ADD, "-FLAGS": store.FLAG_REMOVE}


async def cmd_CHECK(s: Session, p: Parser) -> str:
    """RFC 3501 §6.4.1 (removed in RFC 9051, kept as NOOP): every change is durable already."""
    p.end()
    assert s.selected is not None
    await s.selected.report_changes(s, allow_expunge=True, poll=True)
    return "CHECK completed"


async def cmd_CLOSE(s: Session, p: Parser) -> str:
    """RFC 9051 §6.4.1: expunge silently (read-write only) and leave the selected state."""
    from mailcore.imap.session import AUTHENTICATED

    p.end()
    view = s.selected
    assert view is not None
    if not view.readonly:
        await aio.run(store.expunge, view.ref)
    view.close()
    s.selected, s.state = None, AUTHENTICATED
    return "CLOSE completed"


async def cmd_UNSELECT(s: Session, p: Parser) -> str:
    """RFC 9051 §6.4.2 (RFC 3691): leave the selected state without expunging."""
    from mailcore.imap.session import AUTHENTICATED

    p.end()
    assert s.selected is not None
    s.selected.close()
    s.selected, s.state = None, AUTHENTICATED
    return "UNSELECT completed"


async def cmd_EXPUNGE(s: Session, p: Parser) -> str:
    """RFC 9051 §6.4.3: remove every \\Deleted message; one EXPUNGE response each."""
    p.end()
    view = s.require_selected_writable()
    view.forget(s, await aio.run(store.expunge, view.ref))
    return "EXPUNGE completed"


async def cmd_UID_EXPUNGE(s: Session, p: Parser) -> str:
    """RFC 4315 §2.1 (RFC 9051 §6.4.9): expunge only the \\Deleted messages in the UID set."""
    p.sp()
    ranges = p.sequence_set()
    p.end()
    view = s.require_selected_writable()
    uids = view.resolve(ranges, uid_mode=True)
    view.forget(s, await aio.run(store.expunge, view.ref, uids) if uids else [])
    return "UID EXPUNGE completed"


async def cmd_STORE(s: Session, p: Parser) -> str:
    """RFC 9051 §6.4.6; RFC 7162 §3.1.3 UNCHANGEDSINCE."""
    return await _store(s, p, uid_mode=False)


async def cmd_UID_STORE(s: Session, p: Parser) -> str:
    return await _store(s, p, uid_mode=True)


async def _store(s: Session, p: Parser, uid_mode: bool) -> str:
    p.sp()
    ranges = p.sequence_set()
    p.sp()
    unchanged_since = None
    if p.take(b"("):
        if p.keyword() != "UNCHANGEDSINCE":
            raise Bad("unknown STORE modifier")
        p.sp()
        unchanged_since = p.number(2**63 - 1)
        p.expect(b")")
        p.sp()
        s.enabled.add("CONDSTORE")
    action = p.atom().upper()
    silent = action.endswith(".SILENT")
    mode = STORE_MODES.get(action.removesuffix(".SILENT"))
    if mode is None:
        raise Bad(f"unknown STORE action {action}")
    p.sp()
    flags = [f for f in p.flag_list() if f != "\\Recent"]
    p.end()
    if any(f.startswith("\\") and f not in store_system_flags() for f in flags):
        raise Bad("unknown system flag")
    view = s.require_selected_writable()
    uids = view.resolve(ranges, uid_mode)
    # Committed together with other sessions' concurrent flag changes, without waiting for the disk
    # (sql.relaxed_transaction: a crash of the process loses nothing; Dovecot does not fsync flags either).
    result = await aio.run_grouped(store.store_flags, view.ref, uids, flags, mode, unchanged_since)
    for change in result.changed:
        view.own_changes[change.uid] = change.modseq
    await _report_store(s, uids, result, silent, uid_mode)
    if result.modified:
        modified = result.modified if uid_mode else [view.seq_of(u) or 0 for u in result.modified]
        return f"[MODIFIED {wire.sequence_set(sorted(modified))}] conditional STORE failed for some messages"
    return f"{'UID ' if uid_mode else ''}STORE completed"


def store_system_flags() -> set[str]:
    return {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"}


async def _report_store(s: Session, uids: list[int], result: store.FlagResult, silent: bool, uid_mode: bool) -> None:
    """RFC 9051 §6.4.6: FETCH FLAGS per message, none with .SILENT (RFC 7162 §3.1.3: MODSEQ when CONDSTORE)."""
    view = s.selected
    assert view is not None
    condstore = "CONDSTORE" in s.enabled
    changed = {change.uid: change for change in result.changed}
    modified = set(result.modified)
    if silent and not condstore:
        return
    unchanged = [u for u in uids if u not in changed and u not in modified] if not silent else []
    current = {m.uid: m for m in await aio.run(rows.flags, view.ref, unchanged)} if unchanged else {}
    for uid in uids:
        seq = view.seq_of(uid)
        if seq is None or uid in modified:
            continue
        if uid in changed:
            flags, modseq = changed[uid].flags, changed[uid].modseq
        elif uid in current:
            flags, modseq = current[uid].flags, current[uid].modseq
        else:
            continue
        items = [f"UID {uid}"] if uid_mode or "QRESYNC" in s.enabled else []
        if not silent:
            items.append(f"FLAGS ({view.flag_text(uid, flags)})")
        if condstore and (uid in changed or not silent):
            items.append(f"MODSEQ ({modseq})")
        if silent and uid not in changed:
            continue
        s.untagged(f"{seq} FETCH ({' '.join(items)})")


async def cmd_COPY(s: Session, p: Parser) -> str:
    """RFC 9051 §6.4.7 with RFC 4315 §3 COPYUID."""
    return await _copy(s, p, uid_mode=False, move=False)


async def cmd_UID_COPY(s: Session, p: Parser) -> str:
    return await _copy(s, p, uid_mode=True, move=False)


async def cmd_MOVE(s: Session, p: Parser) -> str:
    """RFC 6851 §3.1: COPYUID goes in an untagged OK before the EXPUNGE responses."""
    return await _copy(s, p, uid_mode=False, move=True)


async def cmd_UID_MOVE(s: Session, p: Parser) -> str:
    return await _copy(s, p, uid_mode=True, move=True)


async def _copy(s: Session, p: Parser, uid_mode: bool, move: bool) -> str:
    p.sp()
    ranges = p.sequence_set()
    p.sp()
    target_name = s.mailbox_arg(p)
    p.end()
    view = s.require_selected_writable() if move else s.selected
    assert view is not None
    uids = view.resolve(ranges, uid_mode)
    try:
        target = await aio.run(store.get_folder, s.account_id, target_name)
    except store.NoSuchFolder as err:
        raise No(str(err), "TRYCREATE") from err  # RFC 9051 §6.4.7
    verb = ("UID " if uid_mode else "") + ("MOVE" if move else "COPY")
    if not uids:
        return f"{verb} completed (no messages)"
    pairs = await aio.run(store.move if move else store.copy, view.ref, uids, target)
    code = f"COPYUID {target.uidvalidity} {wire.sequence_set([a for a, _ in pairs])} {_uid_list([b for _, b in pairs])}"
    if not move:
        return f"[{code}] {verb} completed"
    s.untagged(f"OK [{code}] moved")
    view.forget(s, [old for old, _ in pairs])
    return f"{verb} completed"


def _uid_list(uids: list[int]) -> str:
    """The destination UIDs in the order of the source UIDs (RFC 4315 §3: the sets correspond in order)."""
    return wire.sequence_set(uids)
