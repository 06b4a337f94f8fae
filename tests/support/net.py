"""Loopback ports for tests and benchmarks: a free one, and waiting until a server listens on one."""
from __future__ import annotations

import socket
import subprocess
import time


class NotListening(RuntimeError):
    """The server exited, or nothing listened on the port in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses at the moment of asking."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    """Return once 127.0.0.1:`port` accepts connections; raise NotListening if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise NotListening(f"the server exited early with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise NotListening(f"nothing listened on port {port} within {timeout:.0f} s")


def stalled_reader(port: int, request: bytes, stall_seconds: float) -> bytes:
    """Send `request` with a tiny receive buffer, read nothing for `stall_seconds`, then everything left.

    What a client that stops reading a large reply sees: the bytes the server
    managed to send before it gave up (the connection then ends, or is reset).
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(10)
        sock.sendall(request)
        time.sleep(stall_seconds)
        received = b""
        try:
            while chunk := sock.recv(1 << 20):
                received += chunk
        except ConnectionResetError:
            pass
        return received
    finally:
        sock.close()
