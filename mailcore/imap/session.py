"""One IMAP connection: read a command (with its literals), look it up, check the state, dispatch, map errors.

RFC 9051 §3 states: not authenticated, authenticated, selected, logout. The
table of which commands each state allows is `mailcore.imap.commands.COMMANDS`.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import re
import socket
import ssl
import time
from typing import TYPE_CHECKING

from mailcore import metrics, store, streams
from mailcore.auth import AuthenticatedUser
from mailcore.conf import conf
from mailcore.imap.errors import Bad, Bye, No, ProtocolError
from mailcore.imap.parser import Parser

if TYPE_CHECKING:
    from mailcore.imap.selected import MailboxView

log = logging.getLogger(__name__)

NOT_AUTHENTICATED, AUTHENTICATED, SELECTED, LOGOUT = "not authenticated", "authenticated", "selected", "logout"
# RFC 9051 §4.3: the end of a line that announces a literal, `{n}` or `{n+}` (RFC 7888).
_LITERAL_AT_END = re.compile(rb"~?\{([0-9]{1,20})(\+?)\}\r?\n\Z")
_TAG_AND_NAME = re.compile(rb"([^ \r\n]*) ?([A-Za-z]*)(?: ([A-Za-z]+))?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ids = itertools.count(1)
# RFC 3501 §7.4.1: "An EXPUNGE response MUST NOT be sent ... while responding to a FETCH, STORE, or
# SEARCH command" (the UID forms may; SORT and THREAD are searches too, RFC 5256).
NO_EXPUNGE_DURING = {"FETCH", "STORE", "SEARCH", "SORT", "THREAD"}

STORE_ERROR_CODES: dict[type[store.StoreError], str] = {
    # RFC 9051 §7.1 response codes and RFC 5530 for each store error.
    store.OverQuota: "OVERQUOTA",
    store.NoSuchFolder: "NONEXISTENT",
    store.FolderExists: "ALREADYEXISTS",
    store.InvalidFolderName: "CANNOT",
    store.FolderNotAllowed: "CANNOT",
    store.StorageFailure: "UNAVAILABLE",
}


class LiteralTooBig(Exception):
    """A literal over the limit, refused before its bytes are read (RFC 7888 §4, RFC 9051 §7.1)."""

    def __init__(self, tag: str, reply: str, close: bool) -> None:
        super().__init__(reply)
        self.tag, self.reply, self.close = tag, reply, close


class LineTooLong(Exception):
    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.tag = tag


def clean(text: str) -> str:
    """Client text made safe for a log line (control characters removed)."""
    return _CONTROL.sub("?", text)[:200]


def is_loopback(peer: str) -> bool:
    try:
        return ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        return False


class Session:
    """State of one connection; command handlers read and change it."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tls_active: bool,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.context = context  # for STARTTLS
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = str(peer[0])
        self.id = f"imap-{next(_ids)}"
        self.tls_active = tls_active
        self.state = NOT_AUTHENTICATED
        self.user: AuthenticatedUser | None = None
        self.enabled: set[str] = set()
        self.selected: MailboxView | None = None
        self.out: list[bytes] = []
        self.tag = "*"
        self.command = ""
        self._rate_window = time.monotonic()
        self._rate_count = 0

    # Facts handlers ask --------------------------------------------------------------

    @property
    def login_allowed(self) -> bool:
        """RFC 9051 §6.2.3 LOGINDISABLED: no cleartext passwords except over TLS or from loopback."""
        return self.tls_active or is_loopback(self.peer)

    @property
    def utf8(self) -> bool:
        """RFC 9051 §5.1 / RFC 6855: names and strings are UTF-8 once IMAP4rev2 (or UTF8=ACCEPT) is on."""
        return "IMAP4REV2" in self.enabled or "UTF8=ACCEPT" in self.enabled

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def account_id(self) -> int:
        if self.user is None:
            raise Bad("not authenticated")
        return self.user.account_id

    def mailbox_arg(self, parser: Parser) -> str:
        """A mailbox name argument: UTF-8 after ENABLE IMAP4rev2, else modified UTF-7 (RFC 3501 §5.1.3)."""
        from mailcore.imap import mutf7

        name = parser.astring_text()
        return name if self.utf8 else mutf7.decode(name)

    def mailbox_out(self, name: str) -> bytes:
        from mailcore.imap import mutf7, wire

        return wire.astring(name, True) if self.utf8 else wire.astring(mutf7.encode(name))

    # Output ---------------------------------------------------------------------------

    def untagged(self, line: str | bytes) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.out.append(b"* " + data + b"\r\n")

    def raw(self, data: bytes) -> None:
        self.out.append(data)

    async def flush(self) -> None:
        if self.out:
            self.writer.write(b"".join(self.out))
            self.out.clear()
        await streams.drain(self.writer)

    # The loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        from mailcore.imap.commands.any_state import capability_line

        log.info("%s connect from %s tls=%s", self.id, self.peer, self.tls_active)
        self.untagged(f"OK [CAPABILITY {capability_line(self)}] {conf.hostname} IMAP server ready")
        try:
            await self.flush()
            while self.state != LOGOUT:
                if not await self._one_command():
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError) as err:
            log.info("%s connection from %s ended: %s", self.id, self.peer, err.__class__.__name__)
        finally:
            if self.selected is not None:
                self.selected.close()
            self.writer.close()
            log.info("%s disconnect %s", self.id, self.peer)

    async def _one_command(self) -> bool:
        """Read and run one command; False when the connection is to close."""
        try:
            data = await asyncio.wait_for(self.read_command(), timeout=conf.imap_idle_timeout)
        except TimeoutError:
            self.untagged("BYE Autologout; idle for too long")  # RFC 9051 §5.4
            await self.flush()
            return False
        except LineTooLong as err:
            self.raw(f"{err.tag} BAD command line too long\r\n".encode())
            await self.flush()
            return True
        except LiteralTooBig as err:
            self.raw(f"{err.tag} {err.reply}\r\n".encode())
            await self.flush()
            return not err.close
        if data is None:
            return False
        await self._throttle()
        await self.execute(data)
        await self.flush()
        return True

    async def _throttle(self) -> None:
        """At most MAIL_IMAP_COMMANDS_PER_SECOND commands per second: faster clients are slowed, not cut off."""
        now = time.monotonic()
        if now - self._rate_window >= 1:
            self._rate_window, self._rate_count = now, 0
        self._rate_count += 1
        if self._rate_count > conf.imap_commands_per_second:
            await asyncio.sleep(max(0.0, 1 - (now - self._rate_window)))

    async def read_line(self) -> bytes:
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as err:
            head = await self.reader.read(err.consumed)
            await self._discard_line()
            raise LineTooLong(_tag_of(head)) from err
        except asyncio.IncompleteReadError as err:
            if err.partial:
                return err.partial
            raise

    async def _discard_line(self) -> None:
        while True:
            try:
                await self.reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as err:
                await self.reader.read(err.consumed)

    async def read_command(self) -> bytes | None:
        """One command with its literals inline, without the final CRLF; None at end of input."""
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                line = await self.read_line()
            except asyncio.IncompleteReadError:
                return None
            chunks.append(line)
            total += len(line)
            found = _LITERAL_AT_END.search(line)
            if not found:
                break
            size, synchronising = int(found.group(1)), not found.group(2)
            self._check_literal(chunks[0], size, total, synchronising)
            if synchronising:
                self.writer.write(b"+ Ready for literal data\r\n")  # RFC 9051 §7.5
                await streams.drain(self.writer)
                acknowledge_promptly(self.writer)
            chunks.append(await self.reader.readexactly(size))
            total += size
        data = b"".join(chunks)
        return data[:-2] if data.endswith(b"\r\n") else data.rstrip(b"\n")

    def _check_literal(self, first_line: bytes, size: int, total: int, synchronising: bool) -> None:
        """Refuse an over-long literal before reading it: APPEND gets NO [TOOBIG], others BAD."""
        found = _TAG_AND_NAME.match(first_line)
        tag = found.group(1).decode("ascii", "replace") if found and found.group(1) else "*"
        name = found.group(2).upper() if found else b""
        is_append = name == b"APPEND"
        limit = conf.max_message_size if is_append else conf.imap_max_literal
        if size <= limit and size + total <= limit + conf.imap_max_line:
            return
        if is_append:
            reply = "NO [TOOBIG] message is larger than the server accepts"  # RFC 7889, RFC 9051 §7.1
        else:
            reply = f"BAD literal larger than {limit} bytes"
        if not synchronising:
            # RFC 7888 §4: the client sends a non-synchronising literal without waiting, so the
            # rest of the stream cannot be trusted: answer and close.
            raise LiteralTooBig(tag, reply + "\r\n* BYE literal too large", close=True)
        raise LiteralTooBig(tag, reply, close=False)

    async def execute(self, data: bytes) -> None:
        from mailcore.imap.commands import COMMANDS

        parser = Parser(data, self.selected.saved if self.selected is not None else None)
        try:
            self.tag = parser.tag()
        except Bad:
            self.raw(b"* BAD missing or invalid tag\r\n")
            return
        try:
            name = self._command_name(parser)
            handler, states = COMMANDS.get(name, (None, ()))
            if handler is None:
                raise Bad(f"unknown command {clean(name)}")
            if self.state not in states:
                raise Bad(f"{name} is not allowed in the {self.state} state")
            log.debug("%s %s %s", self.id, self.tag, name)
            text = await handler(self, parser)
            if self.selected is not None and self.state == SELECTED:
                await self.selected.report_changes(self, allow_expunge=name not in NO_EXPUNGE_DURING)
            if text is not None:  # None: the handler has answered already (STARTTLS)
                self.raw(f"{self.tag} OK {text}\r\n".encode())
        except Bye as err:
            self.untagged(err.reply_text())
            self.state = LOGOUT
        except ProtocolError as err:
            self.raw(f"{self.tag} {err.reply_text()}\r\n".encode())
        except store.StoreError as err:
            code = STORE_ERROR_CODES.get(type(err), "SERVERBUG")
            self.raw(f"{self.tag} NO [{code}] {err}\r\n".encode())
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            raise  # the connection is gone (during IDLE, AUTHENTICATE or STARTTLS): the loop ends it
        except Exception:
            log.exception("%s unexpected error in %s from %s", self.id, clean(self.command), self.peer)
            self.raw(f"{self.tag} NO [SERVERBUG] internal error; the event is logged as {self.id}\r\n".encode())

    def _command_name(self, parser: Parser) -> str:
        parser.sp()
        name = parser.keyword()
        if name == "UID":
            parser.sp()
            name = "UID " + parser.keyword()
        self.command = name
        return name

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """RFC 9051 §6.2.1: negotiate TLS on this connection; everything from before is forgotten."""
        await self.flush()
        await self.writer.start_tls(context)
        self.tls_active = True

    def require_selected_writable(self) -> MailboxView:
        view = self.selected
        if view is None:
            raise Bad("no mailbox selected")
        if view.readonly:
            raise No("mailbox is read-only (EXAMINE)", "READ-ONLY")
        return view


def _tag_of(head: bytes) -> str:
    tag = head.split(b" ", 1)[0][:64]
    return tag.decode("ascii", "replace") if tag and tag.isascii() else "*"


async def serve(host: str, port: int, context: ssl.SSLContext, implicit_tls: bool) -> asyncio.AbstractServer:
    """Start one IMAP listener (runmail's ListenerSpec.serve)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        metrics.connection("imap")
        session = Session(reader, writer, tls_active=implicit_tls, context=context)
        with contextlib.suppress(asyncio.CancelledError):  # the listener is shutting down
            await session.run()

    return await asyncio.start_server(
        handle, host, port, ssl=context if implicit_tls else None, limit=conf.imap_max_line
    )


__all__ = ["AUTHENTICATED", "LOGOUT", "NOT_AUTHENTICATED", "SELECTED", "No", "Session", "serve"]


def acknowledge_promptly(writer: asyncio.StreamWriter) -> None:
    """ACK the client's next segment at once (Linux TCP_QUICKACK) rather than after the delayed-ACK timer.

    A client that sends a literal and the line end after it in two writes with
    Nagle's algorithm on (imaplib does, for every APPEND) holds the line end
    until the literal is acknowledged; a delayed ACK then stalls the command by
    about 40 ms. The setting lasts only for the segments now coming, so it is
    set after each continuation request.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
