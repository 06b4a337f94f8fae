"""The selected mailbox as one session sees it: sequence numbers, and the changes it still has to report.

RFC 9051 §7 (RFC 3501 §7): other sessions' changes reach the client as untagged
EXISTS, EXPUNGE (VANISHED with QRESYNC) and FETCH FLAGS. "An EXPUNGE response
MUST NOT be sent when no command is in progress, nor while responding to a
FETCH, STORE, or SEARCH command" (RFC 3501 §7.4.1), so expunges found during
those wait in the view, keeping every sequence number the client knows valid.
"""
from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from mailcore import store
from mailcore.imap import wire
from mailcore.imap.errors import Bad
from mailcore.imap.memo import Memo
from mailcore.imap.parser import SavedResult, SequenceSet
from mailcore.store import aio, recent, rows

if TYPE_CHECKING:
    from mailcore.imap.session import Session


MAX_OWN_CHANGES = 10_000  # own flag changes remembered before a full re-read is forced


UID_LIST_CACHE_SIZE = 64  # folders whose UID lists this process keeps for SELECT
_UID_LISTS: Memo[tuple[int, int, int, int], tuple[int, ...]] = Memo(UID_LIST_CACHE_SIZE)


async def _uids_of(ref: store.FolderRef, info: store.FolderInfo) -> list[int]:
    """Every UID of the folder, from a cache when nothing came or went since it was read.

    (UIDVALIDITY, UIDNEXT, message count) fixes the set: a new message raises UIDNEXT, and
    without one the count only falls. A list is cached only when it agrees with the
    counters read before it, so a change between the two reads is never cached.
    """
    key = (ref.mailbox_id, info.uidvalidity, info.uidnext, info.messages)
    cached = _UID_LISTS.get(key)
    if cached is not None:
        return list(cached)
    uids = await aio.run(store.uids, ref)
    if len(uids) == info.messages and (not uids or uids[-1] < info.uidnext):
        _UID_LISTS.put(key, tuple(uids))
    return uids


class MailboxView:
    def __init__(self, ref: store.FolderRef, readonly: bool) -> None:
        """Subscribe first, then read the state (`load`), so that no change falls in between."""
        self.ref = ref
        self.readonly = readonly
        self.subscription = store.hub.subscribe(ref.account_id, ref.mailbox_id)
        self.uids: list[int] = []  # index i holds the UID of sequence number i + 1
        self.highestmodseq = 0
        self.uidnext = 1
        self.own_changes: dict[int, int] = {}  # UID -> MODSEQ this session already reported
        self.deferred_expunges = False
        # RFC 3501 §2.3.2 \Recent, for IMAP4rev1 sessions (IMAP4rev2 has none): the UIDs this session
        # was the first to be told of (read-write), or that no session was told of yet (EXAMINE).
        self.shows_recent = False
        self.recent: set[int] = set()
        self.saved: list[int] = []  # RFC 5182 §2.1 `$`: empty at SELECT, UIDs of the last SEARCH ... SAVE

    async def load(self) -> store.FolderInfo:
        # Counters first: a message arriving between the two reads is then in `uids` and its
        # event still finds a newer HIGHESTMODSEQ, so it is reported, never lost.
        info = await aio.run(store.folder_info, self.ref)
        self.uids = await _uids_of(self.ref, info)
        self.highestmodseq, self.uidnext = info.highestmodseq, info.uidnext
        await self._take_recent(self.uids)
        return info

    async def _take_recent(self, uids: list[int]) -> None:
        """Note which of `uids` (ascending, newly known to this session) are \\Recent for it."""
        if not self.shows_recent or not uids:
            return
        if self.readonly:
            boundary = await aio.run(recent.recent_boundary, self.ref)
        else:
            boundary = await aio.run(recent.claim, self.ref, uids[-1])
        self.recent.update(uid for uid in uids if uid > boundary)

    def flag_text(self, uid: int, flags: tuple[str, ...] | list[str]) -> str:
        """A FLAGS list's contents, with \\Recent when it is set for this session."""
        return " ".join((*flags, "\\Recent") if uid in self.recent else flags)

    def close(self) -> None:
        self.subscription.close()

    # Numbers ---------------------------------------------------------------------------

    def seq_of(self, uid: int) -> int | None:
        index = bisect.bisect_left(self.uids, uid)
        return index + 1 if index < len(self.uids) and self.uids[index] == uid else None

    def resolve(self, ranges: SequenceSet, uid_mode: bool) -> list[int]:
        """The UIDs (ascending) a sequence set names. RFC 9051 §6.4.8: in a UID set, numbers not in use are ignored."""
        if isinstance(ranges, SavedResult):
            return self._resolve_uids(ranges)  # `$` names messages, never an invalid number (RFC 5182 §2.1)
        return self._resolve_uids(ranges) if uid_mode else self._resolve_seqs(ranges)

    def resolve_lenient(self, ranges: SequenceSet, uid_mode: bool) -> list[int]:
        """As `resolve`, but sequence numbers beyond EXISTS just match nothing (for SEARCH keys)."""
        if uid_mode or isinstance(ranges, SavedResult):
            return self._resolve_uids(ranges)
        count = len(self.uids)
        chosen: set[int] = set()
        for first, last in ranges:
            low, high = sorted((first or count, last or count))
            chosen.update(self.uids[max(low, 1) - 1 : min(high, count)])
        return sorted(chosen)

    def _resolve_seqs(self, ranges: SequenceSet) -> list[int]:
        count = len(self.uids)
        chosen: set[int] = set()
        for first, last in ranges:
            low, high = sorted((first or count, last or count))
            if high > count or low < 1:
                # RFC 9051 §6.4.5: a sequence number beyond EXISTS is invalid: BAD.
                raise Bad("invalid message sequence number" if count else "mailbox is empty")
            chosen.update(self.uids[low - 1 : high])
        return sorted(chosen)

    def _resolve_uids(self, ranges: SequenceSet) -> list[int]:
        if not self.uids:
            return []
        largest = self.uids[-1]
        chosen: set[int] = set()
        for first, last in ranges:
            low, high = sorted((first or largest, last or largest))
            start, stop = bisect.bisect_left(self.uids, low), bisect.bisect_right(self.uids, high)
            chosen.update(self.uids[start:stop])
        return sorted(chosen)

    def forget(self, session: Session, expunged: list[int]) -> None:
        """Remove expunged UIDs and say so: EXPUNGE per message, or VANISHED with QRESYNC (RFC 7162 §3.2.10)."""
        gone = [uid for uid in expunged if self.seq_of(uid) is not None]
        if not gone:
            return
        gone_set = set(gone)
        self.recent -= gone_set
        self.saved = [uid for uid in self.saved if uid not in gone_set]
        if "QRESYNC" in session.enabled:
            session.untagged(f"VANISHED {wire.sequence_set(gone)}")
            self.uids = [uid for uid in self.uids if uid not in gone_set]
            return
        for uid in reversed(gone):  # highest first, so every number sent is still valid
            seq = self.seq_of(uid)
            assert seq is not None
            del self.uids[seq - 1]
            session.untagged(f"{seq} EXPUNGE")

    # Changes made elsewhere ------------------------------------------------------------

    async def report_changes(self, session: Session, allow_expunge: bool, poll: bool = False) -> bool:
        """Tell the client what changed since it last heard; `poll` re-reads even without an event."""
        events = [e for e in self.subscription.pending() if not self._is_own(e)]
        if not events and not poll and not (allow_expunge and self.deferred_expunges):
            return False
        info = await aio.run(store.folder_info, self.ref)
        if info.highestmodseq == self.highestmodseq and not (allow_expunge and self.deferred_expunges):
            return False
        if info.uidnext == self.uidnext and info.messages == len(self.uids):
            # No message came (UIDNEXT would have grown) and none went (the count would be lower,
            # as it is while an expunge waits to be told): only flags changed. Skip reading every UID.
            self._report_flags(session, await aio.run(rows.flags, self.ref, None, self.highestmodseq))
            self.highestmodseq = info.highestmodseq
            self.own_changes.clear()
            return True
        current = await self._current_uids(info)
        changed = await aio.run(rows.flags, self.ref, None, self.highestmodseq)
        last_known = self.uids[-1] if self.uids else 0
        self._report_expunges(session, current, allow_expunge)
        await self._take_recent([uid for uid in current if uid > last_known])
        self._report_new(session, current)
        self._report_flags(session, [m for m in changed if m.uid <= last_known])
        self.highestmodseq, self.uidnext = info.highestmodseq, info.uidnext
        self.own_changes.clear()
        return True

    async def _current_uids(self, info: store.FolderInfo) -> list[int]:
        """The folder's UIDs now: only the new ones are read when the count shows that none went."""
        last_known = self.uids[-1] if self.uids else 0
        arrived = await aio.run(store.uids, self.ref, last_known)
        if len(self.uids) + len(arrived) == info.messages and not self.deferred_expunges:
            return self.uids + arrived
        return await aio.run(store.uids, self.ref)  # something was expunged (or came meanwhile): read all

    def _is_own(self, event: store.MailboxEvent) -> bool:
        """This session's own STORE or EXPUNGE, already answered: no re-read needed for it."""
        if len(self.own_changes) > MAX_OWN_CHANGES:
            return False
        if event.kind == "flags":
            return all(self.own_changes.get(uid) == event.modseq for uid in event.uids)
        if event.kind == "expunge":
            return all(self.seq_of(uid) is None for uid in event.uids) and not self.deferred_expunges
        return False

    def _report_expunges(self, session: Session, current: list[int], allowed: bool) -> None:
        present = set(current)
        gone = [uid for uid in self.uids if uid not in present]
        self.deferred_expunges = bool(gone) and not allowed
        if gone and allowed:
            self.forget(session, gone)

    def _report_new(self, session: Session, current: list[int]) -> None:
        last = self.uids[-1] if self.uids else 0
        new = [uid for uid in current if uid > last]
        if new:
            self.uids.extend(new)
            session.untagged(f"{len(self.uids)} EXISTS")
            if self.shows_recent:
                session.untagged(f"{len(self.recent)} RECENT")  # RFC 3501 §7.3.2

    def _report_flags(self, session: Session, changed: list[rows.FlagsRow]) -> None:
        condstore = "CONDSTORE" in session.enabled or "QRESYNC" in session.enabled
        for message in changed:
            seq = self.seq_of(message.uid)
            if seq is None or self.own_changes.get(message.uid) == message.modseq:
                continue
            items = f"UID {message.uid} FLAGS ({self.flag_text(message.uid, message.flags)})"
            if condstore:
                items += f" MODSEQ ({message.modseq})"
            session.untagged(f"{seq} FETCH ({items})")
