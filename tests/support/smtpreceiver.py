"""A real SMTP receiver for tests: aiosmtpd on 127.0.0.1, port chosen by the OS, in a thread.

It stands in for another domain's MX. It records every accepted message
(`messages`), the number of SMTP sessions (`sessions`), and answers from a script:
`rcpt_replies[address]` for one RCPT, `data_replies` (consumed in order) for
DATA, `max_recipients` per transaction; everything else is accepted. Options: STARTTLS, SMTPUTF8, SIZE limit, DSN (RFC 3461: it then
offers DSN and records the parameters of MAIL and of each RCPT as given, in `dsn_parameters`).
"""
from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailcore.tls import server_context


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    mail_options: list[str]
    tls: bool
    peer: str = ""  # the address the sender connected from


@dataclass
class ReceiverHandler:
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    mail_replies: list[str] = field(default_factory=list)  # replies to the next MAIL commands, then 250
    data_replies: list[str] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)
    session_ids: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    dsn: bool = False
    dsn_parameters: list[str] = field(default_factory=list)  # "MAIL ..." and "RCPT <address> ..." lines
    max_recipients: int = 0  # recipients per transaction, more get 452 4.5.3 (Postfix's smtpd_recipient_limit); 0: any

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.session_ids.add(hash(session.peer))  # one per TCP connection (STARTTLS makes a new Session)
        if self.dsn:
            responses = [*responses[:-1], "250-" + responses[-1][4:], "250 DSN"]
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        with self.lock:
            reply = self.mail_replies.pop(0) if self.mail_replies else ""
        if reply:
            return _closing_after_421(server, reply)
        envelope.mail_from, envelope.mail_options = address, list(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self.rcpt_replies.get(address.lower())
        if reply and not reply.startswith("250"):
            return _closing_after_421(server, reply)
        if self.max_recipients and len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Error: too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            reply = self.data_replies.pop(0) if self.data_replies else "250 2.0.0 queued"
            if reply.startswith("250"):
                self.messages.append(Received(
                    envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or b""),
                    list(envelope.mail_options), session.ssl is not None, str(session.peer[0]),
                ))
        return _closing_after_421(server, reply)


def _closing_after_421(server: SMTP, reply: str) -> str:
    """`reply`; after a 421 the connection closes, once the reply is written, as RFC 5321 §3.8 has servers do."""
    if reply.startswith("421") and server.transport is not None:
        server.loop.call_soon(server.transport.close)
    return reply


class _DSNServer(SMTP):
    """Takes the DSN parameters off MAIL and RCPT (aiosmtpd knows none) and records them as given."""

    _DSN = ("NOTIFY=", "ORCPT=", "RET=", "ENVID=")

    async def smtp_MAIL(self, arg: str | None) -> None:
        await super().smtp_MAIL(self._record("MAIL", arg))

    async def smtp_RCPT(self, arg: str | None) -> None:
        await super().smtp_RCPT(self._record("RCPT", arg))

    def _record(self, verb: str, arg: str | None) -> str | None:
        if arg is None:
            return arg
        words = arg.split(" ")
        dsn = [w for w in words[1:] if w.upper().startswith(self._DSN)]
        handler: ReceiverHandler = self.event_handler
        with handler.lock:
            handler.dsn_parameters.append(" ".join([verb if verb == "MAIL" else f"RCPT {words[0][3:]}", *dsn]))
        return " ".join(w for w in words if w not in dsn)


class _LoopbackController(Controller):
    """aiosmtpd's Controller, learning the port the OS chose for port 0."""

    def factory(self) -> SMTP:
        if self.handler.dsn:
            return _DSNServer(self.handler, **self.SMTP_kwargs)
        return super().factory()

    def _create_server(self) -> Any:
        parent = super()._create_server()

        async def create() -> asyncio.AbstractServer:
            server = await parent
            self.port = server.sockets[0].getsockname()[1]
            return server

        return create()


class SMTPReceiver:
    def __init__(self, *, starttls: bool = True, smtputf8: bool = True, size_limit: int | None = None,
                 dsn: bool = False, tls_context: ssl.SSLContext | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        """`tls_context`: the STARTTLS certificate (default: the project's self-signed one); `host` a loopback
        address ("::1" for IPv6) and `port` 0 for one the OS chooses."""
        self.handler = ReceiverHandler(dsn=dsn)
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8, "decode_data": False}
        if starttls:
            kwargs["tls_context"] = tls_context or server_context()
        if size_limit is not None:
            kwargs["data_size_limit"] = size_limit
        self.controller = _LoopbackController(self.handler, hostname=host, port=port, **kwargs)

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    @property
    def sessions(self) -> int:
        return len(self.handler.session_ids)

    def start(self) -> SMTPReceiver:
        self.controller.start()
        self.handler.session_ids.clear()  # the controller's own start-up probe is not a session
        return self

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_receiver(settings) -> Iterator[SMTPReceiver]:
    """A running receiver; MAIL_OUTBOUND_PORT points at it and private MX addresses are allowed."""
    receiver = SMTPReceiver().start()
    settings.MAIL_OUTBOUND_PORT = receiver.port
    settings.MAIL_ALLOW_PRIVATE_MX = True
    try:
        yield receiver
    finally:
        receiver.stop()
