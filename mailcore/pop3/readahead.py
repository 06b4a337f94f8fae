"""RETR read-ahead: clients fetch messages in order, so a RETR that misses reads the following ones too.

One worker-thread call (`store.read_blobs`) reads a run of messages, and the
next RETRs are answered from memory. Blobs are immutable: a copy read ahead is
never stale. (Reading the next run in the background while the current one is
sent was measured: more worker-thread round trips and more CPU, no faster.)
"""
from __future__ import annotations

import itertools

from mailcore import store
from mailcore.pop3.maildrop import Entry, Maildrop
from mailcore.store import aio

# What one session holds read ahead at most: this many messages and (beyond the first) this many bytes.
READ_AHEAD_MESSAGES = 32
READ_AHEAD_BYTES = 256 * 1024


class ReadAhead:
    """The bytes of the messages after the last one sent, for one session's maildrop."""

    def __init__(self, drop: Maildrop) -> None:
        self.drop = drop
        self.ready: dict[str, bytes] = {}  # blob digest -> bytes

    async def message(self, entry: Entry) -> bytes:
        """`entry`'s bytes: from what was read ahead, else read now together with the messages after it."""
        data = self.ready.pop(entry.blob, None)
        if data is None:
            self.ready = await aio.run(store.read_blobs, self.digests_from(entry), READ_AHEAD_BYTES)
            data = self.ready.pop(entry.blob)
        return data

    def digests_from(self, entry: Entry) -> list[str]:
        """The blobs of `entry` and of the messages after it not marked deleted, READ_AHEAD_MESSAGES at most."""
        deleted = self.drop.deleted
        following = (e.blob for e in itertools.islice(self.drop.entries, entry.number, None) if e.number not in deleted)
        return [entry.blob, *itertools.islice(following, READ_AHEAD_MESSAGES - 1)]
