"""The single async boundary: event-loop code runs store functions here, in worker threads.

Each worker thread keeps its own database connection (closed when stale or
broken, as Django does between requests), so protocol sessions never block
the event loop on the database or on fsync.
"""
from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.db import close_old_connections, connections

from mailcore.conf import conf

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None
_thread_count = 0
_lock = threading.Lock()


def _count_thread() -> None:
    global _thread_count
    with _lock:
        _thread_count += 1


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=conf.store_threads, thread_name_prefix="store", initializer=_count_thread
            )
        return _executor


def _call_in_thread(fn: Callable[..., R], *args: object, **kwargs: object) -> R:
    close_old_connections()
    return fn(*args, **kwargs)


async def run(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a store (or directory/auth, or SMTP policy) function in a worker thread and await its result."""
    module = getattr(fn, "__module__", "") or ""
    if not module.startswith(("mailcore.store", "mailcore.directory", "mailcore.auth", "mailcore.smtp")):
        raise TypeError(f"{fn!r} is not a mailcore store, directory or auth function")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), functools.partial(_call_in_thread, fn, *args, **kwargs))


def _close_connections(barrier: threading.Barrier) -> None:
    connections.close_all()
    barrier.wait(timeout=10)  # hold this thread so that every other thread takes one job too


def shutdown() -> None:
    """Close every worker thread's database connection and stop the threads (runmail does on exit)."""
    global _executor, _thread_count
    with _lock:
        executor, count = _executor, _thread_count
        _executor, _thread_count = None, 0
    if executor is None:
        return
    if count:
        barrier = threading.Barrier(count)
        for _ in range(count):
            executor.submit(_close_connections, barrier)
    executor.shutdown(wait=True)
