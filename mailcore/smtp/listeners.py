"""Starting the SMTP listeners for runmail: MX, submission with STARTTLS, submission with implicit TLS."""
from __future__ import annotations

import asyncio
import socket
import ssl

from mailcore.smtp.handlers import BaseHandler, MXHandler, SubmissionHandler
from mailcore.smtp.server import IDLE_TIMEOUT_SECONDS, ListenerConfig, SMTPServer

ROLE_MX = "mx"
ROLE_SUBMISSION = "submission"


async def serve(
    role: str,
    host: str,
    port: int,
    context: ssl.SSLContext,
    implicit_tls: bool,
    plaintext_auth_from_loopback: bool = True,
    idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    sock: socket.socket | None = None,
) -> asyncio.AbstractServer:
    """Listen on host:port (or accept on `sock`, bound already); RFC 8314 §3.3 implicit TLS when
    `implicit_tls`, else STARTTLS offered."""
    listener = ListenerConfig(role, implicit_tls, context, plaintext_auth_from_loopback, idle_timeout)
    handler: BaseHandler = SubmissionHandler() if role == ROLE_SUBMISSION else MXHandler()
    loop = asyncio.get_running_loop()
    tls = context if implicit_tls else None
    if sock is not None:
        return await loop.create_server(lambda: SMTPServer(handler, listener), sock=sock, ssl=tls)
    return await loop.create_server(lambda: SMTPServer(handler, listener), host, port, ssl=tls)


async def serve_mx(host: str, port: int, context: ssl.SSLContext, implicit_tls: bool) -> asyncio.AbstractServer:
    return await serve(ROLE_MX, host, port, context, implicit_tls)


async def serve_submission(
    host: str, port: int, context: ssl.SSLContext, implicit_tls: bool
) -> asyncio.AbstractServer:
    return await serve(ROLE_SUBMISSION, host, port, context, implicit_tls)
