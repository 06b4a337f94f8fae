"""AUTHORIZATION state commands: CAPA, STLS, USER, PASS, AUTH (RFC 1939 §4, §7; RFC 2449; RFC 2595; RFC 5034)."""
from __future__ import annotations

import asyncio
import ipaddress
import logging

from mailcore import metrics, store
from mailcore.auth import AuthenticatedUser, check_login, throttle
from mailcore.auth.sasl import SaslError, decode_base64_response, decode_plain
from mailcore.pop3.errors import AUTH, IN_USE, Pop3Error
from mailcore.pop3.maildrop import Maildrop
from mailcore.pop3.parser import MAX_SASL_LINE, Command, expect_args, strip_line_end
from mailcore.pop3.session import SessionBase, SessionClosed
from mailcore.pop3.states import State
from mailcore.store import aio

# Failed logins in one session before we hang up (the shared throttle counts across sessions too).
MAX_FAILED_LOGINS = 3
# The maildrop lock: renewed this often while the session lives, and expires this long after the last renewal,
# so a crashed process frees the maildrop within LOCK_TTL.
LOCK_RENEW_INTERVAL = 60.0
LOCK_TTL = 3 * LOCK_RENEW_INTERVAL
SASL_MECHANISMS = ("PLAIN",)
log = logging.getLogger(__name__)


def plaintext_login_allowed(peer_ip: str, tls_active: bool) -> bool:
    """RFC 2595 §2.2 / RFC 8314 §3: passwords only under TLS, except from the loopback interface."""
    if tls_active:
        return True
    try:
        return ipaddress.ip_address(peer_ip.split("%")[0]).is_loopback
    except ValueError:
        return False


class AuthorizationCommands(SessionBase):
    user_name: str | None = None
    failed_logins = 0
    renewer: asyncio.Task[None] | None = None

    # RFC 2449 §5 CAPA --------------------------------------------------------------------

    async def cmd_CAPA(self, command: Command) -> None:
        expect_args(command, 0, 0, "CAPA")
        await self.send_listing("Capability list follows", self.capabilities())

    def capabilities(self) -> list[str]:
        # RFC 2449 §6: TOP, USER, SASL, RESP-CODES, PIPELINING, UIDL, IMPLEMENTATION; RFC 3206 §6 AUTH-RESP-CODE
        capabilities = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self.login_allowed():
                capabilities += ["USER", "SASL " + " ".join(SASL_MECHANISMS)]
            if not self.tls_active:
                capabilities.append("STLS")  # RFC 2595 §4
        return [*capabilities, "IMPLEMENTATION mailcore"]

    def login_allowed(self) -> bool:
        return plaintext_login_allowed(self.peer_ip, self.tls_active)

    # RFC 2595 §4 STLS --------------------------------------------------------------------

    async def cmd_STLS(self, command: Command) -> None:
        expect_args(command, 0, 0, "STLS")
        if self.tls_active:
            raise Pop3Error("TLS is already active")
        if self.pending_input():
            # Commands pipelined after STLS would be read as if sent under TLS (CVE-2011-0411): refuse.
            raise Pop3Error("command sent after STLS before the TLS handshake", close=True)
        await self.send(b"+OK begin TLS negotiation\r\n")
        try:
            await self.writer.start_tls(self.tls_context)
        except (TimeoutError, OSError) as err:
            raise SessionClosed(f"TLS handshake failed: {err}") from err
        self.tls_active = True
        self.user_name = None  # RFC 2595 §4: the client must discard what it knew; so do we
        self.log(logging.INFO, "TLS started")

    # RFC 1939 §7 USER / PASS ---------------------------------------------------------------

    async def cmd_USER(self, command: Command) -> None:
        (name,) = expect_args(command, 1, 1, "USER name")
        self.require_login_allowed()
        self.user_name = name
        await self.send(b"+OK send PASS\r\n")  # the same reply for every name: no probing for addresses

    async def cmd_PASS(self, command: Command) -> None:
        if self.user_name is None:
            raise Pop3Error("send USER first")
        if not command.rest:
            raise Pop3Error("syntax: PASS password")
        login, self.user_name = self.user_name, None
        await self.login(login, command.rest)

    # RFC 5034 §4 AUTH ----------------------------------------------------------------------

    async def cmd_AUTH(self, command: Command) -> None:
        args = expect_args(command, 0, 2, "AUTH mechanism [initial-response]")
        if not args:  # the RFC 1734 listing some older clients ask for
            await self.send_listing("SASL mechanisms follow", list(SASL_MECHANISMS))
            return
        self.require_login_allowed()
        if args[0].upper() not in SASL_MECHANISMS:
            raise Pop3Error(f"unsupported SASL mechanism {args[0]}")
        response = args[1] if len(args) == 2 else await self.sasl_challenge()
        try:
            credentials = decode_plain(decode_base64_response(response))
        except SaslError as err:
            raise Pop3Error(str(err)) from err
        if credentials.authzid and credentials.authzid.lower() != credentials.authcid.lower():
            raise Pop3Error("authorization identity must be empty or your own login", AUTH)
        await self.login(credentials.authcid, credentials.password)

    async def sasl_challenge(self) -> str:
        """RFC 5034 §4: send an empty challenge; the answer is base64 or "*" to cancel."""
        await self.send(b"+ \r\n")
        line = strip_line_end(await self.read_line())
        if len(line) > MAX_SASL_LINE:
            raise Pop3Error("SASL response too long")
        if line == b"*":
            raise Pop3Error("authentication cancelled")  # RFC 5034 §4: "-ERR" for a cancelled exchange
        return line.decode("ascii", "replace")

    # Logging in ----------------------------------------------------------------------------

    def require_login_allowed(self) -> None:
        if not self.login_allowed():
            raise Pop3Error("use STLS first: no passwords over an unencrypted connection", AUTH)

    async def login(self, login: str, password: str) -> None:
        """Check the password (throttled), lock the maildrop, take its snapshot: TRANSACTION state."""
        if await aio.run(throttle.is_blocked, self.peer_ip):
            raise Pop3Error("too many failed logins from your address, try again later", AUTH, close=True)
        user = await aio.run(check_login, login, password)
        if user is None:
            await self.login_failed(login)
        else:
            await self.open_maildrop(user)

    async def login_failed(self, login: str) -> None:
        metrics.auth_failure("pop3")
        await aio.run(throttle.record_failure, self.peer_ip)
        await asyncio.sleep(await aio.run(throttle.delay_for, self.peer_ip))
        self.failed_logins += 1
        self.log(logging.WARNING, "failed login for %s", login[:100])
        raise Pop3Error("invalid login or password", AUTH, close=self.failed_logins >= MAX_FAILED_LOGINS)

    async def open_maildrop(self, user: AuthenticatedUser) -> None:
        """RFC 1939 §4: "the POP3 server then acquires an exclusive-access lock on the maildrop"."""
        ref = await aio.run(store.get_folder, user.account_id, store.INBOX)
        if not await aio.run(store.acquire_lock, ref, self.lock_owner, LOCK_TTL):
            self.log(logging.INFO, "maildrop of %s in use", user.address)
            raise Pop3Error("maildrop already in use by another session", IN_USE)
        try:
            self.maildrop = Maildrop.from_messages(ref, await aio.run(store.fetch, ref))
        except BaseException:
            await aio.run(store.release_lock, ref, self.lock_owner)
            raise
        self.address = user.address
        self.state = State.TRANSACTION
        self.renewer = asyncio.create_task(self.renew_lock(ref))
        count, octets = self.maildrop.stat()
        self.log(logging.INFO, "login, %d messages", count)
        await self.send(f"+OK maildrop has {count} messages ({octets} octets)\r\n".encode())

    async def renew_lock(self, ref: store.FolderRef) -> None:
        while True:
            await asyncio.sleep(LOCK_RENEW_INTERVAL)
            try:
                if not await aio.run(store.renew_lock, ref, self.lock_owner, LOCK_TTL):
                    self.log(logging.WARNING, "maildrop lock lost")
            except Exception:
                log.warning("pop3[%s] %s could not renew the maildrop lock", self.id, self.peer, exc_info=True)

    async def send_listing(self, first: str, lines: list[str]) -> None:
        body = "".join(f"{line}\r\n" for line in lines)
        await self.send(f"+OK {first}\r\n{body}.\r\n".encode("ascii"))
