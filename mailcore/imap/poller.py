"""One re-read per folder per interval, shared by every session idling on it.

Changes made by a process that cannot reach us with an event (no REDIS_URL:
the web process, `manage.py deliver`) are found by reading the folder's
counters; doing that once per folder rather than once per IDLE session keeps
a thousand idle clients on one folder as cheap as one.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from mailcore import store
from mailcore.conf import conf
from mailcore.store import aio

log = logging.getLogger(__name__)


class FolderPoller:
    """Polls one folder while anyone watches it; sets each watcher's event when its state moves."""

    def __init__(self, ref: store.FolderRef) -> None:
        self.ref = ref
        self.watchers: set[asyncio.Event] = set()
        self.state: tuple[int, int] | None = None
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self.watchers:
            await asyncio.sleep(conf.imap_poll_seconds)
            try:
                info = await aio.run(store.folder_info, self.ref)
            except store.StoreError as err:  # gone or unreadable: wake watchers, they will find out
                log.info("poll of folder %s failed: %s", self.ref.mailbox_id, err)
                info = None
            state = (info.highestmodseq, info.uidnext) if info else (-1, -1)
            if self.state is not None and state != self.state:
                for event in self.watchers:
                    event.set()
            self.state = state
        _pollers.pop((self.ref.mailbox_id, id(asyncio.get_running_loop())), None)


_pollers: dict[tuple[int, int], FolderPoller] = {}


@contextlib.contextmanager
def watching(ref: store.FolderRef, wake: asyncio.Event) -> Iterator[None]:
    """While inside, `wake` is set whenever the folder's MODSEQ or UIDNEXT changes."""
    key = (ref.mailbox_id, id(asyncio.get_running_loop()))
    poller = _pollers.get(key)
    if poller is None or poller.task.done():
        poller = _pollers[key] = FolderPoller(ref)
    poller.watchers.add(wake)
    try:
        yield
    finally:
        poller.watchers.discard(wake)
