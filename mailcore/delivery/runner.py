"""The in-process delivery runner: runmail's background job when no Celery broker is configured.

It runs the same `worker` code as the Celery tasks, in a small thread pool:
woken at once by `enqueue` (through `poke`), and otherwise every
SWEEP_INTERVAL seconds or when the next deferred row falls due.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connections
from django.utils import timezone

from mailcore.conf import conf
from mailcore.delivery import claims, operator, pool, worker

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 60.0  # seconds; as the Celery beat sweep
PURGE_INTERVAL = 3600.0  # seconds; as the Celery beat purge
MIN_SLEEP = 0.2
_poke: Callable[[], None] | None = None


def poke() -> None:
    """Wake the running in-process runner (no-op when none runs in this process)."""
    if _poke is not None:
        _poke()


async def delivery_runner() -> None:
    """Deliver due mail until cancelled."""
    global _poke
    loop = asyncio.get_running_loop()
    event = asyncio.Event()

    def poke_loop() -> None:
        loop.call_soon_threadsafe(event.set)

    _poke = poke_loop
    executor = ThreadPoolExecutor(conf.delivery_workers, thread_name_prefix="delivery")
    log.info("in-process delivery runner started (%d workers)", conf.delivery_workers)
    last_purge = float("-inf")
    try:
        while True:
            event.clear()
            await _deliver_until_idle(loop, executor)
            if loop.time() - last_purge >= PURGE_INTERVAL:
                last_purge = loop.time()
                await loop.run_in_executor(executor, _purge_in_thread)
            await _sleep_until_due(loop, executor, event)
    finally:
        _poke = None
        executor.shutdown(wait=False, cancel_futures=True)
        pool.close_idle(0)


async def _deliver_until_idle(loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor) -> None:
    while True:
        batch = worker.DRAIN_BATCH
        calls = [loop.run_in_executor(executor, _deliver_due_in_thread, batch) for _ in range(conf.delivery_workers)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("delivery run failed", exc_info=result)
        if not any(isinstance(r, int) and r > 0 for r in results):
            return


def _deliver_due_in_thread(batch: int) -> int:
    """Batches until nothing is due (no thread waits for the slowest of a round); how many rows were handled."""
    close_old_connections()
    handled = 0
    try:
        while done := worker.deliver_due(batch):
            handled += done
        return handled
    finally:
        connections.close_all()  # pool threads outlive the runner; leave no idle database session behind


def _purge_in_thread() -> int:
    try:
        return operator.purge_finished()
    except Exception:  # a failed purge only keeps old rows longer; delivery goes on
        log.exception("queue purge failed")
        return 0
    finally:
        connections.close_all()


def _next_due_in_thread() -> dt.datetime | None:
    try:
        return claims.next_due_at()
    finally:
        connections.close_all()


async def _sleep_until_due(loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, event: asyncio.Event) -> None:
    next_due = await loop.run_in_executor(executor, _next_due_in_thread)
    timeout = SWEEP_INTERVAL
    if next_due is not None:
        timeout = min(SWEEP_INTERVAL, max(MIN_SLEEP, (next_due - timezone.now()).total_seconds()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
