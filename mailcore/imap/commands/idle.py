"""IDLE (RFC 2177; RFC 9051 §6.3.13): push changes to the client until it sends DONE.

Changes arrive as store events (in-process, or through Redis between
processes). A change made by another process without Redis is found by
re-reading the folder's state every MAIL_IMAP_POLL_SECONDS, so IDLE wakes
within about a second whichever process made the change.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from mailcore.conf import conf
from mailcore.imap import poller
from mailcore.imap.errors import Bad, Bye
from mailcore.imap.parser import Parser

if TYPE_CHECKING:
    from mailcore.imap.session import Session

WAKE_CHECK_SECONDS = 60  # how often an idle session looks at its timeout when nothing happens


async def cmd_IDLE(s: Session, p: Parser) -> str:
    """RFC 2177 §3: `+ idling`, untagged updates while idle, tagged OK after DONE."""
    p.end()
    s.raw(b"+ idling\r\n")
    await s.flush()
    reader = asyncio.ensure_future(s.read_line())
    deadline = time.monotonic() + conf.imap_idle_timeout
    wake = asyncio.Event()
    try:
        with poller.watching(s.selected, wake) if s.selected else contextlib.nullcontext():
            while not reader.done():
                if time.monotonic() > deadline:
                    raise Bye("Autologout; idle for too long")  # RFC 9051 §5.4
                await _wait_once(s, reader, wake)
        line = reader.result()
    finally:
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
    if line.rstrip(b"\r\n").upper() != b"DONE":
        raise Bad("expected DONE to end IDLE")
    return "IDLE terminated"


async def _wait_once(s: Session, reader: asyncio.Future[bytes], wake: asyncio.Event) -> None:
    """Wait for client input, a store event or the folder poller; report what changed."""
    view = s.selected
    waiters: set[asyncio.Future[Any]] = {reader}
    event = asyncio.ensure_future(view.subscription.queue.get()) if view is not None else None
    polled = asyncio.ensure_future(wake.wait())
    waiters.add(polled)
    if event is not None:
        waiters.add(event)
    try:
        await asyncio.wait(waiters, timeout=WAKE_CHECK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (event, polled):
            if waiter is not None and not waiter.done():
                waiter.cancel()
    if view is None or reader.done():
        return
    woken = wake.is_set() or (event is not None and event.done() and not event.cancelled())
    wake.clear()
    if woken and await view.report_changes(s, allow_expunge=True, poll=True):
        await s.flush()
