"""Open SMTP connections kept between delivery runs of one process (Celery tasks, runner threads).

Without it every Celery task (one message) paid a DNS lookup, a TCP connect,
the greeting, EHLO and maybe STARTTLS, then QUIT. A run checks a connection
out for a destination, and checks it back in when the run ends if it is still
healthy; one run uses it at a time. Idle connections are closed after
MAX_IDLE_SECONDS, well below the 5 minutes a server waits for the next command
(RFC 5321 §4.5.3.2.7), and a connection the server closed anyway is noticed at
the next MAIL and replaced (worker.Run._send retries once on a fresh one).
"""
from __future__ import annotations

import threading
import time

from mailcore.delivery.client import Connection

MAX_IDLE_SECONDS = 30.0
MAX_IDLE_PER_DESTINATION = 8  # one per worker thread is plenty; more would only idle on the receiver

_lock = threading.Lock()
_idle: dict[str, list[tuple[float, Connection]]] = {}


def checkout(destination: str) -> Connection | None:
    """An idle, healthy connection to `destination` (now the caller's alone), or None."""
    stale: list[Connection] = []
    found: Connection | None = None
    now = time.monotonic()
    with _lock:
        entries = _idle.get(destination, [])
        while entries:
            since, connection = entries.pop()
            if now - since <= MAX_IDLE_SECONDS and not connection.broken:
                found = connection
                found.reused = True
                break
            stale.append(connection)
    for connection in stale:
        connection.close()
    return found


def checkin(destination: str, connection: Connection) -> None:
    """Give a connection back after a run; closed instead when broken, worn out, or too many idle."""
    from mailcore.delivery.worker import MAX_TRANSACTIONS_PER_CONNECTION

    if connection.broken or connection.transactions >= MAX_TRANSACTIONS_PER_CONNECTION:
        connection.close()
        return
    with _lock:
        entries = _idle.setdefault(destination, [])
        if len(entries) < MAX_IDLE_PER_DESTINATION:
            entries.append((time.monotonic(), connection))
            return
    connection.close()


def close_idle(max_idle: float = MAX_IDLE_SECONDS) -> int:
    """Close connections idle longer than `max_idle` (0: all); returns how many were closed."""
    now = time.monotonic()
    closing: list[Connection] = []
    with _lock:
        for destination, entries in list(_idle.items()):
            keep = [(since, c) for since, c in entries if now - since < max_idle]
            closing += [c for since, c in entries if now - since >= max_idle]
            _idle[destination] = keep
    for connection in closing:
        connection.close()
    return len(closing)
