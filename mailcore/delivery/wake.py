"""Waking a worker after enqueue: a Celery task when a broker is configured, else the in-process runner.

With a Redis broker, wake-ups are debounced per destination domain. Before
sending a task for a domain, `wake` marks the domain pending in Redis
(`SET NX`, expiring after PENDING_SECONDS); while the mark is there, later
messages to that domain send no task of their own. A task removes the marks
of its domains (`taken`) before it claims anything, and then drains those
domains (`worker.Run.drain`), so it finds every row committed before the mark
was set or seen:

    enqueue commits -> SET NX fails (mark there) -> the marking task has not yet
    removed it -> it claims later -> it sees the rows.

A task that cannot drain a domain to the end (its connection broke or wore
out) wakes it again. A lost task (broker restart, FLUSHALL) only delays mail:
its mark expires and the sweep, every minute, finds the due rows anyway.
Without Redis (another broker), every message sends its own task, as before.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterable

import redis

from mailcore.conf import conf
from mailcore.delivery import runner

log = logging.getLogger(__name__)

PENDING_SECONDS = 60  # as the sweep's interval: a lost task's mark delays nothing the sweep would not
_client_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}  # by broker URL
_pending: queue.SimpleQueue[tuple[int | None, list[str]]] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_thread_pid = 0


def wake(message_id: int | None, domains: Iterable[str] = ()) -> None:
    """A task for `message_id` (None: none in particular) and those of `domains` not already pending.

    With a broker the task is sent by this process's waker thread, so that the
    caller (often the group commit's thread) never waits on the broker; wake-ups
    that pile up meanwhile go out together, each domain once. Without `domains`,
    a task for the message alone, sent at once (the operator's retry).
    """
    if not conf.celery_broker_url:
        runner.poke()
        return
    if not domains:
        from mailcore.tasks import deliver_message

        deliver_message.delay(message_id)
        return
    _waker().put((message_id, list(domains)))


def _waker() -> queue.SimpleQueue[tuple[int | None, list[str]]]:
    """This process's wake-up queue, its thread started on first use (and again in a forked child)."""
    global _thread, _thread_pid
    with _client_lock:
        if _thread is None or _thread_pid != os.getpid() or not _thread.is_alive():
            _thread = threading.Thread(target=_send_forever, args=(_pending,), name="delivery-waker", daemon=True)
            _thread_pid = os.getpid()
            _thread.start()
    return _pending


def _send_forever(pending: queue.SimpleQueue[tuple[int | None, list[str]]]) -> None:
    while True:
        batch = [pending.get()]
        while not pending.empty():
            batch.append(pending.get_nowait())
        try:
            send(batch)
        except Exception:  # a lost wake-up only delays mail until the sweep; the thread must go on
            log.exception("sending %d wake-up(s) failed; the sweep will find the mail", len(batch))


def send(batch: list[tuple[int | None, list[str]]]) -> int:
    """One task per message whose domains are not already pending (or woken earlier in `batch`); how many."""
    from mailcore.tasks import deliver_message

    covered: set[str] = set()
    sent = 0
    for message_id, domains in batch:
        fresh = [d for d in dict.fromkeys(domains) if d not in covered and _mark(d)]
        covered.update(domains)
        if not fresh:
            continue
        try:
            deliver_message.delay(message_id, fresh)
            sent += 1
        except Exception:
            _unmark(fresh)  # no task carries them: let the next enqueue send one
            raise
    return sent


def taken(domains: Iterable[str]) -> None:
    """A task starts on `domains`: later enqueues must wake another one (called before claiming)."""
    _unmark(list(domains))


def forget_pending() -> int:
    """Remove every pending mark of this installation's task queue; returns how many.

    Harmless (the next enqueue per domain sends a task again); for tests whose
    tasks no worker takes. Only this queue's keys, found by SCAN, never a flush.
    """
    client = _redis()
    if client is None:
        return 0
    keys = list(client.scan_iter(match=_key("*"), count=1000))
    return int(client.delete(*keys)) if keys else 0


def _redis() -> redis.Redis | None:
    """A client of the broker's Redis (thread-safe, shared), or None when the broker is not Redis."""
    url = conf.celery_broker_url
    if not url.startswith(("redis://", "rediss://")):
        return None
    with _client_lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url)
        return _clients[url]


def _key(domain: str) -> str:
    from celery import current_app

    return f"mailcore:wake:{current_app.conf.task_default_queue}:{domain}"


def _mark(domain: str) -> bool:
    """True when no task for `domain` is pending (the caller sends one); the domain is then marked."""
    client = _redis()
    if client is None:
        return True
    try:
        return bool(client.set(_key(domain), b"1", nx=True, ex=PENDING_SECONDS))
    except redis.RedisError:  # unreachable: send the task (which fails the same way, loudly)
        log.warning("cannot mark %s pending in Redis; sending a task anyway", domain, exc_info=True)
        return True


def _unmark(domains: list[str]) -> None:
    client = _redis()
    if client is None or not domains:
        return
    client.delete(*[_key(d) for d in domains])
