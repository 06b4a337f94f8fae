"""The SMTP session: aiosmtpd's protocol engine with our session loop, DATA reader and limits.

aiosmtpd parses commands and runs TLS; this subclass changes only what must
differ: the command loop (line limit, NUL bytes, bad-command count, one place
where errors become replies), the DATA reader (our smuggling policy), idle
timeout, STARTTLS state and AUTH (checked against the store in a thread).
"""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException, syntax

from mailcore import connlimits, dsnparams, logs, metrics
from mailcore.address import ASCII_DOT_ATOM
from mailcore.auth import AuthenticatedUser
from mailcore.conf import conf
from mailcore.mime.headers import split_header
from mailcore.smtp.replies import SMTPError, is_bad_command, with_enhanced_code

log = logging.getLogger(__name__)

# RFC 5321 §4.5.3.1.6: "The maximum total length of a text line including the <CRLF> is 1000
# octets (not counting the leading dot duplicated for transparency)". Command lines
# (§4.5.3.1.4: 512) get the same, more liberal, limit as §4.5.3.1 encourages.
MAX_LINE_OCTETS = 1000
MAX_DATA_LINE_OCTETS = MAX_LINE_OCTETS + 1  # plus the transparency dot (RFC 5321 §4.5.2)
# RFC 5321 §4.5.3.2.7: "An SMTP server SHOULD have a timeout of at least 5 minutes".
IDLE_TIMEOUT_SECONDS = 300.0
# Unknown, malformed or out-of-sequence commands tolerated before `421` (like Postfix's error limit).
MAX_BAD_COMMANDS = 100
AUTH_PARAMETER = "AUTH"  # RFC 4954 §5, of MAIL FROM on submission
PRINTABLE_ECHO = 32  # characters of an unknown verb echoed back in the reply
CRLF = b"\r\n"
R = TypeVar("R")

LINE_TOO_LONG = "500 5.5.2 Line too long (RFC 5321 §4.5.3.1.6 allows 1000 octets)"
BARE_LINE_END = (
    "550 5.5.2 Message refused: bare CR or LF in message data (RFC 5321 §2.3.8 requires CRLF); closing"
)
TOO_MUCH_DATA = "552 5.3.4 Message exceeds the maximum size of {limit} octets"
# The header section's limit (Exim's header_maxsize default): real headers are tens of kilobytes; a
# larger one is made to cost receivers work (every reader of it unfolds it; dkimpy in quadratic time).
MAX_HEADER_OCTETS = 1024 * 1024
HEADER_TOO_LARGE = f"552 5.3.4 Message header exceeds the maximum size of {MAX_HEADER_OCTETS} octets"
# RFC 5321 §6.3: counting Received fields detects mail loops (an alias forwarding to an address that
# forwards back); servers that refuse on it "SHOULD use a large rejection threshold, normally at least
# 100". Without it, two servers forwarding to each other passed a message back and forth for ever.
MAX_RECEIVED_FIELDS = 100
MAIL_LOOP = f"554 5.4.6 Message has more than {MAX_RECEIVED_FIELDS} Received header fields: a mail loop (RFC 5321 §6.3)"
_RECEIVED_FIELD = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)

# The usual MAIL/RCPT path, `<local@domain>` with ASCII dot-atoms (RFC 5321 §4.1.2), read without
# the full RFC 5322 parser; what follows `>` is returned as aiosmtpd's parser returns it (blanks
# dropped; a comment goes to the full parser).
_SIMPLE_PATH = re.compile(rf"[ \t]*<({ASCII_DOT_ATOM})@({ASCII_DOT_ATOM})>[ \t]*((?![ \t(]).*)\Z", re.DOTALL)


# RFC 3030 §3: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]; chunk-size = 1*DIGIT
_BDAT_ARGUMENT = re.compile(r"([0-9]{1,18})(?: +(LAST))?", re.IGNORECASE)
CHUNK_PIECE = 64 * 1024  # octets of a BDAT chunk read at a time


class _Chunks:
    """The BDAT chunks of one transaction (its envelope), and the first refusal, if any.

    Gathered in one bytearray: a list of them cost 33 octets more per piece, and a client may send
    its message as millions of one-octet chunks.
    """

    def __init__(self, envelope: Any) -> None:
        self.envelope = envelope
        self.data = bytearray()
        self.size = 0
        self.problem: SMTPError | None = None

    def add(self, piece: bytes, keep: bool) -> None:
        self.size += len(piece)
        if keep:
            self.data += piece
        else:
            self.data.clear()

    async def content(self) -> bytes:
        return bytes(self.data)


@dataclass(frozen=True)
class ListenerConfig:
    """What kind of listener a session belongs to."""

    role: str  # "mx" or "submission"
    implicit_tls: bool
    tls_context: ssl.SSLContext | None
    plaintext_auth_from_loopback: bool = True  # like Dovecot's default: loopback is not sniffable
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    # Its open connections (MAIL_SMTP_MAX_CONNECTIONS, ..._PER_IP): each listener has its own, so a flood on
    # port 25 does not lock our users out of submission.
    connections: connlimits.ConnectionLimits = dataclasses.field(default_factory=connlimits.ConnectionLimits,
                                                              compare=False)

    @property
    def is_submission(self) -> bool:
        return self.role == "submission"


class MailEnvelope(Envelope):
    """aiosmtpd's envelope plus what the sender asked of delivery reports (RFC 3461)."""

    def __init__(self) -> None:
        super().__init__()
        self.dsn = dsnparams.NOTHING_ASKED  # RET and ENVID of MAIL FROM
        self.dsn_recipients: dict[str, dsnparams.RecipientRequest] = {}  # NOTIFY and ORCPT by accepted recipient

    def dsn_request(self) -> dsnparams.Request:
        return dataclasses.replace(self.dsn, recipients=dict(self.dsn_recipients))


class MailSession(Session):
    """aiosmtpd's session plus our id (for logs) and the authenticated account."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.id = secrets.token_hex(6)
        self.user: AuthenticatedUser | None = None
        self.tls = False
        self.queue_id = ""  # set by the DATA handler: the outbound queue id, or this session's id for MX

    @property
    def ip(self) -> str:
        peer = self.peer
        return str(peer[0]) if isinstance(peer, tuple) else "unknown"


def read_dsn_parameters(read: Callable[..., R], *args: Any) -> R:
    """DSN parameters read by `read`; a malformed one is refused (RFC 3461 §4; RFC 3463 §3.6: 5.5.4)."""
    try:
        return read(*args)
    except dsnparams.ParameterError as err:
        raise SMTPError(f"501 5.5.4 {err}") from None


def header_too_large(content: bytes) -> bool:
    """Whether the header section (up to the first empty line, RFC 5322 §2.1) is over MAX_HEADER_OCTETS;
    only that much of the message is searched."""
    header_end, _body = split_header(content, 0, min(len(content), MAX_HEADER_OCTETS + 4))
    return header_end > MAX_HEADER_OCTETS


def received_fields(content: bytes) -> int:
    """How many Received fields the header section has (RFC 5321 §4.4: one per hop)."""
    header_end, _body = split_header(content)
    return len(_RECEIVED_FIELD.findall(content, 0, header_end))


def sanitize(text: str) -> str:
    """Client text made safe for a log line or a reply: printable ASCII, bounded."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:200]


class SMTPServer(SMTP):
    """One SMTP connection. `handler` holds the policy (MX or submission)."""

    def __init__(self, handler: Any, listener: ListenerConfig) -> None:
        super().__init__(
            handler,
            data_size_limit=conf.max_message_size,
            enable_SMTPUTF8=True,
            hostname=conf.hostname,
            ident="ESMTP",
            tls_context=None if listener.implicit_tls else listener.tls_context,
            timeout=listener.idle_timeout,
            auth_required=listener.is_submission,
            auth_require_tls=True,
            loop=asyncio.get_running_loop(),
        )
        self.listener = listener
        self._refusal: str | None = None  # why the connection is turned away (connection limits), if it is
        self._admitted_ip = ""  # the client address counted in the open connections, until the connection closes
        self.bad_commands = 0
        self._last_code = 0
        self._raw_replies = False  # greeting and EHLO/HELO lines carry no enhanced code (RFC 2034 §3)
        self._idle_deadline = 0.0
        self._bdat: _Chunks | None = None  # the BDAT transaction in progress (RFC 3030)
        # RFC 3461: the DSN parameter names of the MAIL or RCPT command being read, and their values
        self._dsn_names: tuple[str, ...] = ()
        self.dsn_values: dict[str, str] = {}

    # Connection --------------------------------------------------------------------

    def _create_session(self) -> MailSession:
        return MailSession(self.loop)

    def _create_envelope(self) -> MailEnvelope:
        return MailEnvelope()

    @property
    def mail_session(self) -> MailSession:
        session = self.session
        if not isinstance(session, MailSession):  # before connection_made (inspect.getmembers looks)
            raise AttributeError("no session yet")
        return session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # RFC 3207 §4.2: after STARTTLS the server "MUST discard any knowledge obtained from the
        # client" -- aiosmtpd makes a new session and drops buffered plaintext; we keep the log id.
        old = self.session if isinstance(self.session, MailSession) else None
        super().connection_made(transport)
        session = self.mail_session
        if old is not None:
            session.id = old.id
        else:  # a new connection (STARTTLS calls this again for the same one)
            self._refusal = self.listener.connections.admit(
                session.ip, conf.smtp_max_connections, conf.smtp_max_connections_per_ip)
            self._admitted_ip = "" if self._refusal else session.ip
        session.tls = transport.get_extra_info("ssl_object") is not None
        self._auth_require_tls = not (self.listener.implicit_tls or self._plaintext_auth_allowed(session))

    def _plaintext_auth_allowed(self, session: MailSession) -> bool:
        if not self.listener.plaintext_auth_from_loopback:
            return False
        try:
            return ipaddress.ip_address(session.ip).is_loopback
        except ValueError:
            return False

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Push the idle deadline back. One timer per session, re-armed only when it fires early.

        aiosmtpd cancels and re-creates a timer per call; we call this per DATA line.
        """
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        timer = self._timeout_handle
        if timer is None or timer.cancelled() or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._idle_timer_fired)

    def _idle_timer_fired(self) -> None:
        if self.loop.time() < self._idle_deadline:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_timer_fired)
        else:
            self._timeout_cb()

    def _timeout_cb(self) -> None:
        # RFC 5321 §4.5.3.2.7 and §3.8: a server closing for a timeout should say 421 first.
        log.info("session %s peer %s: idle timeout", self.mail_session.id, self.mail_session.ip)
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.write(f"421 4.4.2 {self.hostname} Idle timeout, closing connection\r\n".encode())
        if self.transport is not None:
            self.transport.close()

    # Replies -----------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if not self._raw_replies:
            text = with_enhanced_code(text)
        self._last_code = int(text[:3]) if text[:3].isdigit() else 0
        await super().push(text)

    async def push_raw(self, status: str) -> None:
        self._raw_replies = True
        try:
            await self.push(status)
        finally:
            self._raw_replies = False

    def offers_auth(self) -> bool:
        """AUTH is advertised on submission, under TLS (or on loopback, like Dovecot's default)."""
        session = self.mail_session
        return self.listener.is_submission and not session.authenticated and (
            session.tls or not self._auth_require_tls
        )

    # HELP lists a command when the attribute its `syntax(when=...)` names is true (aiosmtpd's `smtp_HELP`).
    @property
    def help_lists_auth(self) -> bool:
        return self.offers_auth()

    @property
    def help_lists_starttls(self) -> bool:
        return bool(self.tls_context) and not self.mail_session.tls

    async def read_line(self) -> bytes:
        """One client line (for SASL exchanges), without its line end; limited like commands."""
        line = await self._read_command_line()
        return line.rstrip(b"\r\n")

    # The session loop ----------------------------------------------------------------

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted_ip:
            self.listener.connections.release(self._admitted_ip)
            self._admitted_ip = ""
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        session = self.mail_session
        if self._refusal:
            # RFC 5321 §3.1, §4.2.3: 421, service not available, as the greeting; then close.
            log.info("session %s peer %s: refused, %s (%s)", session.id, session.ip, self._refusal, self.listener.role)
            status = "4.7.0" if self._refusal == connlimits.TOO_MANY_FROM_CLIENT else "4.3.2"
            await self.push_raw(f"421 {status} {self.hostname} {self._refusal.capitalize()}; try again later")
            if self.transport is not None:
                self.transport.close()
            return
        log.info("session %s peer %s: connected (%s)", session.id, session.ip, self.listener.role)
        metrics.connection("submission" if self.listener.is_submission else "smtp")
        # RFC 5321 §4.3.1 greeting; RFC 2034 §3: no enhanced code on it.
        await self.push_raw(f"220 {self.hostname} ESMTP ready")
        while self.transport is not None:
            try:
                line = await self._read_command_line()
                await self._dispatch(line)
            except SMTPError as err:
                await self.push(err.reply)
                if err.close and self.transport is not None:
                    self.transport.close()
                    return
            except (asyncio.CancelledError, ConnectionResetError):
                self._writer.close()
                raise
            except TLSSetupException:
                log.info("session %s peer %s: TLS handshake failed", session.id, session.ip)
                if self.transport is not None:
                    self.transport.close()
                return
            except Exception:
                log.exception("session %s peer %s: unexpected error", session.id, session.ip)
                await self.push("451 4.3.0 Internal server error; please try again later")
            if await self._too_many_bad_commands():
                return

    async def _too_many_bad_commands(self) -> bool:
        if not is_bad_command(self._last_code):
            return False
        self._last_code = 0
        self.bad_commands += 1
        if self.bad_commands <= MAX_BAD_COMMANDS or self.transport is None:
            return False
        log.info("session %s peer %s: too many bad commands", self.mail_session.id, self.mail_session.ip)
        await self.push(f"421 4.7.0 {self.hostname} Too many errors, closing connection")
        self.transport.close()
        return True

    async def _read_command_line(self) -> bytes:
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as err:
            await self._discard_rest_of_line(err.consumed)
            raise SMTPError(LINE_TOO_LONG) from None
        if len(line) > MAX_LINE_OCTETS:
            raise SMTPError(LINE_TOO_LONG)
        return line

    async def _discard_rest_of_line(self, consumed: int) -> None:
        await self._reader.readexactly(consumed)
        while True:
            try:
                await self._reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as err:
                await self._reader.readexactly(err.consumed)

    async def _dispatch(self, line: bytes) -> None:
        """Read the verb, look up its `smtp_<VERB>` method and run it (RFC 5321 §4.1.1)."""
        line = line[:-2] if line.endswith(CRLF) else line[:-1]
        if b"\0" in line:
            raise SMTPError("500 5.5.2 NUL character in command refused")
        if b"\r" in line:
            raise SMTPError("500 5.5.2 Bare CR in command refused")
        verb_bytes, _, arg_bytes = line.partition(b" ")
        try:
            verb = verb_bytes.upper().decode("ascii")
        except UnicodeDecodeError:
            raise SMTPError("500 5.5.2 Syntax error: command must be ASCII") from None
        if not verb:
            raise SMTPError("500 5.5.2 Syntax error: empty command")
        method = self._smtp_methods.get(verb)
        if method is None:
            raise SMTPError(f'500 5.5.1 Command "{sanitize(verb)[:PRINTABLE_ECHO]}" not recognized')
        arg = arg_bytes.strip().decode("utf-8", "surrogateescape") or None
        self._reset_timeout()
        await method(arg)

    # Commands whose behaviour differs from aiosmtpd's --------------------------------------

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        self._raw_replies = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._raw_replies = False

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        self._raw_replies = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._raw_replies = False

    @syntax("STARTTLS", when="help_lists_starttls")
    async def smtp_STARTTLS(self, arg: str) -> None:
        # RFC 3207 §4
        if arg:
            raise SMTPError("501 5.5.4 Syntax: STARTTLS")
        if self.mail_session.tls:
            raise SMTPError("503 5.5.1 TLS already active")
        if not self.tls_context:
            raise SMTPError("454 4.7.0 TLS not available")
        await super().smtp_STARTTLS(arg)

    @syntax("AUTH <mechanism> [initial-response]", when="help_lists_auth")
    async def smtp_AUTH(self, arg: str) -> None:
        # RFC 4954 §4
        from mailcore.smtp import auth

        session = self.mail_session
        if not self.listener.is_submission:
            raise SMTPError("502 5.5.1 AUTH is offered on the submission ports only")
        if not session.host_name or not session.extended_smtp:
            raise SMTPError("503 5.5.1 Send EHLO first")
        if self._auth_require_tls and not session.tls:
            raise SMTPError("538 5.7.11 Encryption required for requested authentication mechanism")
        if session.authenticated:
            raise SMTPError("503 5.5.1 Already authenticated")
        assert self.envelope is not None
        if self.envelope.mail_from:
            raise SMTPError("503 5.5.1 AUTH is not permitted during a mail transaction")
        user = await auth.authenticate(self, arg or "")
        session.authenticated = True
        session.user = user
        await self.push("235 2.7.0 Authentication successful")

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        # RFC 4954 §5: where AUTH is offered, MAIL FROM takes AUTH=<mailbox> or AUTH=<> (clients that relay
        # through us, Exim for one, send it). Its value is checked and not used: the login says who sends.
        names = dsnparams.MAIL_PARAMETERS + ((AUTH_PARAMETER,) if self.listener.is_submission else ())
        await self._with_dsn_parameters(names, super().smtp_MAIL(arg))

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        await self._with_dsn_parameters(dsnparams.RCPT_PARAMETERS, super().smtp_RCPT(arg))

    async def _with_dsn_parameters(self, names: tuple[str, ...], command: Awaitable[None]) -> None:
        """Run MAIL or RCPT with the parameters `names` (DSN's, RFC 3461 §4; AUTH) taken off by `_getaddr`.

        aiosmtpd upper-cases parameters and refuses those it does not know (555); these
        must keep their case (an ENVID is case-sensitive), and the handler reads them.
        """
        self._dsn_names, self.dsn_values = names, {}
        try:
            await command
        finally:
            self._dsn_names = ()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        address, params = self._parse_path(arg)
        if address and params and self._dsn_names and self.mail_session.extended_smtp:
            params, self.dsn_values = read_dsn_parameters(dsnparams.take, params, self._dsn_names)
            if AUTH_PARAMETER in self.dsn_values:
                read_dsn_parameters(dsnparams.xtext_decode, self.dsn_values.pop(AUTH_PARAMETER))
        return address, params

    def _parse_path(self, arg: str) -> tuple[str | None, str | None]:
        # RFC 5321 §4.1.1.3 / Appendix C: source routes are obsolete; we refuse rather than strip them.
        if arg.lstrip().startswith("<@"):
            raise SMTPError("553 5.7.1 Source routes are not accepted")
        simple = _SIMPLE_PATH.match(arg)
        if simple is None:  # anything but <dot-atom@dot-atom>: aiosmtpd's full parser
            try:
                return super()._getaddr(arg)
            except Exception:  # noqa: BLE001 - the stdlib parser raises many types on hostile input ("<", "=@[")
                return None, None  # aiosmtpd answers 553 5.1.3 malformed address
        local, domain, rest = simple.groups()
        if self.local_part_limit and len(local) > self.local_part_limit:
            return None, None
        return f"{local}@{domain}", rest

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # RFC 5321 §4.1.1.4
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            raise SMTPError("503 5.5.1 Need RCPT command first")
        if arg:
            raise SMTPError("501 5.5.4 Syntax: DATA")
        if self._chunks_of(self.envelope) is not None:
            raise SMTPError("503 5.5.1 DATA cannot follow BDAT in one transaction (RFC 3030 §2)")
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        await self._finish_message(self._read_data())

    async def _finish_message(self, reading: Awaitable[bytes]) -> None:
        """Read the message (`reading`), hand it to the policy's DATA hook, reply; the transaction ends."""
        assert self.envelope is not None
        try:
            content = await reading
            self.envelope.content = self.envelope.original_content = content
            if header_too_large(content):
                raise SMTPError(HEADER_TOO_LARGE)
            if received_fields(content) > MAX_RECEIVED_FIELDS:
                raise SMTPError(MAIL_LOOP)
            status = await self._call_handler_hook("DATA")
            self._transaction_done(status)
        except SMTPError as err:
            self._transaction_done(err.reply)
            raise
        finally:
            self._set_post_data_state()
        await self.push(status)

    @syntax("BDAT <chunk-size> [LAST]")
    async def smtp_BDAT(self, arg: str | None) -> None:
        """RFC 3030 CHUNKING: `BDAT <size> [LAST]`; the chunk follows the command line, not dot-stuffed.

        The chunk is read whatever the reply (§2: the server "MUST still read the data"), so the
        session stays in step; a size that cannot be read leaves no step to keep, so the session ends.
        """
        match = _BDAT_ARGUMENT.fullmatch(arg or "")
        if match is None:
            raise SMTPError("501 5.5.4 Syntax: BDAT chunk-size [LAST]; closing", close=True)
        size, last = int(match.group(1)), match.group(2) is not None
        not_now = self._bdat_state_problem()
        if not_now is not None:
            await self._read_chunk(size, None)
            raise not_now
        assert self.envelope is not None
        chunks = self._chunks_of(self.envelope)
        if chunks is None:
            chunks = self._bdat = _Chunks(self.envelope)
        await self._read_chunk(size, chunks)
        if chunks.problem is None and self.data_size_limit and chunks.size > self.data_size_limit:
            chunks.problem = SMTPError(TOO_MUCH_DATA.format(limit=self.data_size_limit))
        if not last:
            await self.push(chunks.problem.reply if chunks.problem else f"250 2.0.0 {size} octets received")
        elif chunks.problem is not None:  # refused after the last chunk; the transaction ends
            self._set_post_data_state()
            raise chunks.problem
        else:
            await self._finish_message(chunks.content())

    def _chunks_of(self, envelope: Any) -> _Chunks | None:
        chunks = self._bdat
        return chunks if chunks is not None and chunks.envelope is envelope else None

    def _bdat_state_problem(self) -> SMTPError | None:
        assert self.envelope is not None and self.session is not None
        if not self.session.host_name:
            return SMTPError("503 5.5.1 Error: send HELO first")
        if self._auth_required and not self.session.authenticated:
            return SMTPError("530 5.7.0 Authentication required")
        if not self.envelope.mail_from:
            return SMTPError("503 5.5.1 Error: need MAIL command")
        if not self.envelope.rcpt_tos:
            return SMTPError("503 5.5.1 Need RCPT command first")
        return None

    async def _read_chunk(self, size: int, into: _Chunks | None) -> None:
        """Read `size` octets in pieces (the idle timer moves on with each), kept in `into` unless None."""
        remaining = size
        while remaining:
            piece = await self._reader.readexactly(min(remaining, CHUNK_PIECE))
            self._reset_timeout()
            remaining -= len(piece)
            if into is not None:
                into.add(piece, keep=not self.data_size_limit or into.size + len(piece) <= self.data_size_limit)

    def _transaction_done(self, reply: str) -> None:
        """One log line and one count per transaction that reached the end of DATA, whatever the result."""
        assert self.envelope is not None
        session, code = self.mail_session, int(reply[:3]) if reply[:3].isdigit() else 0
        metrics.smtp_transaction(self.listener.role, code)
        sender = "" if self.envelope.mail_from == "<>" else str(self.envelope.mail_from or "")
        logs.event(
            log, "smtp.transaction", session=session.id, peer=session.ip, listener=self.listener.role,
            queue=session.queue_id or session.id, sender=sender, recipients=list(self.envelope.rcpt_tos),
            size=len(self.envelope.original_content or b""), result=metrics.reply_result(code), reply=reply,
        )
        session.queue_id = ""

    async def _read_data(self) -> bytes:
        """The message up to `<CRLF>.<CRLF>`, un-dot-stuffed (RFC 5321 §4.5.2).

        Smuggling policy (CVE-2023-51764 class): only `.` alone on a CRLF-ended line
        ends the data. A bare CR or LF anywhere refuses the message with `550 5.5.2`
        after the real end, and the session closes, so nothing after it is read as
        commands. Over-long lines and over-size data are read to the end, then refused.
        """
        limit = self.data_size_limit or 0
        content = bytearray()  # not a list of lines: a 50 MB message of 76-octet lines would be 30 MB more
        size = 0
        problem: SMTPError | None = None
        in_fragment = False  # True after a LimitOverrunError: the next read ends a long line
        while True:
            try:
                line = await self._reader.readuntil(CRLF)
            except asyncio.LimitOverrunError as err:
                await self._reader.readexactly(err.consumed)
                problem, in_fragment = problem or SMTPError(LINE_TOO_LONG), True
                content.clear()
                continue
            self._reset_timeout()
            if line == b".\r\n" and not in_fragment:
                break
            in_fragment = False
            size += len(line)
            # The usual line (short, one CR and one LF: its own CRLF) skips the full check.
            if (len(line) > MAX_LINE_OCTETS or line.count(b"\r") != 1 or line.count(b"\n") != 1
                    or (limit and size > limit)):
                problem = problem or self._data_line_problem(line, size, limit)
            if problem is not None:
                content.clear()
                continue
            content += memoryview(line)[1:] if line.startswith(b".") else line
        if problem is not None:
            raise problem
        return bytes(content)

    def _data_line_problem(self, line: bytes, size: int, limit: int) -> SMTPError | None:
        body = line[:-2]
        if b"\r" in body or b"\n" in body:
            log.warning("session %s peer %s: bare CR/LF in DATA", self.mail_session.id, self.mail_session.ip)
            return SMTPError(BARE_LINE_END, close=True)
        if len(line) > (MAX_DATA_LINE_OCTETS if line.startswith(b".") else MAX_LINE_OCTETS):
            return SMTPError(LINE_TOO_LONG)
        if limit and size > limit:
            return SMTPError(TOO_MUCH_DATA.format(limit=limit))
        return None
