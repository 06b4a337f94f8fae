"""Receivers that answer in ways meant to hold or exhaust the delivering side: a reply without end,
a reply dripped a byte at a time, data taken slowly or not at all; and slow receivers that play fair,
which must get the mail. Each is a raw socket server on 127.0.0.1 that speaks just enough SMTP,
bounded in time and stopping by itself."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

import pytest

from mailcore.delivery import claims, client, pool, queue, worker
from mailcore.models import OutboundRecipient

from .conftest import REMOTE_ZONE

MESSAGE = b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n"
SCRIPT_SECONDS = 20  # no connection is served longer than this
END_OF_DATA = b"\r\n.\r\n"
# A read_data script: reads the data after 354 from the reader and says whether it came whole.
DataReader = Callable[[BinaryIO], bool]


def read_data_at_once(reader: BinaryIO) -> bool:
    while (line := reader.readline()) not in (b".\r\n", b""):
        pass
    return bool(line)


class ScriptedReceiver:
    """Accepts connections on 127.0.0.1 and answers each with `greet_and_ehlo`, then a plain SMTP session
    that takes the message (so that a client which bore the hostile part delivers), the data read by
    `read_data`; with a small receive buffer, so that what the receiver has not read holds the sender back."""

    def __init__(self, greet_and_ehlo: Callable[[socket.socket], None], read_data: DataReader,
                 accept_after: float = 0.0) -> None:
        self.greet_and_ehlo = greet_and_ehlo
        self.read_data = read_data
        self.accept_after = accept_after
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=0 if accept_after else None)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        # With `accept_after`, one connection of our own fills the accept queue (backlog 0), so that the
        # kernel drops the next connection's SYNs until the receiver starts accepting.
        self.filler = socket.create_connection(("127.0.0.1", self.port)) if accept_after else None
        self.delivered = 0
        self.connections = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.stopping.wait(self.accept_after)
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
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
                    if not self.read_data(reader):
                        return
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
        if self.filler:
            self.filler.close()


@pytest.fixture
def scripted(settings, dns_server, alice) -> Iterator[Callable[..., ScriptedReceiver]]:
    started: list[ScriptedReceiver] = []
    dns_server.records.update(REMOTE_ZONE)
    settings.MAIL_ALLOW_PRIVATE_MX = True
    settings.MAIL_HOSTNAME = "mail.example.test"

    def start(greet_and_ehlo: Callable[[socket.socket], None], read_data: DataReader = read_data_at_once,
              accept_after: float = 0.0) -> ScriptedReceiver:
        receiver = ScriptedReceiver(greet_and_ehlo, read_data, accept_after)
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


def deliver_once(message: bytes = MESSAGE) -> OutboundRecipient:
    message_id = queue.enqueue(message, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    return OutboundRecipient.objects.get(message_id=message_id)


def assert_deferred_undelivered(receiver: ScriptedReceiver, reason: str, message: bytes = MESSAGE,
                                during_data: bool = False) -> None:
    """One delivery attempt ends deferred, the connection given up for `reason` (while opening it, or
    `during_data`), nothing taken."""
    row = deliver_once(message)
    given_up = (f"451 4.4.2 connection to mx.remote.test lost: {reason}" if during_data
                else f"451 4.4.1 connection to mx.remote.test [127.0.0.1]:{receiver.port} failed: {reason}")
    assert (row.state, row.last_reply) == ("deferred", given_up)
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


def answer(conn: socket.socket, *replies: bytes) -> None:
    """Read a command line for each of `replies` and answer it with that reply."""
    for reply in replies:
        read_line(conn)
        conn.sendall(reply)


def what_comes_next(conn: socket.socket) -> bytes:
    """What the client sends next within 5 s: b"" when it hangs up."""
    conn.settimeout(5)
    try:
        return conn.recv(1024)
    except TimeoutError:
        return b"(nothing within 5 s)"


def greet(conn: socket.socket) -> None:
    conn.sendall(b"220 mx.remote.test ESMTP\r\n")
    read_line(conn)
    conn.sendall(b"250-mx.remote.test\r\n250 8BITMIME\r\n")


def large_message(octets: int) -> bytes:
    line = b"0123456789" * 7 + b"abcdef\r\n"  # 78 octets, with its CRLF
    return MESSAGE + line * (octets // len(line))


def reading(piece: int, pause: float, stall_after: int | None = None, stall: float = 0.0) -> DataReader:
    """Read the data `piece` octets at a time with `pause` seconds between; after `stall_after` octets stop
    reading for `stall` seconds (the client gives up meanwhile: the rest never comes)."""
    def read(reader: BinaryIO) -> bool:
        taken, tail, stalled = 0, b"", False
        while not tail.endswith(END_OF_DATA):
            chunk = reader.read1(piece)
            if not chunk:
                return False
            taken += len(chunk)
            tail = (tail + chunk)[-len(END_OF_DATA):]
            time.sleep(pause)
            if stall_after is not None and taken >= stall_after and not stalled:
                time.sleep(stall)
                stalled = True
        return True

    return read


def test_a_large_message_to_a_slow_but_steady_receiver_is_delivered(scripted, settings):
    """RFC 5321 §4.5.3.2.5 times each write of the data, not the whole: 12 MB taken at about 5 MB/s
    take twice MAIL_SMTP_CLIENT_TIMEOUT here, as 50 MB over a slow uplink take minutes against 60 s.
    Timed as a whole (socket.sendall's timeout), such a message was deferred on every try, for ever."""
    settings.MAIL_SMTP_CLIENT_TIMEOUT = 1
    receiver = scripted(greet, reading(256 * 1024, 0.05))
    row = deliver_once(large_message(12 * 1024 * 1024))
    assert (row.state, row.last_reply) == ("delivered", "250 2.0.0 ok")
    assert receiver.delivered == 1


def test_a_receiver_that_stops_taking_the_data_is_given_up_after_the_timeout(scripted, settings):
    settings.MAIL_SMTP_CLIENT_TIMEOUT = 1
    receiver = scripted(greet, reading(256 * 1024, 0.0, stall_after=1024 * 1024, stall=4))
    assert_deferred_undelivered(receiver, "the receiver took no data for 1 s", large_message(12 * 1024 * 1024),
                                during_data=True)


def test_a_receiver_taking_the_data_ever_so_slowly_is_given_up(scripted, settings, monkeypatch):
    """Each piece within the timeout, the whole far slower than any real link: a receiver reading a little
    now and then would hold the delivery thread for hours. The bound (MIN_DATA_RATE, here raised to 4 MB/s
    so the test is quick) is the timeout plus the message at that rate."""
    settings.MAIL_SMTP_CLIENT_TIMEOUT = 1
    monkeypatch.setattr(client, "MIN_DATA_RATE", 4_000_000)
    receiver = scripted(greet, reading(64 * 1024, 0.06))  # about 1 MB/s
    assert_deferred_undelivered(receiver, "the receiver took the data slower than 4000000 octets a second",
                                large_message(12 * 1024 * 1024), during_data=True)


def test_a_receiver_slow_to_answer_the_end_of_the_data_gets_the_mail_once(scripted, settings):
    """RFC 5321 §4.5.3.2.6 gives the reply to the final dot 10 minutes, twice the other replies: the receiver
    may scan the message first, and a sender that gives up then sends it again, a duplicate. That wait is
    twice MAIL_SMTP_CLIENT_TIMEOUT (600 s by default)."""
    settings.MAIL_SMTP_CLIENT_TIMEOUT = 2

    def scan_first(reader: BinaryIO) -> bool:
        whole = read_data_at_once(reader)
        time.sleep(3)
        return whole

    receiver = scripted(greet, scan_first)
    row = deliver_once()
    assert (row.state, row.last_reply) == ("delivered", "250 2.0.0 ok")
    assert receiver.delivered == 1


@pytest.mark.django_db(transaction=True)
def test_a_transaction_longer_than_the_claims_lease_keeps_its_rows(scripted, settings, monkeypatch):
    """The lease must outlast the slowest transaction the timeouts allow, or the sweep hands a row still
    being sent to another worker, which sends it again. Here a 2 s lease against a receiver that answers
    the final dot after 3 s: the run extends the lease first (`client.longest_transaction`), and another
    run claiming the message while the receiver thinks gets nothing."""
    from django.db import connection

    settings.MAIL_SMTP_CLIENT_TIMEOUT = 2
    monkeypatch.setattr(claims, "LEASE_SECONDS", 2)
    intruder: list[list[str]] = []

    def claim_while_scanning(reader: BinaryIO) -> bool:
        whole = read_data_at_once(reader)
        time.sleep(3)  # past the claim's lease
        try:
            intruder.append([row.address for row in claims.claim("intruder", message_id=message_id)])
        finally:
            connection.close()  # this thread's own
        return whole

    receiver = scripted(greet, claim_while_scanning)
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    row = OutboundRecipient.objects.get(message_id=message_id)
    assert (row.state, row.last_reply, intruder) == ("delivered", "250 2.0.0 ok", [[]])
    assert receiver.delivered == 1


def test_a_host_that_does_not_take_the_connection_is_given_up_after_the_connect_timeout(scripted, settings):
    """MAIL_SMTP_CONNECT_TIMEOUT (30 s, as Postfix's) bounds the TCP connection apart from the replies' 5
    minutes (RFC 5321 §4.5.3.2), so that a host that is down costs each of its addresses 30 s. Here the
    receiver takes no connection for 3 s, by which time a client waiting as long as for a reply (5 s here)
    would have got through and delivered."""
    settings.MAIL_SMTP_CLIENT_TIMEOUT = 5
    settings.MAIL_SMTP_CONNECT_TIMEOUT = 0.5
    receiver = scripted(greet, accept_after=3)
    assert_deferred_undelivered(receiver, "timed out")


def test_a_receiver_slow_at_every_step_is_given_up_at_the_delivery_deadline(scripted, settings, monkeypatch):
    """Each reply within the timeout, the whole session far longer: one delivery (the connection and one
    transaction) has TRANSACTION_SECONDS in all (20 minutes; here 3 s), so that its lease is known to outlast
    it. The deadline falls here while the MAIL command waits for its reply: nothing was sent, nothing taken."""
    settings.MAIL_SMTP_CLIENT_TIMEOUT = 2
    monkeypatch.setattr(client, "TRANSACTION_SECONDS", 3)

    def slow(conn: socket.socket) -> None:
        time.sleep(1.2)
        conn.sendall(b"220 mx.remote.test ESMTP\r\n")
        read_line(conn)  # EHLO
        time.sleep(1.2)
        conn.sendall(b"250-mx.remote.test\r\n250 8BITMIME\r\n")
        read_line(conn)  # MAIL
        time.sleep(1.2)
        conn.sendall(b"250 ok\r\n")

    receiver = scripted(slow)
    assert_deferred_undelivered(receiver, "the delivery took longer than 3 s in all", during_data=True)


def test_a_receiver_that_does_not_answer_quit_is_left_soon(scripted, settings, monkeypatch):
    """RFC 5321 §4.1.1.10: the server answers QUIT and closes. One that keeps silent held the closing thread
    for a whole reply timeout (5 minutes); it gets QUIT_REPLY_SECONDS (10 s; here 0.5 against 10) instead."""
    settings.MAIL_SMTP_CLIENT_TIMEOUT = 10
    monkeypatch.setattr(client, "QUIT_REPLY_SECONDS", 0.5)
    hung_up: list[bool] = []
    seen = threading.Event()

    def silent_at_quit(conn: socket.socket) -> None:
        greet(conn)
        answer(conn, b"250 ok\r\n", b"250 ok\r\n", b"354 go on\r\n")  # MAIL, RCPT, DATA
        while read_line(conn) != b".\r\n":
            pass
        conn.sendall(b"250 ok\r\n")
        assert read_line(conn) == b"QUIT\r\n"
        hung_up.append(what_comes_next(conn) == b"")
        seen.set()

    scripted(silent_at_quit)
    row = deliver_once()
    pool.close_idle(0)
    assert seen.wait(10)
    assert (row.state, hung_up) == ("delivered", [True])


@pytest.mark.parametrize("limit", [3, 1])
def test_a_receiver_that_never_greets_is_tried_once_per_run_not_once_per_message(scripted, settings, limit):
    """Three messages due for a host that takes the connection and says nothing (or a host that is down):
    the first waits out the timeout, and the others of the same run are deferred with its reply at once,
    as Postfix suspends delivery to a dead destination. Each tried its own connection before: a run of 50
    messages to a dead domain held its delivery thread for 50 timeouts (4 hours at 5 minutes)."""
    settings.MAIL_SMTP_CLIENT_TIMEOUT = 0.5

    def silent(conn: socket.socket) -> None:
        conn.recv(1)  # until the client gives up

    receiver = scripted(silent)
    ids = [queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"]) for _ in range(3)]
    assert worker.deliver_due(limit) == limit  # the in-process runner's batch: all three, or one and the rest
    given_up = f"451 4.4.1 connection to mx.remote.test [127.0.0.1]:{receiver.port} failed: no whole reply within 0.5 s"
    rows = OutboundRecipient.objects.filter(message_id__in=ids)
    assert sorted((row.state, row.last_reply) for row in rows) == [("deferred", given_up)] * 3
    assert receiver.connections == 1


def test_a_wake_up_for_a_domain_whose_host_never_greets_defers_all_its_due_mail_after_one_try(scripted, settings):
    """As above, for a Celery task (or a wake-up) draining the domain: the first message waits out the timeout,
    the domain's other due mail is deferred with that reply at once, and the domain is done until its retry
    time. Before, the task stopped after the first, left the domain to be woken again, and the next task
    tried the next message: one timeout per message, for ever."""
    settings.MAIL_SMTP_CLIENT_TIMEOUT = 0.5

    def silent(conn: socket.socket) -> None:
        conn.recv(1)  # until the client gives up

    receiver = scripted(silent)
    ids = [queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"]) for _ in range(3)]
    with worker.Run() as run:
        run.message(ids[0])
    given_up = f"451 4.4.1 connection to mx.remote.test [127.0.0.1]:{receiver.port} failed: no whole reply within 0.5 s"
    rows = OutboundRecipient.objects.filter(message_id__in=ids)
    assert sorted((row.state, row.last_reply) for row in rows) == [("deferred", given_up)] * 3
    assert (receiver.connections, run.unfinished) == (1, set())


def test_a_250_to_data_instead_of_354_is_not_taken_for_delivery(scripted):
    """RFC 5321 §4.1.1.4: DATA is answered 354, then the message goes, then the reply that counts. A receiver out
    of step (an extra reply line, a pipelining bug) or a broken one answering DATA with 250 was taken at its
    word: the message, never sent, was marked delivered and lost. Now it is deferred, and the session, out of
    step, is not used again."""
    after_data: list[bytes] = []
    seen = threading.Event()

    def out_of_step(conn: socket.socket) -> None:
        greet(conn)
        answer(conn, b"250 ok\r\n", b"250 ok\r\n", b"250 2.0.0 ok\r\n")  # MAIL, RCPT, DATA
        after_data.append(what_comes_next(conn))
        seen.set()

    receiver = scripted(out_of_step)
    row = deliver_once()
    assert (row.state, row.last_reply) == (
        "deferred", "451 4.5.0 mx.remote.test answered DATA with 250 2.0.0 ok, not 354: the message was not sent")
    assert seen.wait(10)
    assert (after_data, receiver.delivered) == ([b""], 0)  # hung up at once: nothing more said on that session
