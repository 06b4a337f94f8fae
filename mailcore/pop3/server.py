"""The POP3 listener: one `Pop3Session` per connection (STLS on MAIL_POP3_PORT, implicit TLS on MAIL_POP3S_PORT)."""
from __future__ import annotations

import asyncio
import contextlib
import ssl

from mailcore import metrics
from mailcore.pop3.session import READ_LIMIT
from mailcore.pop3.transaction import TransactionCommands

TLS_HANDSHAKE_TIMEOUT = 30.0


class Pop3Session(TransactionCommands):
    """Every command handler (AUTHORIZATION, TRANSACTION, UPDATE) on top of the session loop."""


async def serve(host: str, port: int, tls_context: ssl.SSLContext, implicit_tls: bool) -> asyncio.AbstractServer:
    """Start a POP3 listener; RFC 8314 §3.3 implicit TLS when `implicit_tls`, else STLS (RFC 2595 §4)."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        metrics.connection("pop3")
        with contextlib.suppress(asyncio.CancelledError):  # shutdown: the session has cleaned up already
            await Pop3Session(reader, writer, tls_context, implicit_tls).run()

    return await asyncio.start_server(
        on_connect,
        host,
        port,
        ssl=tls_context if implicit_tls else None,
        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit_tls else None,
        limit=READ_LIMIT,
    )
