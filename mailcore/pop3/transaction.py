"""TRANSACTION and UPDATE state commands (RFC 1939 §5, §6, §7) and the end of a session."""
from __future__ import annotations

import asyncio
import logging

from mailcore import store
from mailcore.pop3.authorization import AuthorizationCommands
from mailcore.pop3.errors import SYS_TEMP, Pop3Error
from mailcore.pop3.maildrop import Entry, Maildrop
from mailcore.pop3.parser import Command, expect_args, line_count
from mailcore.pop3.readahead import ReadAhead
from mailcore.pop3.states import State
from mailcore.pop3.wire import listing, multiline, top_of
from mailcore.store import aio

# Retrieved messages are marked \Seen for IMAP clients at the session's end, however it ends (QUIT, a dropped
# connection, a timeout; Dovecot sets them at QUIT); a long session also stores them in the background every this
# many seconds, so a server crash leaves at most that much of a session's retrievals unmarked (never a deletion).
SEEN_FLUSH_SECONDS = 10.0
# UIDs per \Seen write (keeps each statement well under SQLite's bound on parameters).
SEEN_CHUNK = 1000
log = logging.getLogger(__name__)


class TransactionCommands(AuthorizationCommands):
    seen_pending: list[int] | None = None  # UIDs retrieved but not yet marked \Seen
    seen_flushed_at = 0.0  # event-loop time of the last \Seen write started
    read_ahead: ReadAhead | None = None  # the messages after the last one retrieved
    seen_writer: asyncio.Task[None] | None = None  # storing \Seen flags in the background

    def drop(self) -> Maildrop:
        if self.maildrop is None:  # the state table lets these commands run only in TRANSACTION
            raise Pop3Error("no maildrop open")
        return self.maildrop

    # RFC 1939 §5 STAT, LIST, UIDL (§7) ------------------------------------------------------

    async def cmd_STAT(self, command: Command) -> None:
        expect_args(command, 0, 0, "STAT")
        count, octets = self.drop().stat()
        await self.send(f"+OK {count} {octets}\r\n".encode())  # RFC 1939 §5: "+OK nn mm"

    async def cmd_LIST(self, command: Command) -> None:
        args = expect_args(command, 0, 1, "LIST [msg]")
        drop = self.drop()
        if args:
            entry = drop.get(args[0])
            await self.send(f"+OK {entry.number} {entry.size}\r\n".encode())
            return
        count, octets = drop.stat()
        lines = [f"{entry.number} {entry.size}" for entry in drop.live()]
        await self.send(listing(f"{count} messages ({octets} octets)", lines))

    async def cmd_UIDL(self, command: Command) -> None:
        args = expect_args(command, 0, 1, "UIDL [msg]")
        drop = self.drop()
        if args:
            entry = drop.get(args[0])
            await self.send(f"+OK {entry.number} {drop.unique_id(entry)}\r\n".encode())
            return
        lines = [f"{entry.number} {drop.unique_id(entry)}" for entry in drop.live()]
        await self.send(listing("unique-id listing follows", lines))

    # RFC 1939 §5 RETR, §7 TOP --------------------------------------------------------------

    async def cmd_RETR(self, command: Command) -> None:
        (arg,) = expect_args(command, 1, 1, "RETR msg")
        entry = self.drop().get(arg)
        data = await self.message_bytes(entry)
        await self.send(multiline(f"{len(data)} octets", data))
        self.mark_seen(entry)

    async def message_bytes(self, entry: Entry) -> bytes:
        if self.read_ahead is None:
            self.read_ahead = ReadAhead(self.drop())
        return await self.read_ahead.message(entry)

    async def cmd_TOP(self, command: Command) -> None:
        msg, lines = expect_args(command, 2, 2, "TOP msg n")
        entry = self.drop().get(msg)
        count = line_count(lines)
        data = await aio.run(store.read_blob, entry.blob)
        await self.send(multiline("top of message follows", top_of(data, count)))

    def mark_seen(self, entry: Entry) -> None:
        """Retrieved messages become \\Seen for IMAP clients: remembered here, stored in few writes."""
        if entry.seen:
            return
        now = asyncio.get_running_loop().time()
        if self.seen_pending is None:
            self.seen_pending, self.seen_flushed_at = [], now
        self.seen_pending.append(entry.uid)
        if now - self.seen_flushed_at >= SEEN_FLUSH_SECONDS and (self.seen_writer is None or self.seen_writer.done()):
            self.seen_flushed_at = now
            uids, self.seen_pending = self.seen_pending, []
            self.seen_writer = asyncio.create_task(self.store_seen(uids))

    async def store_seen(self, uids: list[int]) -> None:
        """A background write; on failure the UIDs wait for the next one (the session's end at the latest)."""
        try:
            await self.write_seen(uids)
        except Exception:  # RETR was answered already
            log.warning("pop3[%s] %s could not mark messages \\Seen yet", self.id, self.peer, exc_info=True)
            self.seen_pending = [*uids, *(self.seen_pending or [])]

    async def write_seen(self, uids: list[int]) -> None:
        if self.maildrop is None:
            return
        for start in range(0, len(uids), SEEN_CHUNK):
            chunk = uids[start : start + SEEN_CHUNK]
            await aio.run(store.store_flags, self.maildrop.ref, chunk, ["\\Seen"], store.FLAG_ADD)

    async def flush_seen(self) -> None:
        """Store every pending \\Seen now (the session is ending)."""
        if self.seen_writer is not None:
            await self.seen_writer
            self.seen_writer = None
        pending, self.seen_pending = self.seen_pending or [], None
        await self.write_seen(pending)

    # RFC 1939 §5 DELE, RSET, NOOP ----------------------------------------------------------

    async def cmd_DELE(self, command: Command) -> None:
        (arg,) = expect_args(command, 1, 1, "DELE msg")
        drop = self.drop()
        entry = drop.get(arg)
        drop.delete(entry)  # RFC 1939 §5: only marked; removed in the UPDATE state
        await self.send(f"+OK message {entry.number} deleted\r\n".encode())

    async def cmd_RSET(self, command: Command) -> None:
        expect_args(command, 0, 0, "RSET")
        drop = self.drop()
        drop.reset()
        count, octets = drop.stat()
        await self.send(f"+OK maildrop has {count} messages ({octets} octets)\r\n".encode())

    async def cmd_NOOP(self, command: Command) -> None:
        expect_args(command, 0, 0, "NOOP")
        await self.send(b"+OK\r\n")

    # RFC 1939 §4, §6 QUIT and the UPDATE state ---------------------------------------------

    async def cmd_QUIT(self, command: Command) -> None:
        expect_args(command, 0, 0, "QUIT")
        self.closing = True
        if self.state is State.AUTHORIZATION:
            await self.send(b"+OK bye\r\n")  # RFC 1939 §4: QUIT here does not enter UPDATE
            return
        self.state = State.UPDATE
        removed = await self.update()
        await self.release_maildrop()  # RFC 1939 §6: release the lock, then reply
        await self.send(f"+OK bye, {removed} messages deleted\r\n".encode())

    async def update(self) -> int:
        """RFC 1939 §6: "removes all messages marked as deleted from the maildrop"."""
        drop = self.drop()
        uids = drop.deleted_uids()
        if not uids:
            return 0
        try:
            await aio.run(store.store_flags, drop.ref, uids, ["\\Deleted"], store.FLAG_ADD)
            removed = await aio.run(store.expunge, drop.ref, uids)
        except store.StoreError as err:
            # RFC 1939 §6: "-ERR some deleted messages not removed"
            raise Pop3Error(f"some deleted messages not removed: {err}", SYS_TEMP, close=True) from err
        self.log(logging.INFO, "UPDATE removed %d messages", len(removed))
        return len(removed)

    async def finish(self) -> None:
        """Any end of the session (QUIT, drop, timeout, shutdown): never deletes anything."""
        await self.release_maildrop()

    async def release_maildrop(self) -> None:
        """Mark retrieved messages \\Seen and free the maildrop lock (once)."""
        if self.renewer is not None:
            self.renewer.cancel()
            await asyncio.gather(self.renewer, return_exceptions=True)
            self.renewer = None
        self.read_ahead = None
        if self.maildrop is None:
            return
        try:
            await self.flush_seen()
        except Exception:
            log.warning("pop3[%s] %s could not mark messages \\Seen", self.id, self.peer, exc_info=True)
        drop, self.maildrop = self.maildrop, None
        await aio.run(store.release_lock, drop.ref, self.lock_owner)
