"""Not-authenticated state: STARTTLS, LOGIN, AUTHENTICATE PLAIN (RFC 9051 §6.2, RFC 4616, RFC 4959 SASL-IR)."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from mailcore import metrics
from mailcore.auth import check_login, sasl, throttle
from mailcore.imap.errors import Bad, No
from mailcore.imap.parser import Parser
from mailcore.store import aio

if TYPE_CHECKING:
    from mailcore.imap.session import Session

log = logging.getLogger(__name__)
MAX_SASL_RESPONSE = 8192  # bytes of one base64 SASL response line


async def cmd_STARTTLS(s: Session, p: Parser) -> str | None:
    """RFC 9051 §6.2.1: OK, then the TLS handshake; the client must ask for capabilities again."""
    p.end()
    if s.tls_active or s.context is None:
        raise Bad("TLS is already active" if s.tls_active else "STARTTLS is not offered here")
    s.raw(f"{s.tag} OK Begin TLS negotiation now\r\n".encode())
    await s.start_tls(s.context)
    return None  # the tagged reply went out before the handshake


async def cmd_LOGIN(s: Session, p: Parser) -> str:
    """RFC 9051 §6.2.3: LOGINDISABLED means NO [PRIVACYREQUIRED] before TLS (from non-loopback peers)."""
    p.sp()
    login = p.astring_text()
    p.sp()
    password = p.astring().decode("utf-8", "replace")
    p.end()
    return await _login(s, login, password, "LOGIN")


async def cmd_AUTHENTICATE(s: Session, p: Parser) -> str:
    """RFC 9051 §6.2.2 with RFC 4959 SASL-IR; only PLAIN (RFC 4616) is offered."""
    p.sp()
    mechanism = p.atom().upper()
    initial = None
    if p.take(b" "):
        initial = p.atom()
    p.end()
    if mechanism != "PLAIN":
        raise No("unsupported authentication mechanism", "CANNOT")
    if initial is None:
        initial = await _ask_client(s)
    login, password = _decode_plain(initial)
    return await _login(s, login, password, "AUTHENTICATE")


async def _ask_client(s: Session) -> str:
    s.raw(b"+ \r\n")
    await s.flush()
    line = (await s.read_line())[:MAX_SASL_RESPONSE].rstrip(b"\r\n").decode("ascii", "replace")
    if line == "*":
        raise Bad("authentication cancelled")  # RFC 9051 §6.2.2
    return line


def _decode_plain(text: str) -> tuple[str, str]:
    """RFC 4616 §2 through mailcore.auth.sasl; an authzid other than the login is refused."""
    try:
        credentials = sasl.decode_plain(sasl.decode_base64_response(text))
    except sasl.SaslError as err:
        raise Bad(str(err)) from err
    if credentials.authzid and credentials.authzid != credentials.authcid:
        raise No("cannot log in as another user", "AUTHORIZATIONFAILED")
    return credentials.authcid, credentials.password


async def _login(s: Session, login: str, password: str, how: str) -> str:
    from mailcore.imap.commands.any_state import capability_line
    from mailcore.imap.session import AUTHENTICATED, clean

    if not s.login_allowed:
        raise No("log in over TLS (STARTTLS) first", "PRIVACYREQUIRED")
    if await aio.run(throttle.is_blocked, s.peer):
        raise No("too many failed logins; try later", "UNAVAILABLE")
    await asyncio.sleep(await aio.run(throttle.delay_for, s.peer))
    user = await aio.run(check_login, login, password)
    if user is None:
        await aio.run(throttle.record_failure, s.peer)
        metrics.auth_failure("imap")
        log.info("%s %s failed for %s from %s", s.id, how, clean(login), s.peer)
        raise No("invalid login or password", "AUTHENTICATIONFAILED")
    s.user, s.state = user, AUTHENTICATED
    log.info("%s %s as %s from %s", s.id, how, user.address, s.peer)
    return f"[CAPABILITY {capability_line(s)}] {how} completed"
