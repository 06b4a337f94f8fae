"""A real DNS server for tests: UDP and TCP on 127.0.0.1 (one port, chosen by the OS), in threads.

It answers from a plain dict, built on dnspython's message parsing:

    zone = {
        "remote.test": {"MX": ["10 mx.remote.test."], "TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        "mx.remote.test": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
        "nullmx.test": {"MX": ["0 ."]},            # RFC 7505 null MX
        "broken.test": DNSServer.SERVFAIL,          # every query: SERVFAIL
        "slow.test": DNSServer.TIMEOUT,             # every query: no answer at all
    }

A name missing from the dict is NXDOMAIN; a name present without the asked type
is NOERROR with an empty answer. Records are zone-file text for their type
(TXT values may be given unquoted; they are split into 255-byte strings).
`server.records` may be changed while it runs; `server.queries` logs (name, type).

Use the `dns_server` fixture (import it into your conftest.py): it starts a
server with an empty zone and points MAIL_DNS_NAMESERVERS at it.
"""
from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

TXT_CHUNK = 255  # RFC 1035 §3.3: a character-string is at most 255 octets
TTL = 60
MAX_UDP_PAYLOAD = 512  # RFC 1035 §4.2.1, without EDNS


def _rdata_text(rdtype: str, value: str) -> str:
    if rdtype == "TXT" and not value.startswith('"'):
        chunks = [value[i : i + TXT_CHUNK] for i in range(0, len(value), TXT_CHUNK)] or [""]
        return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
    return value


class DNSServer:
    """Serves `records` on 127.0.0.1:`port` over UDP and TCP until `stop()`."""

    SERVFAIL = "SERVFAIL"
    TIMEOUT = "TIMEOUT"

    def __init__(self, records: dict[str, Any] | None = None) -> None:
        self.records: dict[str, Any] = dict(records or {})
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._udp, self._tcp = self._bind_pair()
        self.port: int = self._udp.server_address[1]
        self._threads: list[threading.Thread] = []

    @property
    def nameserver(self) -> str:
        """The MAIL_DNS_NAMESERVERS entry for this server."""
        return f"127.0.0.1:{self.port}"

    def _bind_pair(self) -> tuple[socketserver.UDPServer, socketserver.TCPServer]:
        owner = self
        for _ in range(50):  # the UDP port chosen by the OS may be taken for TCP; try another
            udp = _UDPServer(("127.0.0.1", 0), _UDPHandler)
            udp.owner = owner
            try:
                tcp = _TCPServer(("127.0.0.1", udp.server_address[1]), _TCPHandler)
            except OSError:
                udp.server_close()
                continue
            tcp.owner = owner
            return udp, tcp
        raise RuntimeError("could not bind UDP and TCP on one loopback port")

    def start(self) -> DNSServer:
        for server in (self._udp, self._tcp):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> DNSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, wire: bytes) -> bytes | None:
        """The reply to one query in wire format, or None to stay silent (TIMEOUT mode, garbage)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if not query.question:
            return None
        question = query.question[0]
        qname = question.name.to_text(omit_final_dot=True).lower()
        qtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.queries.append((qname, qtype))
            entry = self.records.get(qname)
        if entry == self.TIMEOUT:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if entry is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif entry == self.SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
        else:
            values = entry.get(qtype, [])
            if values:
                rrset = dns.rrset.from_text_list(
                    question.name, TTL, dns.rdataclass.IN, question.rdtype, [_rdata_text(qtype, v) for v in values]
                )
                response.answer.append(rrset)
        return response.to_wire()


class _UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    owner: DNSServer


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: DNSServer


class _UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.owner.answer(data)  # type: ignore[attr-defined]
        if reply is None:
            return
        if len(reply) > MAX_UDP_PAYLOAD:  # RFC 1035 §4.2.1: truncate, the client retries over TCP
            message = dns.message.from_wire(reply)
            message.answer = []
            message.flags |= dns.flags.TC
            reply = message.to_wire()
        sock.sendto(reply, self.client_address)


class _TCPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(5)
        with contextlib.suppress(OSError):
            while True:
                header = _recv_exact(conn, 2)  # RFC 1035 §4.2.2: two-byte length prefix
                if header is None:
                    return
                wire = _recv_exact(conn, int.from_bytes(header, "big"))
                if wire is None:
                    return
                reply = self.server.owner.answer(wire)  # type: ignore[attr-defined]
                if reply is None:
                    return
                conn.sendall(len(reply).to_bytes(2, "big") + reply)


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# Short enough that TIMEOUT-mode tests take about a second, not the production default.
TEST_DNS_TIMEOUT = 0.4


@pytest.fixture
def dns_server(settings) -> Iterator[DNSServer]:
    """A running DNSServer with an empty zone; MAIL_DNS_NAMESERVERS points at it. Fill `.records`."""
    with DNSServer() as server:
        settings.MAIL_DNS_NAMESERVERS = [server.nameserver]
        settings.MAIL_DNS_TIMEOUT = TEST_DNS_TIMEOUT
        yield server
