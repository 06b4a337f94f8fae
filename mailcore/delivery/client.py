"""The SMTP client that hands messages to a receiver: EHLO, STARTTLS, SIZE, SMTPUTF8, PIPELINING, DATA.

Built on smtplib for the connection and reply parsing; the message body is
dot-stuffed here (`wire_data`), never by smtplib, whose byte path misses lines
that start with "." after a bare CR.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator, Sequence

from mailcore.conf import conf
from mailcore.delivery.outcome import DELIVERED, TEMPORARY, DeliveryError, Outcome, permanent, temporary
from mailcore.dsnparams import NOTHING_ASKED, Request, mail_parameters, rcpt_parameters

log = logging.getLogger(__name__)

# RFC 5321 §2.3.8: lines end in CRLF; a bare CR or bare LF is not sent as such.
_ANY_LINE_END = re.compile(rb"\r\n|\r|\n")
RCPT_TOO_MANY_HISTORICAL = 552
SERVICE_CLOSING = 421  # RFC 5321 §3.8, §4.2.3: the server is closing the transmission channel
MTA_STS_STATUS = "4.7.5"  # RFC 3463 §3.8 X.7.5 cryptographic failure: the verified TLS asked for is not to be had
TLS_REQUIRED_STATUS = "4.7.10"  # RFC 3463 / RFC 7672-style: cannot meet the TLS policy, try later


def wire_data(data: bytes) -> bytes:
    """The DATA payload: every line ended by CRLF, leading dots doubled, then the final `.` line.

    RFC 5321 §4.5.2: "Before sending a line of mail text, the SMTP client checks
    the first character of the line. If it is a period, one additional period is
    inserted at the beginning of the line." Bare CRs count as line ends, so a
    "." after one is stuffed too. Data whose line ends are all CRLF (what our
    store keeps) is stuffed by one replace, not cut into a list of lines (for a
    50 MB message that list alone was twice its size).
    """
    if data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n"):
        body = (b"." if data.startswith(b".") else b"") + data.replace(b"\r\n.", b"\r\n..")
        return body + (b"\r\n.\r\n" if body and not body.endswith(b"\r\n") else b".\r\n")
    lines = _ANY_LINE_END.split(data)
    if lines and lines[-1] == b"":
        lines.pop()
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"".join(line + b"\r\n" for line in stuffed) + b".\r\n"


# A reply's limit. RFC 5321 sets none on its lines; real EHLO replies are about twenty lines, under 1 KB.
MAX_REPLY_OCTETS = 64 * 1024
MAX_REPLY_LINE = 8192  # smtplib's own limit on one line
# The message goes out in pieces, each of which must be taken within the timeout (RFC 5321 §4.5.3.2.5 times
# each send, not the whole: 50 MB over a slow uplink take minutes), and the whole at no less than
# MIN_DATA_RATE after one timeout's grace, so that a receiver reading a little now and then cannot hold a
# delivery thread for hours. 10 KB/s is a modem's pace, far below any real link.
DATA_PIECE = 64 * 1024
MIN_DATA_RATE = 10_000  # octets a second
# RFC 5321 §4.5.3.2.6: the reply to the end of the data may take 10 minutes, twice the other replies: the
# receiver may scan the message first, and a sender that gives up then sends it again, a duplicate.
DATA_DONE_TIMEOUT_FACTOR = 2  # times MAIL_SMTP_CLIENT_TIMEOUT: 600 s by default
# One slow reply is waited for as RFC 5321 §4.5.3.2 asks; a whole session of them is not. A delivery (finding a
# host that answers, the session, one transaction) has TRANSACTION_SECONDS plus its data's time at
# MIN_DATA_RATE (`longest_transaction`), and is deferred when it takes longer: so its rows' lease
# (claims.LEASE_SECONDS) is known to outlast it.
TRANSACTION_SECONDS = 20 * 60
# RFC 5321 §4.1.1.10: the server answers QUIT and closes. Nothing hangs on that reply (Postfix does not even
# wait for it): a server slow to say goodbye must not hold a delivery thread for a full timeout.
QUIT_REPLY_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Deadline:
    """The moment (time.monotonic) a delivery's SMTP conversation must be over, and the seconds it was given."""

    at: float
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def passed(self) -> str:
        return f"the delivery took longer than {self.seconds:.0f} s in all"


class _BoundedSMTP(smtplib.SMTP):
    """smtplib's client whose replies are bounded: each must come whole within the timeout
    (MAIL_SMTP_CLIENT_TIMEOUT) and within MAX_REPLY_OCTETS. smtplib's own `getreply` waits `timeout`
    for each read and takes any number of lines: a receiver sending `250-` lines without end grew the
    delivering process's memory until it died, and one sending a byte a minute held a delivery thread
    for as long as it liked. Replies are read from the socket here (smtplib reads them nowhere else)."""

    _pending = b""  # bytes read after the end of the last reply's line
    _pending_of: object = None  # the socket they came from (STARTTLS makes a new one: none carry over)
    deadline: Deadline | None = None  # of the delivery under way, which no wait may outlast
    implicit_tls: ssl.SSLContext | None = None  # TLS from the first byte (RFC 8314 §3.3), not STARTTLS

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        """The TCP connection, within MAIL_SMTP_CONNECT_TIMEOUT: a host that does not answer is given up sooner
        than one that answers slowly (Postfix: 30 s against 300 s). `_get_socket` is smtplib's hook for this
        (SMTP_SSL and LMTP override it too), missing from typeshed's stubs. With `implicit_tls`, the TLS
        handshake follows at once, within the same time (as SMTP_SSL does it)."""
        sock = super()._get_socket(host, port, self._within(conf.smtp_connect_timeout)[0])  # type: ignore[misc]
        if self.implicit_tls is not None:
            sock = self.implicit_tls.wrap_socket(sock, server_hostname=self._host)  # type: ignore[attr-defined]
        sock.settimeout(timeout)
        return sock

    def _within(self, seconds: float) -> tuple[float, str]:
        """`seconds`, or less when the delivery's deadline comes first, and what to say when that time runs
        out; raises once the deadline has passed."""
        if self.deadline is None:
            return seconds, ""
        left = self.deadline.at - time.monotonic()
        if left <= 0:
            raise smtplib.SMTPServerDisconnected(self.deadline.passed())
        return (left, self.deadline.passed()) if left < seconds else (seconds, "")

    def getreply(self, within: float | None = None) -> tuple[int, bytes]:
        """The next reply, whole within `within` seconds (the timeout when not given) and MAX_REPLY_OCTETS."""
        within, cut_short = self._within(within or self.timeout or 60.0)
        deadline = time.monotonic() + within
        lines: list[bytes] = []
        size = 0
        with self._bounded_io():
            while True:
                line = self._reply_line(deadline, cut_short or f"no whole reply within {within:g} s")
                size += len(line)
                if size > MAX_REPLY_OCTETS:
                    raise smtplib.SMTPServerDisconnected(f"reply longer than {MAX_REPLY_OCTETS} octets")
                lines.append(line[4:].strip(b" \t\r\n"))
                if not line[:3].isdigit() or line[3:4] != b"-":  # RFC 5321 §4.2.1: the last line has no "-"
                    break
        code = int(line[:3]) if line[:3].isdigit() else -1
        return code, b"\n".join(lines)

    def _reply_line(self, deadline: float, too_late: str) -> bytes:
        if self._pending_of is not self.sock:
            self._pending, self._pending_of = b"", self.sock
        while b"\n" not in self._pending:
            if self.sock is None:
                raise smtplib.SMTPServerDisconnected("please run connect() first")
            if len(self._pending) > MAX_REPLY_LINE:
                raise smtplib.SMTPServerDisconnected("reply line too long")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise smtplib.SMTPServerDisconnected(too_late)
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                raise smtplib.SMTPServerDisconnected(too_late) from None
            if not chunk:
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line + b"\n"

    def send_data(self, wire: bytes) -> None:
        """Send the dot-stuffed message: DATA_PIECE octets at a time, each taken within the timeout, the
        whole within the timeout plus its size at MIN_DATA_RATE. (smtplib's `send` is one `sendall`, whose
        timeout bounds the whole: a large message to a slow but steady receiver could never go.)"""
        if self.sock is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        timeout = self.timeout or 60.0
        whole, cut_short = self._within(timeout + len(wire) / MIN_DATA_RATE)
        deadline = time.monotonic() + whole
        too_slow = cut_short or f"the receiver took the data slower than {MIN_DATA_RATE} octets a second"
        view = memoryview(wire)
        with self._bounded_io():
            for start in range(0, len(wire), DATA_PIECE):
                remaining = deadline - time.monotonic()
                self.sock.settimeout(max(0.001, min(timeout, remaining)))
                try:
                    self.sock.sendall(view[start:start + DATA_PIECE])
                except TimeoutError:
                    raise smtplib.SMTPServerDisconnected(
                        f"the receiver took no data for {timeout:g} s" if remaining > timeout else too_slow) from None

    @contextlib.contextmanager
    def _bounded_io(self) -> Iterator[None]:
        """Around reads and writes with deadlines of their own: a failure closes the connection (where the
        session stands is unknown), and the socket gets its usual timeout back."""
        try:
            yield
        except (OSError, smtplib.SMTPException):
            self.close()
            raise
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.timeout)


@dataclasses.dataclass(frozen=True)
class Verified:
    """TLS whose certificate must be valid for the host's name by `context` (PKIX, RFC 6125), and what asks for
    it: "its domain's MTA-STS policy" (RFC 8461 §4.2), "MAIL_RELAY_TLS_VERIFY" (a smarthost we log in to)."""

    context: ssl.SSLContext
    required_by: str


def client_tls_context() -> ssl.SSLContext:
    """Opportunistic TLS (RFC 3207): encrypt, but accept any certificate (RFC 7435 §1.3)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Connection:
    """One open SMTP session to one receiver, reusable for several transactions."""

    def __init__(self, smtp: _BoundedSMTP, host: str, address: str) -> None:
        self.smtp = smtp
        self.host = host
        self.address = address
        self.transactions = 0
        self.broken = False
        self.reused = False  # taken from the pool: the server may have closed it meanwhile

    @classmethod
    def open(cls, host: str, address: str, port: int, *, credentials: tuple[str, str] | None = None,
             verified: Verified | None = None, deadline: Deadline | None = None,
             implicit_tls: bool = False) -> Connection:
        """Connect, EHLO, STARTTLS when offered (or required), and AUTH when given credentials.

        With `verified` (an MTA-STS policy in force, a smarthost we log in to), STARTTLS is required and the
        certificate must be valid for `host` by its context (RFC 8461 §4.2). Opportunistic TLS (RFC 7435) never
        holds mail back: when the server offers STARTTLS and the handshake fails (an old server, a broken set-up),
        the mail goes in clear on a new connection, as Postfix's `may` level does. Not where TLS is
        required, nor before AUTH (the password never goes in clear). No wait outlasts `deadline`.
        With `implicit_tls` (a smarthost on port 465, RFC 8314 §3.3) TLS starts with the connection instead.
        """
        if implicit_tls:
            context = verified.context if verified else client_tls_context()
            return cls._open(host, address, port, credentials, verified, deadline, tls=context)
        try:
            return cls._open(host, address, port, credentials, verified, deadline, tls=STARTTLS)
        except _StartTlsFailed as failed:
            if verified is not None or conf.outbound_tls_required or credentials:
                raise failed.error from failed
            log.warning("%s; sending to %s [%s] in clear (opportunistic TLS)", failed.error, host, address)
            return cls._open(host, address, port, credentials, verified, deadline, tls=IN_CLEAR)

    @classmethod
    def _open(cls, host: str, address: str, port: int, credentials: tuple[str, str] | None,
              verified: Verified | None, deadline: Deadline | None, tls: ssl.SSLContext | str) -> Connection:
        """`tls`: STARTTLS, IN_CLEAR, or the context of TLS from the first byte."""
        smtp = _BoundedSMTP(local_hostname=conf.hostname, timeout=conf.smtp_client_timeout,
                            source_address=conf.outbound_source(address))
        smtp.deadline = deadline
        smtp._host = host  # type: ignore[attr-defined]  # SNI with the host's name, not the address
        smtp.implicit_tls = tls if isinstance(tls, ssl.SSLContext) else None
        try:
            code, text = smtp.connect(address, port)
            if code != 220:  # RFC 5321 §3.1: 554 greeting means "no service here"; try the next host
                raise temporary("4.4.1", f"greeting {code} {_text(text)}", host, code=code)
            _hello(smtp, host)
            if tls == STARTTLS:
                _starttls(smtp, host, verified)
            if credentials:
                _login(smtp, host, credentials)
        except ssl.SSLCertVerificationError as err:  # TLS from the first byte, with `verified`
            smtp.close()
            raise _not_valid(host, verified, err) from err
        except (OSError, smtplib.SMTPException) as err:
            smtp.close()
            raise temporary("4.4.1", f"connection to {host} [{address}]:{port} failed: {err}", host) from err
        except (DeliveryError, _StartTlsFailed):
            smtp.close()
            raise
        smtp.deadline = None
        return cls(smtp, host, address)

    @property
    def offers_dsn(self) -> bool:
        """The server takes DSN requests (RFC 3461 §4): from here on, reports are its business."""
        return bool(self.smtp.has_extn("dsn"))

    def send(self, sender: str, recipients: Sequence[str], data: bytes, *, smtputf8: bool,
             request: Request = NOTHING_ASKED, deadline: Deadline | None = None) -> dict[str, Outcome]:
        """One transaction; returns each recipient's outcome. Raises DeliveryError for all of them.

        `request` (RET, ENVID, and NOTIFY and ORCPT by recipient) is passed on when the server offers DSN.
        No wait outlasts `deadline`.
        """
        self.smtp.deadline = deadline
        try:
            return self._transaction(sender, recipients, data, smtputf8, request)
        except (OSError, smtplib.SMTPException) as err:
            self.broken = True
            self.close()
            raise temporary("4.4.2", f"connection to {self.host} lost: {err}", self.host) from err
        except DeliveryError:
            raise  # refused before MAIL (SIZE, SMTPUTF8): the session is still clean and reusable
        except Exception:
            self.broken = True  # stopped mid-transaction: never reuse (nor pool) this session
            self.close()
            raise
        finally:
            self.smtp.deadline = None

    def _transaction(self, sender: str, recipients: Sequence[str], data: bytes, smtputf8: bool,
                     request: Request) -> dict[str, Outcome]:
        smtp = self.smtp
        options = self._mail_options(len(data), data, smtputf8)
        dsn = self.offers_dsn
        if dsn:
            options += mail_parameters(request)
        smtp.command_encoding = "utf-8" if smtputf8 else "ascii"
        commands = [f"MAIL FROM:<{sender}>{_joined(options)}"]
        commands += [f"RCPT TO:<{rcpt}>{_joined(rcpt_parameters(request.of(rcpt)) if dsn else [])}"
                     for rcpt in recipients]
        replies = self._exchange(commands)
        mail_reply, rcpt_replies = replies[0], replies[1:]
        if mail_reply.kind != DELIVERED:
            self._reset()
            return dict.fromkeys(recipients, mail_reply)
        results = dict(zip(recipients, map(_rcpt_outcome, rcpt_replies), strict=True))
        if self.broken:  # a RCPT was answered 421: the others got that reply too, the session is over
            return results
        accepted = [r for r in recipients if results[r].kind == DELIVERED]
        if not accepted:
            self._reset()
            return results
        final = self._data(data)
        self.transactions += 1
        results.update(dict.fromkeys(accepted, final))
        return results

    def _mail_options(self, size: int, data: bytes, smtputf8: bool) -> list[str]:
        smtp, options = self.smtp, []
        if smtp.has_extn("size"):
            limit = int(smtp.esmtp_features.get("size") or 0)
            if limit and size > limit:  # RFC 1870 §6.2: don't send what the server already said is too big
                text = f"message of {size} bytes exceeds {self.host}'s limit of {limit}"
                raise permanent("5.3.4", text, self.host, 552)
            options.append(f"SIZE={size}")
        if smtputf8:
            if not smtp.has_extn("smtputf8"):  # RFC 6531 §3.5: without SMTPUTF8, bounce with 5.6.7
                raise permanent("5.6.7", f"{self.host} does not support SMTPUTF8", self.host, 553)
            options.append("SMTPUTF8")
        if not data.isascii() and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")  # RFC 6152 §3
        return options

    def _exchange(self, commands: list[str]) -> list[Outcome]:
        """Send MAIL and RCPTs, pipelined when the server offers it (RFC 2920 §3.1), else one by one.

        A 421 ends it: the server is closing the channel (RFC 5321 §3.8), so no more replies come and
        the commands not yet answered get that reply (the server's own words reach the queue and log).
        """
        smtp = self.smtp
        pipelined = bool(smtp.has_extn("pipelining"))
        if pipelined:
            smtp.send("".join(c + "\r\n" for c in commands))
        replies: list[Outcome] = []
        for command in commands:
            if not pipelined:
                smtp.putcmd(command)
            replies.append(self._reply())
            if replies[-1].code == SERVICE_CLOSING:
                self.broken = True
                return replies + [replies[-1]] * (len(commands) - len(replies))
        return replies

    def _data(self, data: bytes) -> Outcome:
        self.smtp.putcmd("DATA")
        start = self._reply_raw()
        if 200 <= start[0] < 400 and start[0] != 354:  # RFC 5321 §4.1.1.4: only 354 lets the message go
            # Success before the message went (a receiver out of step, a broken one) is no delivery; the
            # session, out of step, is not used again.
            self.broken = True
            text = f"{self.host} answered DATA with {start[0]} {start[1]}, not 354: the message was not sent"
            return Outcome(TEMPORARY, 451, "4.5.0", text, self.host)  # RFC 3463 X.5.0: a protocol error
        if start[0] != 354:
            final = Outcome.from_reply(*start, host=self.host)
        else:
            self.smtp.send_data(wire_data(data))
            final = Outcome.from_reply(*self._reply_raw(self.smtp.timeout * DATA_DONE_TIMEOUT_FACTOR), host=self.host)
        self.broken = self.broken or final.code == SERVICE_CLOSING
        return final

    def _reply_raw(self, within: float | None = None) -> tuple[int, str]:
        code, text = self.smtp.getreply(within)
        return code, _text(text)

    def _reply(self) -> Outcome:
        return Outcome.from_reply(*self._reply_raw(), host=self.host)

    def _reset(self) -> None:
        if self.broken:  # after a 421 there is no session left to reset
            return
        self.smtp.putcmd("RSET")  # RFC 5321 §4.1.1.5
        code, _ = self.smtp.getreply()
        if code != 250:
            self.broken = True

    def close(self) -> None:
        try:
            if not self.broken:
                self.smtp.putcmd("QUIT")  # RFC 5321 §4.1.1.10
                self.smtp.getreply(QUIT_REPLY_SECONDS)
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            self.smtp.close()


STARTTLS, IN_CLEAR = "starttls", "in clear"  # Connection._open's ways with TLS, beside an implicit TLS context


class _StartTlsFailed(Exception):
    """The server offered STARTTLS and the handshake (or its reply) failed; `error` is the deferral it means."""

    def __init__(self, error: DeliveryError) -> None:
        super().__init__(str(error))
        self.error = error


def _rcpt_outcome(outcome: Outcome) -> Outcome:
    """RFC 5321 §4.5.3.1.10: a 552 to RCPT, once the "too many recipients" reply, SHOULD be taken as temporary
    (Postfix does so too); the server's reply is kept as it was."""
    if outcome.code == RCPT_TOO_MANY_HISTORICAL:
        return dataclasses.replace(outcome, kind=TEMPORARY)
    return outcome


def longest_transaction(size: int) -> float:
    """Seconds a delivery of `size` octets may take at most (its Deadline), a new connection included: what a
    lease must cover (`claims.extend_lease`)."""
    return TRANSACTION_SECONDS + size / MIN_DATA_RATE


def too_many_recipients(outcome: Outcome) -> bool:
    """A RCPT refused for the transaction's recipient limit (RFC 5321 §4.5.3.1.10: 452, historically 552): the
    recipient can go in the next transaction."""
    return outcome.kind == TEMPORARY and (outcome.status == "4.5.3" or outcome.code == RCPT_TOO_MANY_HISTORICAL)


def _joined(parameters: list[str]) -> str:
    return "".join(" " + parameter for parameter in parameters)


def _text(text: bytes | str) -> str:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return " ".join(raw.split())


def _hello(smtp: smtplib.SMTP, host: str) -> None:
    code, text = smtp.ehlo()
    if code != 250:  # RFC 5321 §4.1.4: fall back to HELO when EHLO is refused
        code, text = smtp.helo()
        if code != 250:
            raise DeliveryError(Outcome.from_reply(code, _text(text), host))


def _starttls(smtp: smtplib.SMTP, host: str, verified: Verified | None = None) -> None:
    if not smtp.has_extn("starttls"):
        if verified is not None:
            raise temporary(MTA_STS_STATUS, f"{host} does not offer STARTTLS, which {verified.required_by} requires",
                            host)
        if conf.outbound_tls_required:
            raise temporary(TLS_REQUIRED_STATUS, f"{host} does not offer STARTTLS and MAIL_OUTBOUND_TLS=require", host)
        return
    try:
        context = verified.context if verified else client_tls_context()
        smtp.starttls(context=context)  # RFC 3207 §4.2: forget everything, EHLO again
        _hello(smtp, host)  # under TLS 1.3 a server's refusal of the handshake shows at this first read
    except ssl.SSLCertVerificationError as err:
        raise _not_valid(host, verified, err) from err
    except (OSError, smtplib.SMTPException) as err:  # ssl.SSLError and resets are OSErrors; a refusal, a hang-up
        raise _StartTlsFailed(temporary(TLS_REQUIRED_STATUS, f"STARTTLS with {host} failed: {err}", host)) from err


def _not_valid(host: str, verified: Verified | None, err: ssl.SSLCertVerificationError) -> DeliveryError:
    required_by = verified.required_by if verified else "verified TLS"
    text = f"certificate of {host} not valid, as {required_by} requires: {err.verify_message}"
    return temporary(MTA_STS_STATUS, text, host)


def _login(smtp: smtplib.SMTP, host: str, credentials: tuple[str, str]) -> None:
    try:
        smtp.login(*credentials)  # RFC 4954
    except smtplib.SMTPAuthenticationError as err:
        raise DeliveryError(Outcome.from_reply(err.smtp_code, _text(err.smtp_error), host)) from err
