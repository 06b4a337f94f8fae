"""A real IMAP listener on 127.0.0.1 port 0 (plain with STARTTLS, and implicit TLS), run in its own thread."""
from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

PASSWORD = "alice-secret-pw"


@dataclass
class Server:
    port: int
    tls_port: int
    loop: asyncio.AbstractEventLoop

    def call(self, coro):  # run a coroutine on the server's loop (used to deliver from "elsewhere")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


@pytest.fixture
def imap_server(transactional_db, settings, tmp_path) -> Iterator[Server]:
    from mailcore.imap.session import serve
    from mailcore.tls import server_context

    settings.VAR_DIR = str(tmp_path)
    context = server_context()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    if settings.REDIS_URL:  # events travel through Redis: this "process" needs the bridge, as runmail runs it
        asyncio.run_coroutine_threadsafe(_start_bridge(), loop).result(10)
    plain = asyncio.run_coroutine_threadsafe(serve("127.0.0.1", 0, context, False), loop).result(10)
    tls = asyncio.run_coroutine_threadsafe(serve("127.0.0.1", 0, context, True), loop).result(10)
    try:
        yield Server(plain.sockets[0].getsockname()[1], tls.sockets[0].getsockname()[1], loop)
    finally:
        asyncio.run_coroutine_threadsafe(_shutdown([plain, tls]), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _start_bridge() -> None:
    from mailcore.store import hub

    ready = asyncio.Event()
    asyncio.get_running_loop().create_task(hub.redis_bridge(ready))
    await asyncio.wait_for(ready.wait(), 5)


async def _shutdown(servers) -> None:
    for server in servers:
        server.close()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def account(alice):
    return alice


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class RawClient:
    """A line client for exact replies and malformed input."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> bytes:
        return self.file.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, data: bytes, tag: bytes = b"a") -> list[bytes]:
        """Send `data` (one command, CRLF added) and return every line up to the tagged reply."""
        self.send(data + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            if not line:
                return lines
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def login(self) -> None:
        assert self.command(b"l LOGIN alice@example.test " + PASSWORD.encode(), b"l")[-1].startswith(b"l OK")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(imap_server, account) -> Iterator[RawClient]:
    client = RawClient(imap_server.port)
    yield client
    client.close()
