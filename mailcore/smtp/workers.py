"""SMTP in worker processes (MAIL_SMTP_PROCESSES > 1): one Python process runs on one core at a time.

runmail's main process binds the SMTP listening sockets (MX, submission, and
submission with implicit TLS) and starts that many workers, each given the
sockets and one end of a socket pair. A worker accepts connections on the
shared sockets (the kernel hands each new connection to one of them), speaks
SMTP and runs the checks that only read (recipients, SPF, DKIM, DMARC); its
durable writes and its login-failure counts go to the main process
(`mailcore.store.remote`), which also keeps IMAP, POP3 and the delivery runner.

The main process restarts a worker that exits; a worker stops when the main
process is gone (its socket pair closes) or on SIGTERM (it ignores SIGINT: on
Ctrl-C runmail stops it).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from dataclasses import dataclass, field

from mailcore.conf import conf
from mailcore.smtp.listeners import serve
from mailcore.store import aio, remote
from mailcore.tls import server_context, watch_certificates

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0  # seconds a new worker has to start Django and listen
RESTART_DELAY = 1.0  # seconds before a worker that exited is started again
STOP_TIMEOUT = 20.0  # seconds workers have to stop on SIGTERM before they are killed
BACKLOG = 100  # as asyncio's create_server

# A listener runmail hands to the workers: its role (mx or submission), implicit TLS, its sockets.
ListenerSockets = tuple[str, bool, list[socket.socket]]


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for host:port, one per address it names, as asyncio's create_server binds them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets = []
    for family, _type, _proto, _name, address in dict.fromkeys(infos):
        sockets.append(socket.create_server(address, family=family, backlog=BACKLOG))
    return sockets


# The main process -----------------------------------------------------------------------------


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    calls: asyncio.Task[None]  # answering its store calls (remote.serve_worker)


@dataclass
class WorkerPool:
    """`count` SMTP worker processes serving `listeners`; kept at that number until `stop`."""

    listeners: list[ListenerSockets]
    count: int
    _workers: dict[int, _Worker] = field(default_factory=dict)
    _keepers: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: bool = False

    async def start(self) -> None:
        """Start every worker and return once all listen; raises when one cannot start."""
        started = await asyncio.gather(*(self._spawn(i) for i in range(self.count)), return_exceptions=True)
        failed = [result for result in started if isinstance(result, BaseException)]
        for worker in started:
            if isinstance(worker, _Worker):
                self._workers[worker.index] = worker
        if failed:
            await self.stop()
            raise failed[0]
        self._keepers = [asyncio.get_running_loop().create_task(self._keep(i)) for i in range(self.count)]

    async def _spawn(self, index: int) -> _Worker:
        ours, theirs = socket.socketpair()
        listening = [(role, implicit, s.fileno()) for role, implicit, sockets in self.listeners for s in sockets]
        command = [sys.executable, str(conf.project_dir / "manage.py"), "runmail", f"--smtp-worker={theirs.fileno()}"]
        command += [f"--listen={role}:{int(implicit)}:{fd}" for role, implicit, fd in listening]
        try:
            process = await asyncio.create_subprocess_exec(
                *command, pass_fds=[theirs.fileno(), *(fd for _r, _i, fd in listening)], cwd=conf.project_dir
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        try:
            await asyncio.wait_for(remote.wait_ready(reader), READY_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as err:
            writer.close()
            await _end(process)
            raise RuntimeError(f"SMTP worker {index} did not start: {err or 'it exited'}") from None
        log.info("SMTP worker %d (pid %d) listening", index, process.pid)
        return _Worker(index, process, asyncio.get_running_loop().create_task(remote.serve_worker(reader, writer)))

    async def _keep(self, index: int) -> None:
        """Start worker `index` again whenever it exits, until the pool stops."""
        while True:
            worker = self._workers[index]
            status = await worker.process.wait()
            await worker.calls  # every call it made is answered (or its connection is gone)
            if self._stopping:
                return
            pid = worker.process.pid
            log.warning("SMTP worker %d (pid %d) exited (status %s); starting it again", index, pid, status)
            await asyncio.sleep(RESTART_DELAY)
            if self._stopping:
                return
            try:
                self._workers[index] = await self._spawn(index)
            except RuntimeError as err:
                log.error("%s; trying again", err)

    async def stop(self) -> None:
        """SIGTERM every worker, wait for them (killing any that take too long) and close the sockets."""
        self._stopping = True
        for keeper in self._keepers:
            keeper.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
        for worker in self._workers.values():
            with contextlib.suppress(ProcessLookupError):
                worker.process.terminate()
        await asyncio.gather(*(_end(w.process) for w in self._workers.values()))
        await asyncio.gather(*(w.calls for w in self._workers.values()), return_exceptions=True)
        for _role, _implicit, sockets in self.listeners:
            for sock in sockets:
                sock.close()


async def _end(process: asyncio.subprocess.Process) -> None:
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        log.warning("SMTP worker (pid %d) did not stop; killing it", process.pid)
        process.kill()
        await process.wait()


# A worker process -----------------------------------------------------------------------------


def parse_listen(value: str) -> tuple[str, bool, int]:
    """`role:implicit_tls:fd` of runmail's --listen option."""
    role, implicit, fd = value.split(":")
    return role, implicit == "1", int(fd)


async def run_worker(main_fd: int, listening: list[tuple[str, bool, int]]) -> None:
    """Serve SMTP on the inherited sockets until SIGTERM, or until the main process is gone."""
    from mailcore.runner import freeze_startup_objects

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Ctrl-C reaches the whole process group: runmail stops its workers itself (SIGTERM), after
    # the sessions' last writes, rather than seeing them exit and starting them again.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    main_process = await remote.MainProcess.connect(main_fd)
    aio.forward_to(main_process)
    context = server_context()
    servers = [
        await serve(role, "", 0, context, implicit, sock=socket.socket(fileno=fd)) for role, implicit, fd in listening
    ]
    freeze_startup_objects()
    await main_process.say_ready()
    watching = loop.create_task(watch_certificates())
    ended = [loop.create_task(stop.wait()), loop.create_task(main_process.closed.wait())]
    await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
    for task in [*ended, watching]:
        task.cancel()
    for server in servers:
        server.close()
    main_process.close()
    aio.shutdown()
