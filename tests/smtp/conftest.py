"""SMTP test fixtures: real listeners on 127.0.0.1 port 0 in a server thread, and a raw-line client."""
from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailcore.store import aio
from tests.support.dnsserver import dns_server  # noqa: F401  (a fixture, used by name)

HOSTNAME = "mx.example.test"
TIMEOUT = 10


SESSIONS_END_WAIT = 0.05


def is_session(task: asyncio.Task) -> bool:
    """An SMTP session's task (aiosmtpd's `_handle_client`), not the store's commit loop."""
    return task.get_coro().__qualname__.endswith("._handle_client")


class ServerThread:
    """An event loop in a thread running SMTP listeners, as runmail does."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.AbstractServer] = []

    def start(self, role: str, implicit_tls: bool = False, **options) -> int:
        """Start one listener ("mx" or "submission"); returns its port."""
        from mailcore.smtp.listeners import serve
        from mailcore.tls import server_context

        async def starter() -> asyncio.AbstractServer:
            return await serve(role, "127.0.0.1", 0, server_context(), implicit_tls, **options)

        server = asyncio.run_coroutine_threadsafe(starter(), self.loop).result(TIMEOUT)
        self.servers.append(server)
        return server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def closer() -> None:
            for server in self.servers:
                server.close()
            # Let open sessions see their transports close: as long as one is left, for SESSIONS_END_WAIT at most.
            ends = self.loop.time() + SESSIONS_END_WAIT
            while any(is_session(task) for task in asyncio.all_tasks()) and self.loop.time() < ends:
                await asyncio.sleep(0.002)

        asyncio.run_coroutine_threadsafe(closer(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()  # and its default executor's threads: each left alive kept a database session open
        aio.shutdown()  # close the store threads' database connections


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> tuple[str, str]:
    from mailcore.tls import _make_self_signed

    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    _make_self_signed(cert, key, HOSTNAME)
    return str(cert), str(key)


@pytest.fixture
def smtp_settings(settings, tls_files, dns_server):  # noqa: F811
    """Our hostname and certificate; DNS (SPF, DKIM, DMARC) answered by a server on loopback."""
    settings.MAIL_HOSTNAME = HOSTNAME
    settings.MAIL_TLS_CERT, settings.MAIL_TLS_KEY = tls_files
    return settings


@pytest.fixture
def servers(smtp_settings) -> Iterator[ServerThread]:
    from mailcore.auth import throttle

    thread = ServerThread()
    try:
        yield thread
    finally:
        thread.stop()
        throttle.reset("127.0.0.1")


@pytest.fixture
def mx_port(servers: ServerThread) -> int:
    return servers.start("mx")


@pytest.fixture
def submission_port(servers: ServerThread) -> int:
    return servers.start("submission")


@pytest.fixture
def submissions_port(servers: ServerThread) -> int:
    return servers.start("submission", implicit_tls=True)


def client_tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class RawClient:
    """A line client for exact bytes: send anything, read whole (multi-line) replies."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; unread: {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def reply(self) -> str:
        """One reply; multi-line replies joined with newlines."""
        lines = [self._line()]
        while lines[-1][3:4] == b"-":
            lines.append(self._line())
        return "\n".join(line.decode("utf-8") for line in lines)

    def command(self, line: str | bytes) -> str:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def is_closed(self) -> bool:
        """True when the server closed the connection (EOF) with nothing more to read."""
        if self.buffer:
            return False
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True

    def starttls(self) -> None:
        self.sock = client_tls_context().wrap_socket(self.sock, server_hostname=HOSTNAME)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_client():
    clients: list[RawClient] = []

    def connect(port: int, greet: bool = True) -> RawClient:
        client = RawClient(port)
        clients.append(client)
        if greet:
            assert client.reply() == f"220 {HOSTNAME} ESMTP ready"
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def blobs_unwritable(blob_dir: Path) -> Path:
    """Make blob storage fail: a plain file where the blob directory should be."""
    blob_dir.parent.mkdir(parents=True, exist_ok=True)
    blob_dir.write_bytes(b"not a directory")
    return blob_dir
