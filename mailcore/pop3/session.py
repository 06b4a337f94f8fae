"""One POP3 connection: reads lines, looks up the state table, dispatches to cmd_<VERB>, maps errors.

The command handlers live in authorization.py and transaction.py (mixins of
this class); `Pop3Session` in server.py puts them together.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import socket
import ssl
from collections.abc import Awaitable, Callable

from mailcore import store, streams
from mailcore.pop3.errors import SYS_TEMP, Pop3Error
from mailcore.pop3.maildrop import Maildrop
from mailcore.pop3.parser import MAX_SASL_LINE, Command, parse_command
from mailcore.pop3.states import ALLOWED, KNOWN_COMMANDS, State

log = logging.getLogger(__name__)

# RFC 1939 §3: "an autologout timer MUST be of at least 10 minutes' duration".
IDLE_TIMEOUT = 600.0
# Client errors (unknown command, bad arguments, wrong state) before we hang up.
MAX_BAD_COMMANDS = 20
# Bytes the reader buffers for one line: the longest SASL response plus slack; longer lines are discarded.
READ_LIMIT = MAX_SASL_LINE + 2
_session_ids = itertools.count(1)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST = socket.gethostname()[:40]


class SessionClosed(Exception):
    """The client went away (EOF, reset) or timed out; the session ends without UPDATE."""


class SessionBase:
    """I/O, state and the command loop; subclasses add `cmd_<VERB>` handlers."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls_context: ssl.SSLContext, tls: bool
    ) -> None:
        self.reader, self.writer = reader, writer
        self.tls_context = tls_context
        self.tls_active = tls
        self.state = State.AUTHORIZATION
        self.id = f"{os.getpid():x}-{next(_session_ids)}"
        self.lock_owner = f"pop3:{_HOST}:{self.id}"
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer_ip = str(peer[0])
        self.peer = f"{peer[0]}:{peer[1]}"
        self.maildrop: Maildrop | None = None
        self.address = ""
        self.bad_commands = 0
        self.closing = False
        self.waiting_since: float | None = None  # event-loop time since when we wait for the client's next line
        self.idle_timer: asyncio.TimerHandle | None = None
        self.timed_out = False

    # The loop ------------------------------------------------------------------------

    async def run(self) -> None:
        self.log(logging.INFO, "connect%s", " (TLS)" if self.tls_active else "")
        try:
            self.check_idle()
            await self.send(b"+OK POP3 server ready\r\n")  # RFC 1939 §4 greeting
            while not self.closing:
                await self.handle_line(await self.read_line())
        except SessionClosed as err:
            self.log(logging.INFO, "disconnect: %s", err)
        except (ConnectionError, ssl.SSLError, OSError) as err:
            self.log(logging.INFO, "connection lost: %s", err)
        finally:
            if self.idle_timer is not None:
                self.idle_timer.cancel()
            await self.finish()
            self.writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                await self.writer.wait_closed()

    async def handle_line(self, line: bytes) -> None:
        """Parse, check the state table, dispatch; every Pop3Error becomes its -ERR line here."""
        try:
            command = parse_command(line)
            handler = self.handler_for(command)
            await handler(command)
        except Pop3Error as err:
            await self.refuse(err)
        except store.StoreError as err:
            self.log(logging.WARNING, "store error: %s", err)
            await self.send(Pop3Error("mail store unavailable, try again later", SYS_TEMP).reply())
        except (ConnectionError, SessionClosed, ssl.SSLError):
            raise
        except Exception:
            log.exception("pop3[%s] %s unexpected error", self.id, self.peer)
            await self.send(Pop3Error("internal server error", SYS_TEMP).reply())

    def handler_for(self, command: Command) -> Callable[[Command], Awaitable[None]]:
        if command.verb not in KNOWN_COMMANDS:
            raise Pop3Error("unknown command")
        if command.verb not in ALLOWED[self.state]:
            raise Pop3Error(f"{command.verb} not allowed in {self.state.value} state")
        handler: Callable[[Command], Awaitable[None]] = getattr(self, f"cmd_{command.verb}")
        return handler

    async def refuse(self, err: Pop3Error) -> None:
        await self.send(err.reply())
        self.bad_commands += 1
        if err.close:
            self.closing = True
        elif self.bad_commands >= MAX_BAD_COMMANDS:
            await self.send(b"-ERR too many bad commands, closing connection\r\n")
            self.closing = True

    async def finish(self) -> None:
        """Session end in any way: subclasses release the maildrop (no deletions here)."""

    # Reading and writing ---------------------------------------------------------------

    async def read_line(self) -> bytes:
        """One line with its line end; over-long lines are discarded and answered with -ERR."""
        while True:
            try:
                return await self.read_until_newline()
            except asyncio.LimitOverrunError:
                await self.discard_long_line()
                await self.refuse(Pop3Error("line too long"))
                if self.closing:
                    raise SessionClosed("too many bad commands") from None

    async def discard_long_line(self) -> None:
        while True:
            try:
                await self.read_until_newline()
                return
            except asyncio.LimitOverrunError as err:
                await self.reader.readexactly(err.consumed)

    async def read_until_newline(self) -> bytes:
        self.waiting_since = asyncio.get_running_loop().time()
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as err:
            raise SessionClosed("idle timeout" if self.timed_out else "client closed the connection") from err
        finally:
            self.waiting_since = None

    def check_idle(self) -> None:
        """RFC 1939 §3 autologout: one timer per session, re-armed when it fires (not one per line read)."""
        now = asyncio.get_running_loop().time()
        since = now if self.waiting_since is None else self.waiting_since
        if now - since < IDLE_TIMEOUT:
            self.idle_timer = asyncio.get_running_loop().call_at(since + IDLE_TIMEOUT, self.check_idle)
            return
        self.timed_out = True
        self.writer.write(b"-ERR autologout, idle for too long\r\n")
        self.writer.close()  # after that line is sent; the waiting read then ends with "idle timeout"

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await streams.drain(self.writer)

    def pending_input(self) -> int:
        """Bytes the client sent that we have not read yet (for the STLS injection check)."""
        return len(getattr(self.reader, "_buffer", b""))

    def log(self, level: int, message: str, *args: object, exc_info: bool = False) -> None:
        clean = tuple(_CONTROL.sub("?", arg) if isinstance(arg, str) else arg for arg in args)
        who = f" {self.address}" if self.address else ""
        log.log(level, "pop3[%s] %s%s " + message, self.id, self.peer, who, *clean, exc_info=exc_info)
