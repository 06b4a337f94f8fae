"""SMTP AUTH (RFC 4954) with SASL PLAIN (RFC 4616) and LOGIN, throttled per client IP.

Passwords are checked by mailcore.auth.check_login (the one password check) and
failures counted by mailcore.auth.throttle, both in store threads. Neither the
password nor any AUTH payload is ever logged.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import TYPE_CHECKING

from mailcore import metrics
from mailcore.auth import AuthenticatedUser, check_login, throttle
from mailcore.smtp.replies import SMTPError
from mailcore.store import aio

if TYPE_CHECKING:
    from mailcore.smtp.server import SMTPServer

log = logging.getLogger(__name__)

MECHANISMS = ("LOGIN", "PLAIN")
# The LOGIN mechanism's customary prompts (draft-murchison-sasl-login): "Username:", "Password:".
LOGIN_USERNAME_PROMPT = "VXNlcm5hbWU6"
LOGIN_PASSWORD_PROMPT = "UGFzc3dvcmQ6"
BLOCKED = "421 4.7.0 Too many failed logins from your address; try again later"
INVALID = "535 5.7.8 Authentication credentials invalid"


async def authenticate(server: SMTPServer, arg: str) -> AuthenticatedUser:
    """Run one AUTH exchange; the user on success, else raise SMTPError with the reply."""
    session = server.mail_session
    if await aio.run_shared(throttle.is_blocked, session.ip):
        log.warning("session %s peer %s: AUTH refused, address is blocked", session.id, session.ip)
        raise SMTPError(BLOCKED, close=True)
    mechanism, _, initial = arg.strip().partition(" ")
    mechanism = mechanism.upper()
    if not mechanism:
        raise SMTPError("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
    if mechanism not in MECHANISMS:
        raise SMTPError("504 5.5.4 Unrecognized authentication type")
    if mechanism == "PLAIN":
        login, password = await _plain(server, initial.strip())
    else:
        login, password = await _login(server, initial.strip())
    delay = await aio.run_shared(throttle.delay_for, session.ip)
    if delay:
        await asyncio.sleep(delay)  # each recent failure from this IP slows the answer
    user = await aio.run(check_login, login, password) if login else None
    if user is None:
        metrics.auth_failure("submission")
        failures = await aio.run_shared(throttle.record_failure, session.ip)
        log.info("session %s peer %s: AUTH %s failed (%d recent failures)", session.id, session.ip, mechanism, failures)
        raise SMTPError(INVALID)
    log.info("session %s peer %s: AUTH %s as %s", session.id, session.ip, mechanism, user.address)
    return user


async def _plain(server: SMTPServer, initial: str) -> tuple[str, str]:
    # RFC 4616 §2: message = [authzid] NUL authcid NUL passwd
    payload = _decode(initial) if initial else await _challenge(server, "")
    parts = payload.split(b"\0")
    if len(parts) != 3:
        raise SMTPError("501 5.5.2 Malformed PLAIN response")
    authzid, login, password = (_text(p) for p in parts)
    if authzid and authzid != login:
        raise SMTPError(INVALID)  # we do not let one user act as another
    return login, password


async def _login(server: SMTPServer, initial: str) -> tuple[str, str]:
    login = _text(_decode(initial)) if initial else _text(await _challenge(server, LOGIN_USERNAME_PROMPT))
    password = _text(await _challenge(server, LOGIN_PASSWORD_PROMPT))
    return login, password


async def _challenge(server: SMTPServer, prompt: str) -> bytes:
    """Send `334 prompt` and read the client's base64 answer (RFC 4954 §4)."""
    await server.push(f"334 {prompt}")
    answer = (await server.read_line()).strip()
    if answer == b"*":
        raise SMTPError("501 5.7.0 Authentication cancelled")
    return _decode(answer.decode("ascii", "replace"))


def _decode(text: str) -> bytes:
    if text == "=":  # RFC 4954 §4: an empty initial response
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SMTPError("501 5.5.2 Cannot decode base64") from None


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise SMTPError("501 5.5.2 Credentials are not UTF-8") from None
