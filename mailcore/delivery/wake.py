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
import threading
from collections.abc import Iterable

import redis

from mailcore.conf import conf
from mailcore.delivery import runner

log = logging.getLogger(__name__)

PENDING_SECONDS = 60  # as the sweep's interval: a lost task's mark delays nothing the sweep would not
_client_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}  # by broker URL


def wake(message_id: int | None, domains: Iterable[str] = ()) -> None:
    """A task for `message_id` (None: none in particular) and those of `domains` not already pending.

    Without `domains`, a task for the message alone, always (operator's retry).
    """
    if not conf.celery_broker_url:
        runner.poke()
        return
    from mailcore.tasks import deliver_message

    if not domains:
        deliver_message.delay(message_id)
        return
    fresh = [d for d in dict.fromkeys(domains) if _mark(d)]
    if not fresh:
        return
    try:
        deliver_message.delay(message_id, fresh)
    except Exception:
        _unmark(fresh)  # no task carries them: let the next enqueue send one
        raise


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
