"""The long-running mail process (`manage.py runmail`): protocol listeners and background loops.

Each protocol package adds a `ListenerSpec` to LISTENERS; each background job
(the in-process delivery and import runners, the Redis event bridge) is a coroutine in
`background_jobs()`. One event loop runs them all; SIGTERM or Ctrl-C closes
the listeners, cancels the jobs and waits for the store's threads.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailcore.conf import conf
from mailcore.store import aio
from mailcore.store.events import hub
from mailcore.tls import server_context, watch_certificates

if TYPE_CHECKING:
    from mailcore.smtp.workers import WorkerPool

log = logging.getLogger(__name__)

# serve(host, port, tls_context, implicit_tls) starts one listener and returns its server.
ServeFunction = Callable[[str, int, ssl.SSLContext, bool], Awaitable[asyncio.AbstractServer]]


@dataclass(frozen=True)
class ListenerSpec:
    """One listener: a name for logs, the port setting (MAIL_<port_name>_PORT), TLS mode, starter."""

    label: str
    port_name: str
    implicit_tls: bool
    serve: Callable[[], ServeFunction]  # imported lazily so that a listener's module loads only when used
    smtp_role: str = ""  # mx or submission: served by the SMTP worker processes when MAIL_SMTP_PROCESSES > 1


def _smtp_mx() -> ServeFunction:
    from mailcore.smtp.listeners import serve_mx

    return serve_mx


def _smtp_submission() -> ServeFunction:
    from mailcore.smtp.listeners import serve_submission

    return serve_submission


def _pop3() -> ServeFunction:
    from mailcore.pop3 import serve

    return serve


def _imap_serve() -> ServeFunction:
    from mailcore.imap.session import serve

    return serve


LISTENERS: list[ListenerSpec] = [
    ListenerSpec("SMTP (MX)", "SMTP", False, _smtp_mx, smtp_role="mx"),
    ListenerSpec("Submission (STARTTLS)", "SUBMISSION", False, _smtp_submission, smtp_role="submission"),
    ListenerSpec("Submission (TLS)", "SUBMISSIONS", True, _smtp_submission, smtp_role="submission"),
    ListenerSpec("POP3", "POP3", implicit_tls=False, serve=_pop3),  # RFC 1939, STLS (RFC 2595)
    ListenerSpec("POP3S", "POP3S", implicit_tls=True, serve=_pop3),  # RFC 8314 §3.3 implicit TLS
    # RFC 9051 §6.2.1 STARTTLS on MAIL_IMAP_PORT; RFC 8314 implicit TLS on MAIL_IMAPS_PORT.
    ListenerSpec("IMAP", "IMAP", implicit_tls=False, serve=_imap_serve),
    ListenerSpec("IMAPS", "IMAPS", implicit_tls=True, serve=_imap_serve),
]


def register(spec: ListenerSpec) -> None:
    if all(existing.port_name != spec.port_name for existing in LISTENERS):
        LISTENERS.append(spec)


Job = Callable[[], Coroutine[Any, Any, None]]
# Jobs other apps add (the webmail's undo-send outbox registers itself in its AppConfig.ready),
# so that mailcore does not import the apps built on it.
REGISTERED_JOBS: list[Job] = []


def register_job(job: Job) -> None:
    if job not in REGISTERED_JOBS:
        REGISTERED_JOBS.append(job)


def background_jobs() -> list[Job]:
    jobs: list[Job] = [watch_certificates]
    if conf.redis_url:
        jobs.append(hub.redis_bridge)
    if not conf.celery_broker_url:  # embedded mode: deliver outbound mail and run import jobs in this process
        from mailcore.delivery.runner import delivery_runner
        from mailcore.importjobs import import_runner

        jobs += [delivery_runner, import_runner]
    return jobs + REGISTERED_JOBS


async def start_listeners() -> list[asyncio.AbstractServer]:
    """Start every listener this process serves; the SMTP ones go to `start_smtp_workers` when there are workers."""
    context = server_context()
    servers = []
    for spec in LISTENERS:
        port = conf.port(spec.port_name)
        if port == 0:
            log.info("%s listener is off (MAIL_%s_PORT=0)", spec.label, spec.port_name)
            continue
        if spec.smtp_role and conf.smtp_processes > 1:
            continue
        server = await spec.serve()(conf.bind, port, context, spec.implicit_tls)
        log.info("%s listening on %s port %s%s", spec.label, conf.bind, port, " (TLS)" if spec.implicit_tls else "")
        servers.append(server)
    return servers


async def start_smtp_workers() -> WorkerPool | None:
    """With MAIL_SMTP_PROCESSES above 1: bind the SMTP listeners and start the worker processes serving them."""
    if conf.smtp_processes <= 1:
        return None
    from mailcore.smtp.workers import WorkerPool, bind

    listeners = []
    for spec in LISTENERS:
        port = conf.port(spec.port_name)
        if spec.smtp_role and port:
            listeners.append((spec.smtp_role, spec.implicit_tls, bind(conf.bind, port)))
            log.info("%s listening on %s port %s%s in %d worker processes", spec.label, conf.bind, port,
                     " (TLS)" if spec.implicit_tls else "", conf.smtp_processes)
    pool = WorkerPool(listeners, conf.smtp_processes)
    await pool.start()
    return pool


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the new soft limit.

    Every IMAP IDLE, SMTP and POP3 session holds a socket. systemd starts services with a soft limit
    of 1024 (kept low for programs that use select()) and a hard one far above it, and asks programs
    that need more to raise it themselves; asyncio uses epoll, which has no such ceiling. At the soft
    limit accept() fails for every listener at once, so 1,000 idle IMAP clients would keep all mail out.
    SMTP worker processes inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as err:  # a hard limit of "unlimited" is refused on some systems
            log.warning("open files limit stays %s (hard %s): %s", soft, hard, err)
            return soft
        log.info("open files limit raised from %s to %s", soft, hard)
    return hard


def freeze_startup_objects() -> None:
    """Take what start-up made (modules, Django's apps, URLs and settings) out of the cyclic collector's walks.

    They live as long as the process; left in, every full collection walked them all: measured about
    60 ms, a pause for every session at once (the first one came during the first busy seconds).
    Frozen, a full collection walks only what the sessions made (about 1 ms).
    """
    gc.collect()
    gc.freeze()


async def run_forever() -> None:
    """Run every listener and background job until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    raise_open_files_limit()
    servers = await start_listeners()
    workers = await start_smtp_workers()
    tasks = [asyncio.create_task(job()) for job in background_jobs()]
    log.info("runmail ready: %d listener(s), %d background job(s)%s", len(servers), len(tasks),
             f", SMTP in {workers.count} worker processes" if workers else "")
    freeze_startup_objects()
    try:
        await stop.wait()
    finally:
        log.info("runmail stopping")
        if workers:
            await workers.stop()  # first: their sessions' writes still come here
        for server in servers:
            server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            await server.wait_closed()
        aio.shutdown()
        log.info("runmail stopped")
