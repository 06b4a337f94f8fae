"""Writing to a client that may stop reading.

`StreamWriter.drain()` waits for as long as the client leaves the socket's
buffer full: a client that asks for a large FETCH or RETR and never reads it
would hold the connection, and the reply's bytes, for ever. Every protocol
that sends large replies drains through here.
"""
from __future__ import annotations

import asyncio

from mailcore.conf import conf


class ClientNotReading(ConnectionError):
    """The client left our reply unread for longer than MAIL_SEND_TIMEOUT; the connection is aborted."""


async def drain(writer: asyncio.StreamWriter) -> None:
    """`writer.drain()`, but abort the connection when the client reads nothing for MAIL_SEND_TIMEOUT seconds."""
    transport = writer.transport
    if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]:
        await writer.drain()  # not paused: returns at once (no timer for the common case)
        return
    try:
        async with asyncio.timeout(conf.send_timeout):
            await writer.drain()
    except TimeoutError:
        transport.abort()
        raise ClientNotReading(f"the client read nothing for {conf.send_timeout:g} s") from None
