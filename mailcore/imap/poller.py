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
from typing import TYPE_CHECKING

from mailcore import store
from mailcore.conf import conf
from mailcore.store import aio

if TYPE_CHECKING:
    from mailcore.imap.selected import MailboxView

log = logging.getLogger(__name__)


class FolderPoller:
    """Polls one folder while anyone watches it; wakes each watcher whose view is behind the folder."""

    def __init__(self, ref: store.FolderRef) -> None:
        self.ref = ref
        self.watchers: dict[asyncio.Event, MailboxView] = {}
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self.watchers:
            await asyncio.sleep(conf.imap_poll_seconds)
            try:
                info = await aio.run(store.folder_info, self.ref)
            except store.StoreError as err:  # gone or unreadable: wake watchers, they will find out
                log.info("poll of folder %s failed: %s", self.ref.mailbox_id, err)
                info = None
            for event, view in list(self.watchers.items()):
                if info is None or (info.highestmodseq, info.uidnext) != (view.highestmodseq, view.uidnext):
                    event.set()
        _pollers.pop((self.ref.mailbox_id, id(asyncio.get_running_loop())), None)


_pollers: dict[tuple[int, int], FolderPoller] = {}


@contextlib.contextmanager
def watching(view: MailboxView, wake: asyncio.Event) -> Iterator[None]:
    """While inside, `wake` is set when the folder's MODSEQ or UIDNEXT differ from what `view` knows."""
    key = (view.ref.mailbox_id, id(asyncio.get_running_loop()))
    poller = _pollers.get(key)
    if poller is None or poller.task.done():
        poller = _pollers[key] = FolderPoller(view.ref)
    poller.watchers[wake] = view
    try:
        yield
    finally:
        poller.watchers.pop(wake, None)
