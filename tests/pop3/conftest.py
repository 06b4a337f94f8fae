"""A real POP3 listener on 127.0.0.1 port 0 (its own event loop in a thread), and clients for it."""
from __future__ import annotations

import asyncio
import poplib
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from mailcore import store
from mailcore.pop3 import serve
from mailcore.store import aio
from mailcore.tls import server_context

ALICE = ("alice@example.test", "alice-secret-pw")
BOB = ("bob@example.test", "bob-secret-pw")


class ServerThread:
    """serve() on its own event loop; stop() ends every session (as a crash or restart would)."""

    def __init__(self, implicit_tls: bool = False) -> None:
        self.implicit_tls = implicit_tls
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(serve("127.0.0.1", 0, server_context(), self.implicit_tls))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def start(self) -> ServerThread:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def stop(self) -> None:
        async def shut() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def server(transactional_db) -> Iterator[ServerThread]:
    running = ServerThread().start()
    yield running
    running.stop()
    aio.shutdown()


@pytest.fixture
def tls_server(transactional_db) -> Iterator[ServerThread]:
    running = ServerThread(implicit_tls=True).start()
    yield running
    running.stop()
    aio.shutdown()


def client_tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def pop(server: ServerThread) -> poplib.POP3:
    return poplib.POP3("127.0.0.1", server.port, timeout=10)


def login(server: ServerThread, who: tuple[str, str] = ALICE) -> poplib.POP3:
    client = pop(server)
    client.user(who[0])
    client.pass_(who[1])
    return client


def deliver(raw: bytes, to: str = "alice@example.test") -> None:
    report = store.deliver(raw, [to])
    assert report.all_delivered


def message(n: int, body: str = "Hello.") -> bytes:
    return (
        f"From: sender@example.org\r\nTo: alice@example.test\r\nSubject: message {n}\r\n"
        f"Message-ID: <m{n}@example.org>\r\n\r\n{body}\r\n"
    ).encode()


def inbox_uids(account) -> list[int]:
    return store.uids(store.get_folder(account.pk, "INBOX"))


class RawClient:
    """A line client over a plain socket, for exact bytes and malformed input."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def command(self, data: bytes) -> bytes:
        self.send(data + b"\r\n")
        return self.line()

    def multiline(self) -> bytes:
        """The body of a multi-line response as sent (still dot-stuffed), up to the terminating dot line."""
        while b"\r\n.\r\n" not in b"\r\n" + self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        if self.buffer.startswith(b".\r\n"):
            self.buffer = self.buffer[3:]
            return b""
        end = self.buffer.index(b"\r\n.\r\n")
        body, self.buffer = self.buffer[: end + 2], self.buffer[end + 5 :]
        return body

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def unstuff(body: bytes) -> bytes:
    """RFC 1939 §3: undo byte-stuffing of a multi-line response body."""
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
