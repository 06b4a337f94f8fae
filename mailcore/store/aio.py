"""The single async boundary: event-loop code runs store functions here, in worker threads.

Each worker thread keeps its own database connection (closed when stale or
broken, as Django does between requests), so protocol sessions never block
the event loop on the database or on fsync.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ParamSpec, Protocol, TypeVar

from django.db import close_old_connections, connections, transaction
from django.db.transaction import TransactionManagementError

from mailcore import directory
from mailcore.conf import conf
from mailcore.store import blobs, sql

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class Forwarder(Protocol):
    """Where an SMTP worker process sends its durable writes (`mailcore.store.remote.MainProcess`)."""

    async def call(self, kind: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ...


DURABLE, SHARED = "durable", "shared"  # how a worker's call runs in the main process: run_durable, run
_main_process: Forwarder | None = None  # set in an SMTP worker process: runmail's main process writes for it


def forward_to(main_process: Forwarder | None) -> None:
    """Make this an SMTP worker process: `run_durable` and `run_shared` run in `main_process` from now on."""
    global _main_process
    _main_process = main_process

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


def _refresh_connections() -> None:
    """Close this thread's broken or expired connections, as Django does between requests.

    SQLite connections are kept whatever CONN_MAX_AGE says: the database is a
    local file that never goes stale, and reopening cost a connect and three
    PRAGMAs on every store call (more than the call itself on the SMTP path).
    A connection with errors is still closed unless it is usable.
    """
    for connection in connections.all(initialized_only=True):
        if connection.vendor == "sqlite" and connection.connection is not None:
            connection.close_at = None
    close_old_connections()


def _call_in_thread(fn: Callable[..., R], *args: object, **kwargs: object) -> R:
    _refresh_connections()
    return fn(*args, **kwargs)


_ALLOWED_MODULES = ("mailcore.store", "mailcore.directory", "mailcore.auth", "mailcore.smtp", "mailcore.delivery.queue")


def check_allowed(fn: Callable[..., Any]) -> None:
    module = getattr(fn, "__module__", "") or ""
    if not module.startswith(_ALLOWED_MODULES):
        raise TypeError(f"{fn!r} is not a mailcore store, directory, auth, SMTP policy or queue function")


async def run(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a store (or directory/auth, or SMTP policy) function in a worker thread and await its result."""
    check_allowed(fn)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), functools.partial(_call_in_thread, fn, *args, **kwargs))


async def run_shared(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Like `run`, for state every process of runmail must see alike (login failures counted without Redis).

    In an SMTP worker process it runs in runmail's main process.
    """
    if _main_process is not None:
        check_allowed(fn)
        result: R = await _main_process.call(SHARED, fn, args, kwargs)
        return result
    return await run(fn, *args, **kwargs)


# Group commit ----------------------------------------------------------------------
# Durable writes from concurrent sessions (SMTP DATA, APPEND) are gathered while the
# previous batch is being written, then run in one thread: each call in its own
# savepoint, every blob fsynced once at the end, one COMMIT for all. A call that
# fails rolls back alone; a failed COMMIT fails every call of its batch.

MAX_BATCH = 64  # calls per transaction; bounds the latency one batch adds to the next


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = field(default=None)


_Committer = tuple[asyncio.Queue[_Job], asyncio.Task[None]]
# Per event loop, one committer for durable batches (False) and one for relaxed ones (True).
_committers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[bool, _Committer]] = (
    weakref.WeakKeyDictionary()
)


async def run_durable(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Like `run`, for a function that writes mail durably; concurrent calls share one commit.

    Returns (or raises) only after the call's transaction has committed and its
    blobs are fsynced, so a success reply sent afterwards is safe. In an SMTP
    worker process the call runs in runmail's main process, in its group commit.
    """
    if _main_process is not None:
        check_allowed(fn)
        forwarded: R = await _main_process.call(DURABLE, fn, args, kwargs)
        return forwarded
    result: R = await _grouped(False, fn, args, kwargs)
    return result


async def run_grouped(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Like `run_durable`, but the shared commit does not wait for the disk (`sql.relaxed_transaction`).

    For writes whose loss in a power failure costs little, such as IMAP flag
    changes; never for mail.
    """
    result: R = await _grouped(True, fn, args, kwargs)
    return result


async def _grouped(relaxed: bool, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    check_allowed(fn)
    loop = asyncio.get_running_loop()
    committers = _committers.setdefault(loop, {})
    if relaxed not in committers:
        queue: asyncio.Queue[_Job] = asyncio.Queue()
        committers[relaxed] = (queue, loop.create_task(_commit_loop(queue, relaxed)))
    job = _Job(fn, args, kwargs, loop.create_future())
    await committers[relaxed][0].put(job)
    return await job.future


async def _commit_loop(queue: asyncio.Queue[_Job], relaxed: bool) -> None:
    loop = asyncio.get_running_loop()
    while True:
        jobs = [await queue.get()]
        while not queue.empty() and len(jobs) < MAX_BATCH:
            jobs.append(queue.get_nowait())
        await loop.run_in_executor(_pool(), _run_batch, jobs, relaxed)
        for job in jobs:
            if job.future.cancelled():
                continue
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(job.result)


def _run_batch(jobs: list[_Job], relaxed: bool = False) -> None:
    """Run `jobs` in one transaction: first all together, and when one of them fails, each in a savepoint.

    The first pass saves every call a SAVEPOINT and a RELEASE (two round trips on PostgreSQL).
    When a call raises, that pass is rolled back as a whole (with the on-commit hooks its calls
    registered); a call alone in its batch gets its error, and a larger batch runs again with a
    savepoint per call, so one call's failure stays its own. Blobs written in the first pass stay
    on the list of files to fsync, so a second-pass call that finds its blob already there still
    gets it synced before the commit.
    """
    _refresh_connections()
    try:
        with blobs.deferred_sync():
            failure = _commit(jobs, relaxed, savepoints=False)
            if failure is not None and len(jobs) == 1:
                jobs[0].error = failure
            elif failure is not None:
                failure = _commit(jobs, relaxed, savepoints=True)
                for job in jobs if failure is not None else ():  # rolled back as a whole after all
                    job.error = job.error or failure
    except Exception as err:  # the COMMIT (or the fsync) failed: nothing of this batch is stored
        log.exception("group commit of %d call(s) failed", len(jobs))
        for job in jobs:
            job.error = job.error or err


class _CallFailed(Exception):
    """A call of the all-together pass raised (its exception is the cause): that pass is rolled back."""


def _commit(jobs: list[_Job], relaxed: bool, savepoints: bool) -> BaseException | None:
    """One pass over `jobs` in one transaction; without savepoints, a call's failure rolls it all back
    and is returned."""
    for job in jobs:
        job.result, job.error = None, None
    try:
        with directory.remembering_lookups(), sql.relaxed_transaction() if relaxed else transaction.atomic():
            for job in jobs:
                (_run_in_savepoint if savepoints else _run_plain)(job)
            if transaction.get_rollback():  # a call swallowed a failure Django would roll back silently
                raise _CallFailed from TransactionManagementError("a call's changes were marked for rollback")
            blobs.sync_deferred()  # durable blobs before the rows that point to them commit
    except _CallFailed as failed:
        return failed.__cause__
    return None


def _run_plain(job: _Job) -> None:
    try:
        job.result = job.fn(*job.args, **job.kwargs)
    except Exception as err:
        raise _CallFailed from err


def _run_in_savepoint(job: _Job) -> None:
    try:
        with transaction.atomic():
            job.result = job.fn(*job.args, **job.kwargs)
    except Exception as err:  # noqa: BLE001 - whatever it is, it belongs to this call's caller alone
        job.error = err


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
