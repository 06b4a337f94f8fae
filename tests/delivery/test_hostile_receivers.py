"""Receivers that answer in ways meant to hold or exhaust the delivering side: a reply without end,
a reply dripped a byte at a time. Each is a raw socket server on 127.0.0.1 that speaks just enough
SMTP, bounded in time and stopping by itself."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from mailcore.delivery import queue, worker
from mailcore.models import OutboundRecipient

from .conftest import REMOTE_ZONE

MESSAGE = b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n"
SCRIPT_SECONDS = 20  # no connection is served longer than this


class ScriptedReceiver:
    """Accepts connections on 127.0.0.1 and answers each with `greet_and_ehlo`, then a plain SMTP session
    that takes the message (so that a client which bore the hostile part delivers)."""

    def __init__(self, greet_and_ehlo: Callable[[socket.socket], None]) -> None:
        self.greet_and_ehlo = greet_and_ehlo
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.delivered = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(SCRIPT_SECONDS)
        reader = conn.makefile("rb")
        try:
            self.greet_and_ehlo(conn)
            while not self.stopping.is_set():
                command = reader.readline().upper()
                if not command or command.startswith(b"QUIT"):
                    conn.sendall(b"221 bye\r\n")
                    return
                if command.startswith(b"DATA"):
                    conn.sendall(b"354 go on\r\n")
                    while reader.readline() not in (b".\r\n", b""):
                        pass
                    self.delivered += 1
                conn.sendall(b"250 ok\r\n")
        except OSError:
            return  # the client gave up on us: what these tests want to see
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def scripted(settings, dns_server, alice) -> Iterator[Callable[..., ScriptedReceiver]]:
    started: list[ScriptedReceiver] = []
    dns_server.records.update(REMOTE_ZONE)
    settings.MAIL_ALLOW_PRIVATE_MX = True
    settings.MAIL_HOSTNAME = "mail.example.test"

    def start(greet_and_ehlo: Callable[[socket.socket], None]) -> ScriptedReceiver:
        receiver = ScriptedReceiver(greet_and_ehlo)
        settings.MAIL_OUTBOUND_PORT = receiver.port
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def read_line(conn: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise ConnectionError("closed")
        line += chunk
    return line


def deliver_once() -> OutboundRecipient:
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    return OutboundRecipient.objects.get(message_id=message_id)


def assert_deferred_undelivered(receiver: ScriptedReceiver, reason: str) -> None:
    """One delivery attempt ends deferred, the connection given up for `reason`, nothing taken."""
    row = deliver_once()
    assert (row.state, row.last_reply) == (
        "deferred", f"451 4.4.1 connection to mx.remote.test [127.0.0.1]:{receiver.port} failed: {reason}")
    assert receiver.delivered == 0


def test_a_reply_that_does_not_end_is_cut_off_and_the_mail_deferred(scripted):
    """2 MB of `250-` lines to EHLO (then, for a client that bore them, a normal session): the delivering
    process stops reading at 64 KB, closes, and tries again later."""
    def flood(conn: socket.socket) -> None:
        conn.sendall(b"220 mx.remote.test ESMTP\r\n")
        read_line(conn)  # EHLO
        line = b"250-" + b"x" * 70 + b"\r\n"
        for _ in range(30_000):
            conn.sendall(line)
        conn.sendall(b"250 SIZE 1000000\r\n")

    receiver = scripted(flood)
    assert_deferred_undelivered(receiver, "reply longer than 65536 octets")


def test_a_reply_dripped_a_byte_at_a_time_is_given_up_after_the_timeout(scripted, settings):
    """Each byte comes within the timeout, the whole reply does not: smtplib's per-read timeout never
    fired, so such a receiver held a delivery thread for as long as it went on."""
    settings.MAIL_SMTP_CLIENT_TIMEOUT = 1

    def drip(conn: socket.socket) -> None:
        for byte in b"220 mx.remote.test ESMTP slowly\r\n":
            conn.sendall(bytes([byte]))
            time.sleep(0.1)
        read_line(conn)
        conn.sendall(b"250 mx.remote.test\r\n")

    receiver = scripted(drip)
    assert_deferred_undelivered(receiver, "no whole reply within 1 s")


def test_a_receiver_that_answers_in_time_in_pieces_gets_the_mail(scripted):
    """Replies split over several packets, each line its own, are read whole: the bound is on time and size."""
    def pieces(conn: socket.socket) -> None:
        for piece in (b"22", b"0 mx.remote", b".test ESMTP\r", b"\n"):
            conn.sendall(piece)
            time.sleep(0.05)
        read_line(conn)
        for piece in (b"250-mx.remote.test\r\n", b"250-PIPE", b"LINING\r\n250 8BITMIME\r\n"):
            conn.sendall(piece)
            time.sleep(0.05)

    receiver = scripted(pieces)
    row = deliver_once()
    assert (row.state, row.last_reply) == ("delivered", "250 2.0.0 ok")
    assert receiver.delivered == 1
