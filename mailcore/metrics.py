"""Prometheus metrics: the counters every process bumps, and the exposition the web process serves.

Protocol and delivery code call the small functions here (`connection`,
`auth_failure`, `smtp_transaction`, `delivery_attempt`) and nothing else of
prometheus_client. The web, runmail and Celery worker processes are separate
processes, so counters use prometheus_client's multiprocess mode: each process
writes its values into memory-mapped files in PROMETHEUS_MULTIPROC_DIR (set by
config/settings.py, `var/metrics` by default) and `/metrics` sums every file it
finds there. Files are named after host and process id, so containers sharing
the directory on one volume never write the same file. Queue size and the age
of the oldest queued message are read from the database at scrape time.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator

from django.conf import settings

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.PROMETHEUS_MULTIPROC_DIR))

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


def _process_identifier() -> str:
    # "_" separates fields of the file name prometheus_client parses; keep it out of the host name.
    return f"{socket.gethostname().replace('_', '-')}-{os.getpid()}"


values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)

PROTOCOLS = ("smtp", "submission", "imap", "pop3")
# Seconds from enqueue to the remote 250: a local hop, a slow MX, retries after minutes and hours.
LATENCY_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)

CONNECTIONS = Counter("mail_connections", "Client connections accepted, by protocol", ["protocol"])
AUTH_FAILURES = Counter("mail_auth_failures", "Failed logins, by protocol", ["protocol"])
RECEIVED = Counter(
    "mail_smtp_messages_received",
    "SMTP transactions that reached the end of DATA, by listener (mx, submission) and result",
    ["listener", "result"],
)
DELIVERY_ATTEMPTS = Counter(
    "mail_delivery_attempts", "Outbound delivery attempts per recipient, by resulting state", ["result"]
)
DELIVERY_LATENCY = Histogram(
    "mail_delivery_latency_seconds", "Seconds from enqueue to remote acceptance", buckets=LATENCY_BUCKETS
)


def connection(protocol: str) -> None:
    CONNECTIONS.labels(protocol).inc()


def auth_failure(protocol: str) -> None:
    AUTH_FAILURES.labels(protocol).inc()


def reply_result(code: int) -> str:
    """RFC 5321 §4.2.1: 2yz accepted, 4yz deferred (try again), 5yz rejected."""
    return {2: "accepted", 4: "deferred", 5: "rejected"}.get(code // 100, "other")


def smtp_transaction(listener: str, code: int) -> None:
    RECEIVED.labels(listener, reply_result(code)).inc()


def delivery_attempt(result: str, latency_seconds: float | None = None) -> None:
    """`result` is the recipient's new state (delivered, deferred, bounced, expired)."""
    DELIVERY_ATTEMPTS.labels(result).inc()
    if latency_seconds is not None:
        DELIVERY_LATENCY.observe(max(0.0, latency_seconds))


class QueueCollector(Collector):
    """The outbound queue as the database has it now: recipients per state, age of the oldest."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from mailcore.delivery.queue import queue_snapshot

        counts, oldest_age = queue_snapshot()
        size = GaugeMetricFamily("mail_queue_recipients", "Outbound recipients waiting, by state", labels=["state"])
        for state, count in sorted(counts.items()):
            size.add_metric([state], count)
        yield size
        yield GaugeMetricFamily(
            "mail_queue_oldest_age_seconds", "Age of the oldest waiting outbound message (0 when none)", oldest_age
        )


def exposition() -> tuple[bytes, str]:
    """The Prometheus text format of every process's counters plus the queue: (body, content type)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QueueCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
