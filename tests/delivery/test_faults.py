"""Nothing lost under faults, with real Celery worker processes on a real (throwaway) Redis.

Each test starts its own redis-server on a free loopback port: the shared Redis
at 127.0.0.1:6379 is never flushed. The test process never sends tasks itself
(its wake-ups are switched off); a subprocess runs the real `sweep_queue` task
against the throwaway broker, as Celery beat would every minute. PostgreSQL:
the dropped-connection test terminates the worker's own backends with
pg_terminate_backend; where the suite may restart the server itself
(MAIL_TEST_RESTART_POSTGRES=1, which `.ci/run` sets for its own machine's
server), another test restarts it for real in the middle of a delivery.
Bounded: a handful of messages (200 for FLUSHALL), every wait has a deadline.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.conf import settings as django_settings
from django.db import connection, connections

from mailcore.delivery import queue
from mailcore.models import OutboundRecipient
from tests.delivery.test_workers import _worker_env, wait_for
from tests.support import celery_worker, processes
from tests.support.net import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server (debian-packages.txt)"),
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = b"From: alice@example.test\r\nSubject: fault\r\n\r\nbody\r\n"
QUEUE = "fault-tests"
WORKER_APP_NAME = "mail-fault-worker"
REDIS_START_SECONDS = 10.0
WAIT_SECONDS = 60.0


class ThrowawayRedis:
    """A redis-server of our own on 127.0.0.1:<free port>, no persistence, killed after the test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                   "--appendonly", "no", "--protected-mode", "yes"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: self.cli("PING") == "PONG", REDIS_START_SECONDS), "throwaway redis did not start"

    def cli(self, *args: str) -> str:
        result = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
                                capture_output=True, text=True, timeout=10)
        return result.stdout.strip()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def broker() -> Iterator[ThrowawayRedis]:
    redis = ThrowawayRedis()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
def no_wake_ups() -> Iterator[None]:
    """The test process queues rows only; tasks come from the subprocess sweep (as from beat)."""
    hooks, queue._wake_hooks[:] = list(queue._wake_hooks), []
    yield
    queue._wake_hooks[:] = hooks


class HoldingHandler:
    """Wraps the receiver's handler: the first DATA waits (the worker is mid-delivery) until released.

    The held transaction never gets its 250: the client is gone, so (like any
    real receiver whose client vanished before the final reply) it is not kept.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.holding = threading.Event()
        self.release = threading.Event()
        self.held = False
        self.keep_held = False  # on release: answer 250 and keep it (True) or abandon it (False)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not self.held:
            self.held = True
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)
            if not self.keep_held:
                return "421 4.3.0 held transaction abandoned"
        return await self.inner.handle_DATA(server, session, envelope)


@pytest.fixture
def holding(remote) -> HoldingHandler:
    handler = HoldingHandler(remote.handler)
    remote.controller.handler = handler  # each new SMTP session is built with controller.handler
    return handler


def env_for(settings, blob_dir, dns_server, remote, broker: ThrowawayRedis) -> dict[str, str]:
    env = _worker_env(settings, blob_dir, dns_server, remote, QUEUE)
    env["CELERY_BROKER_URL"] = broker.url
    env.pop("REDIS_URL", None)  # the cache and events stay in-process; only the broker is under test
    if env["DATABASE_URL"].startswith("postgres"):
        env["DATABASE_URL"] += f"?application_name={WORKER_APP_NAME}"
    return env


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    command = celery_worker.worker_command(QUEUE, "--without-heartbeat")
    return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)


stop = processes.stop


def sweep(env: dict[str, str]) -> int:
    """Run the real beat task once against the throwaway broker; returns how many tasks it sent."""
    code = "import django; django.setup(); from mailcore.tasks import sweep_queue; print(sweep_queue())"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    return int(result.stdout.strip().splitlines()[-1])


def expire_leases() -> None:
    """What 30 minutes (claims.LEASE_SECONDS) would do to a dead worker's leases, without waiting them out."""
    from django.utils import timezone

    OutboundRecipient.objects.filter(state="sending").update(lease_expires_at=timezone.now())


def arrivals(remote) -> Counter:
    return Counter(r for m in remote.messages for r in m.recipients)


def all_delivered(ids: list[int]) -> bool:
    rows = OutboundRecipient.objects.filter(message_id__in=ids)
    return rows.exclude(state="delivered").count() == 0


def test_a_worker_killed_mid_delivery_loses_nothing_after_its_lease_expires(
        remote, holding, settings, blob_dir, dns_server, broker, no_wake_ups):
    env = env_for(settings, blob_dir, dns_server, remote, broker)
    ids = [queue.enqueue(MESSAGE, "alice@example.test", [f"k{n}@remote.test"]) for n in range(5)]
    first = start_worker(env)
    try:
        assert sweep(env) == 5
        assert holding.holding.wait(WAIT_SECONDS), "the worker never reached DATA"
        first.send_signal(signal.SIGKILL)  # mid-delivery: DATA sent, no reply yet
        first.wait(10)
    finally:
        stop(first)
    holding.release.set()
    killed = OutboundRecipient.objects.get(state="sending")
    assert killed.lease_owner and remote.messages == []

    second = start_worker(env)
    try:
        assert sweep(env) == 4  # the leased row is not due while its lease lasts
        assert wait_for(lambda: OutboundRecipient.objects.filter(state="delivered").count() == 4, WAIT_SECONDS)
        assert OutboundRecipient.objects.get(pk=killed.pk).state == "sending"
        expire_leases()
        assert sweep(env) == 1
        assert wait_for(lambda: all_delivered(ids), WAIT_SECONDS)
    finally:
        stop(second)
    assert arrivals(remote) == Counter({f"k{n}@remote.test": 1 for n in range(5)})


def test_flushall_with_200_messages_queued_loses_none_after_the_sweep(
        remote, settings, blob_dir, dns_server, broker, no_wake_ups):
    env = env_for(settings, blob_dir, dns_server, remote, broker)
    ids = [queue.enqueue(MESSAGE, "alice@example.test", [f"f{n}@remote.test"]) for n in range(200)]
    assert sweep(env) == 200
    assert broker.cli("LLEN", QUEUE) == "200"
    assert broker.cli("FLUSHALL") == "OK"  # the throwaway server only
    assert broker.cli("LLEN", QUEUE) == "0"
    worker = start_worker(env)
    try:
        time.sleep(1)
        assert remote.messages == []  # nothing left in the broker to wake the worker
        assert sweep(env) == 200
        assert wait_for(lambda: all_delivered(ids), WAIT_SECONDS)
    finally:
        stop(worker)
    assert arrivals(remote) == Counter({f"f{n}@remote.test": 1 for n in range(200)})


def terminate_worker_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s AND pid <> pg_backend_pid()",
            [WORKER_APP_NAME],
        )
        return int(cursor.fetchone()[0])


@pytest.mark.skipif(not django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="needs PostgreSQL (DATABASE_URL=postgres://...)")
def test_a_dropped_database_connection_mid_delivery_loses_nothing_and_sends_once(
        remote, holding, settings, blob_dir, dns_server, broker, no_wake_ups):
    env = env_for(settings, blob_dir, dns_server, remote, broker)
    holding.held = True  # let the first message through: the worker is warm
    warm = queue.enqueue(MESSAGE, "alice@example.test", ["warm@remote.test"])
    worker = start_worker(env)
    try:
        assert sweep(env) == 1
        assert wait_for(lambda: all_delivered([warm]), WAIT_SECONDS)
        holding.held, holding.keep_held = False, True  # the next DATA waits; its backend dies meanwhile
        holding.release.clear()
        mid = queue.enqueue(MESSAGE, "alice@example.test", ["mid@remote.test"])
        assert sweep(env) == 1
        assert holding.holding.wait(WAIT_SECONDS)
        assert terminate_worker_backends() >= 1
        holding.release.set()  # the receiver's 250 comes after the worker lost its database connection
        # The worker records the 250 on a fresh connection: delivered, not left leased to be sent again.
        assert wait_for(lambda: all_delivered([mid]), WAIT_SECONDS)
    finally:
        stop(worker)
    assert arrivals(remote) == Counter({"warm@remote.test": 1, "mid@remote.test": 1})


def restartable_postgres() -> tuple[str, str] | None:
    """(version, name) of the local PostgreSQL cluster the tests use, when they may restart it."""
    if django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql") is False:
        return None
    if os.environ.get("MAIL_TEST_RESTART_POSTGRES") != "1" or shutil.which("pg_lsclusters") is None:
        return None
    port = str(django_settings.DATABASES["default"].get("PORT") or 5432)
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, timeout=30).stdout
    for line in listing.splitlines():
        version, name, cluster_port, status, *_ = line.split()
        if cluster_port == port and status == "online":
            return version, name
    return None


def restart_postgres(cluster: tuple[str, str]) -> None:
    """Restart the server (fast shutdown: every session is cut), wait until it answers again."""
    version, name = cluster
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", "-m", "fast"],
                   check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = str(django_settings.DATABASES["default"].get("PORT") or 5432)
    ready = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", port]
    assert wait_for(lambda: subprocess.run(ready, timeout=10).returncode == 0, WAIT_SECONDS), "no PostgreSQL"
    connections.close_all()  # this process's sessions died too: the next query opens a new one


@pytest.mark.skipif(restartable_postgres() is None,
                    reason="needs a local PostgreSQL the tests may restart (MAIL_TEST_RESTART_POSTGRES=1, .ci/run)")
def test_a_postgresql_restart_mid_delivery_loses_nothing_and_sends_once(
        remote, holding, settings, blob_dir, dns_server, broker, no_wake_ups):
    cluster = restartable_postgres()
    assert cluster is not None
    env = env_for(settings, blob_dir, dns_server, remote, broker)
    holding.held = True  # the first message goes through: the worker is warm, its connection open
    warm = queue.enqueue(MESSAGE, "alice@example.test", ["warm@remote.test"])
    worker = start_worker(env)
    try:
        assert sweep(env) == 1
        assert wait_for(lambda: all_delivered([warm]), WAIT_SECONDS)
        holding.held, holding.keep_held = False, True  # the next DATA waits while the database restarts
        holding.release.clear()
        mid = queue.enqueue(MESSAGE, "alice@example.test", ["mid@remote.test"])
        assert sweep(env) == 1
        assert holding.holding.wait(WAIT_SECONDS)
        restart_postgres(cluster)
        holding.release.set()  # the receiver's 250 comes after the restart cut the worker's connection
        assert wait_for(lambda: all_delivered([mid]), WAIT_SECONDS)
        after = queue.enqueue(MESSAGE, "alice@example.test", ["after@remote.test"])  # and the queue goes on
        assert sweep(env) == 1
        assert wait_for(lambda: all_delivered([after]), WAIT_SECONDS)
    finally:
        stop(worker)
    assert arrivals(remote) == Counter({"warm@remote.test": 1, "mid@remote.test": 1, "after@remote.test": 1})
