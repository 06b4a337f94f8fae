"""Waking a worker after enqueue: a Celery task when a broker is configured, else the in-process runner.

With a broker, `wake` only hands the wake-up to this process's waker thread,
so enqueue (often in the group commit's thread) never waits on the broker. The
waker sends at most one round of tasks per SEND_INTERVAL: a wake-up after a
quiet spell goes out at once, those that arrive in a busy spell wait for the
next round and go out together, one task per DOMAINS_PER_TASK destination
domains, not one per message. Under load a task then finds several messages
per domain to claim, where one task per wake-up found one or two: fewer tasks,
fewer claims, and the CPU they took went to the mail itself.

With a Redis broker they are also debounced per domain. Before sending a task
for a domain, the waker marks it pending in Redis (`SET NX`, expiring after
PENDING_SECONDS); while the mark is there, later wake-ups for that domain send
no task. A task removes the marks of its domains (`taken`) before it claims
anything, then claims and drains those domains (`worker.Run.message`), so it
finds every row committed before the mark was set or seen:

    enqueue commits -> SET NX fails (mark there) -> the marking task has not yet
    removed it -> it claims later -> it sees the rows.

A task that cannot drain a domain to the end (its connection broke or wore
out) wakes it again. A lost wake-up or task (process exit, broker restart,
FLUSHALL) only delays mail: a mark expires, and the sweep, every minute, finds
the due rows anyway.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterable

import redis

from mailcore.conf import conf

log = logging.getLogger(__name__)

PENDING_SECONDS = 60  # as the sweep's interval: a lost task's mark delays nothing the sweep would not
SEND_INTERVAL = 0.2  # seconds between rounds of tasks: a wake-up waits at most this long
DOMAINS_PER_TASK = 10  # a burst to many domains still spreads over several workers
_client_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}  # by broker URL
_WakeUp = tuple[int | None, list[str]]  # (message id or None, its destination domains)
_pending: queue.SimpleQueue[_WakeUp] = queue.SimpleQueue()
_thread: threading.Thread | None = None


def _after_fork_in_child() -> None:
    """A forked child (Celery prefork, gunicorn) starts with no waker, nothing pending and free locks."""
    global _client_lock, _pending, _thread
    _client_lock, _pending, _thread = threading.Lock(), queue.SimpleQueue(), None
    _clients.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def wake(message_id: int | None, domains: Iterable[str] = ()) -> None:
    """A task for `message_id` (None: none in particular) and those of `domains` not already pending.

    With a broker the task is sent by this process's waker thread, so that the
    caller (often the group commit's thread) never waits on the broker; wake-ups
    that pile up meanwhile go out together, each domain once. Without `domains`,
    a task for the message alone, sent at once (the operator's retry).
    """
    if not conf.celery_broker_url:
        from mailcore.delivery import runner  # here: importing it (and the worker) costs every process's start

        runner.poke()
        return
    if not domains:
        from mailcore.tasks import deliver_message

        deliver_message.delay(message_id)
        return
    _waker().put((message_id, list(domains)))


def _waker() -> queue.SimpleQueue[_WakeUp]:
    """This process's wake-up queue, its thread started on first use."""
    global _thread
    with _client_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_send_forever, args=(_pending,), name="delivery-waker", daemon=True)
            _thread.start()
        return _pending


def _send_forever(pending: queue.SimpleQueue[_WakeUp]) -> None:
    last_round = -SEND_INTERVAL
    while True:
        batch, last_round = next_round(pending, last_round)
        try:
            send(batch)
        except Exception:  # a lost wake-up only delays mail until the sweep; the thread must go on
            log.exception("sending %d wake-up(s) failed; the sweep will find the mail", len(batch))


def next_round(
    pending: queue.SimpleQueue[_WakeUp], last_round: float, interval: float = SEND_INTERVAL
) -> tuple[list[_WakeUp], float]:
    """The wake-ups of the next round and when it starts (`time.monotonic()`).

    The first wake-up to arrive and any already waiting, at once when the last
    round was `interval` or more ago; otherwise also all that arrive until
    `interval` after the last round.
    """
    batch = [pending.get()]
    time.sleep(max(0.0, last_round + interval - time.monotonic()))
    started = time.monotonic()
    while not pending.empty():
        batch.append(pending.get_nowait())
    return batch, started


def send(batch: list[_WakeUp]) -> list[list[str]]:
    """Tasks for the domains of `batch` that are not already pending, DOMAINS_PER_TASK each; their domains.

    A message alone in its batch gets a task of its own (its rows claimed
    together: one ESP request for all of them); otherwise tasks carry domains only.
    """
    from mailcore.tasks import deliver_message

    fresh = [d for d in dict.fromkeys(d for _, domains in batch for d in domains) if _mark(d)]
    chunks = [fresh[i : i + DOMAINS_PER_TASK] for i in range(0, len(fresh), DOMAINS_PER_TASK)]
    message_id = batch[0][0] if len(batch) == 1 else None
    for n, chunk in enumerate(chunks):
        try:
            deliver_message.delay(message_id, chunk)
        except Exception:
            _unmark([d for rest in chunks[n:] for d in rest])  # no task carries them: the next enqueue sends one
            raise
    return chunks


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
