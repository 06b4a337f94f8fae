"""RETR read-ahead: clients fetch messages in order, so the following ones are read before they are asked for.

One worker-thread call (`store.read_blobs`) reads a run of messages; when half
of them have been sent, the next run is read in the background, so a RETR
seldom waits for the store. Blobs are immutable: a copy read ahead is never stale.
"""
from __future__ import annotations

import asyncio
import contextlib

from mailcore import store
from mailcore.pop3.maildrop import Entry, Maildrop
from mailcore.store import aio

# What one session holds read ahead at most: this many messages and (beyond the first of a run) this many bytes.
READ_AHEAD_MESSAGES = 32
READ_AHEAD_BYTES = 256 * 1024
# The next run is read in the background once no more than this many messages are left.
REFILL_AT = READ_AHEAD_MESSAGES // 2


class ReadAhead:
    """The bytes of the messages after the last one sent, for one session's maildrop."""

    def __init__(self, drop: Maildrop) -> None:
        self.drop = drop
        self.ready: dict[str, bytes] = {}  # blob digest -> bytes
        self.next_index = 0  # drop.entries[next_index:] have not been read yet
        self.refill: asyncio.Task[dict[str, bytes]] | None = None

    async def message(self, entry: Entry) -> bytes:
        """`entry`'s bytes: from what was read ahead, else read now together with the messages after it."""
        if self.refill is not None and (self.refill.done() or entry.blob not in self.ready):
            await self.take_refill()
        data = self.ready.pop(entry.blob, None)
        if data is None:  # the first RETR, or out of order: start over from this message
            self.ready, self.next_index = {}, entry.number - 1
            self.ready = await self.read_following(READ_AHEAD_MESSAGES, READ_AHEAD_BYTES)
            data = self.ready.pop(entry.blob)
        self.start_refill()
        return data

    def start_refill(self) -> None:
        if self.refill is not None or len(self.ready) > REFILL_AT or self.next_index >= len(self.drop.entries):
            return
        room = READ_AHEAD_BYTES - sum(len(data) for data in self.ready.values())
        if room > 0:
            self.refill = asyncio.create_task(self.read_following(READ_AHEAD_MESSAGES - len(self.ready), room))

    async def take_refill(self) -> None:
        refill, self.refill = self.refill, None
        if refill is None:
            return
        # An unreadable blob: the RETR that wants it reads it again and answers -ERR.
        with contextlib.suppress(store.StoreError):
            self.ready.update(await refill)

    async def read_following(self, count: int, max_bytes: int) -> dict[str, bytes]:
        """Up to `count` messages not marked deleted from `next_index` on (see `store.read_blobs` for the bytes)."""
        entries, deleted = self.drop.entries, self.drop.deleted
        wanted: list[int] = []
        index = self.next_index
        while index < len(entries) and len(wanted) < count:
            if entries[index].number not in deleted:
                wanted.append(index)
            index += 1
        if not wanted:
            return {}
        found = await aio.run(store.read_blobs, [entries[i].blob for i in wanted], max_bytes)
        self.next_index = next((i for i in wanted if entries[i].blob not in found), index)
        return found

    def close(self) -> None:
        """The session is over: stop a background read (its result is not needed)."""
        if self.refill is not None and not self.refill.cancel() and not self.refill.cancelled():
            self.refill.exception()  # retrieved, so asyncio does not log it as never retrieved
        self.refill = None
