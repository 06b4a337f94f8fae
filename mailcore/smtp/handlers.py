"""Policy for the two kinds of SMTP listener: aiosmtpd `handle_<VERB>` hooks for MX and submission.

Every check that reads the database runs in a store thread (`aio.run`); refusals
are raised as SMTPError and become replies in the session loop.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from mailcore import dsnparams, store
from mailcore.address import AddressError, parse_address
from mailcore.conf import conf
from mailcore.smtp import inbound, submission
from mailcore.smtp.headers import TraceInfo
from mailcore.smtp.recipients import check_recipient
from mailcore.smtp.replies import SMTPError
from mailcore.smtp.server import MailEnvelope, MailSession, SMTPServer, read_dsn_parameters, sanitize
from mailcore.store import aio

log = logging.getLogger(__name__)

# RFC 5321 §4.5.3.1.8: a server MUST accept at least 100 recipients; more get 452 (§4.5.3.1.10).
MAX_RECIPIENTS = 100
NULL_SENDER = "<>"


def trace_of(server: SMTPServer, session: MailSession, envelope: MailEnvelope) -> TraceInfo:
    return TraceInfo(
        helo=session.host_name or "",
        ip=session.ip,
        session_id=session.id,
        tls=session.tls,
        authenticated=session.user is not None,
        smtputf8=bool(envelope.smtp_utf8),
        login=session.user.address if session.user else "",
    )


def _size_hint(options: list[str]) -> int:
    """The SIZE= value of MAIL FROM (RFC 1870 §6), 0 when absent."""
    for option in options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


def _require_utf8_permission(address: str, envelope: MailEnvelope) -> None:
    # RFC 6531 §3.4: non-ASCII addresses only in a transaction that said SMTPUTF8.
    if not address.isascii() and not envelope.smtp_utf8:
        raise SMTPError("553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter")


class BaseHandler:
    """What MX and submission share: EHLO, MAIL and RCPT checks."""

    relay_allowed = False

    async def handle_EHLO(
        self, server: SMTPServer, session: MailSession, envelope: MailEnvelope, hostname: str, responses: list[str]
    ) -> list[str]:
        # RFC 5321 §4.1.1.1: advertise exactly the extensions we implement.
        session.host_name = hostname
        lines = [f"{server.hostname} Hello {sanitize(hostname)}", "PIPELINING"]
        lines += [f"SIZE {conf.max_message_size}", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"]
        if server.tls_context and not session.tls:
            lines.append("STARTTLS")  # RFC 3207 §4: not after TLS is active
        if server.offers_auth():
            lines.append("AUTH LOGIN PLAIN")  # RFC 4954 §3
        return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]

    async def handle_MAIL(
        self, server: SMTPServer, session: MailSession, envelope: MailEnvelope, address: str, options: list[str]
    ) -> str:
        # RFC 5321 §4.1.1.2
        sender = "" if address == NULL_SENDER else address
        if sender:
            _require_utf8_permission(sender, envelope)
            try:
                sender = str(parse_address(sender))
            except AddressError as err:
                raise SMTPError(f"501 5.1.7 Bad sender address syntax: {err}") from None
        request = read_dsn_parameters(dsnparams.mail_request, server.dsn_values)
        await self.check_sender(session, sender)
        envelope.mail_from = sender or NULL_SENDER
        envelope.dsn = request
        envelope.mail_options.extend(options)
        log.debug("session %s peer %s: MAIL FROM <%s>", session.id, session.ip, sanitize(sender))
        return "250 2.1.0 Sender OK"

    async def check_sender(self, session: MailSession, sender: str) -> None:
        """Submission overrides this with the ownership check."""

    async def handle_RCPT(
        self, server: SMTPServer, session: MailSession, envelope: MailEnvelope, address: str, options: list[str]
    ) -> str:
        # RFC 5321 §4.1.1.3
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            raise SMTPError("452 4.5.3 Too many recipients")
        _require_utf8_permission(address, envelope)
        request = read_dsn_parameters(dsnparams.recipient_request, server.dsn_values, bool(envelope.smtp_utf8))
        accepted = await aio.run(check_recipient, address, self.relay_allowed, _size_hint(envelope.mail_options))
        envelope.rcpt_tos.append(accepted.address)
        envelope.rcpt_options.extend(options)
        if request != dsnparams.NO_REQUEST:
            envelope.dsn_recipients[accepted.address] = request
        log.debug("session %s peer %s: RCPT TO <%s>", session.id, session.ip, sanitize(accepted.address))
        return "250 2.1.5 Recipient OK"

    @staticmethod
    def sender_of(envelope: MailEnvelope) -> str:
        return "" if envelope.mail_from == NULL_SENDER else str(envelope.mail_from)


class MXHandler(BaseHandler):
    """Port 25: mail from the world for our domains only; SPF, DKIM and DMARC at end of DATA."""

    async def handle_DATA(self, server: SMTPServer, session: MailSession, envelope: MailEnvelope) -> str:
        content: Any = envelope.original_content
        sender = self.sender_of(envelope)
        trace = trace_of(server, session, envelope)
        recipients = list(envelope.rcpt_tos)
        try:
            # Blocking library calls and file writes: in a thread of their own, the store's threads stay free.
            verdict, prepared = await asyncio.to_thread(
                inbound.check_and_prepare, content, sender, session.ip, session.host_name or "", recipients, trace
            )
            if prepared is None:
                log.info("session %s peer %s: DMARC reject: %s", session.id, session.ip, verdict.refusal)
                raise SMTPError(f"550 5.7.1 Message rejected: {verdict.refusal}")
            await aio.run_durable(inbound.deliver_inbound, prepared, sender, recipients, envelope.dsn_request())
        except store.OverQuota:
            raise SMTPError("452 4.2.2 Mailbox full; try again later") from None
        except store.StorageFailure:
            log.exception("session %s peer %s: storing failed", session.id, session.ip)
            raise SMTPError("451 4.3.0 Could not store the message; try again later") from None
        # The transaction's one INFO line (sender, recipients, reply) comes from the session: smtp.transaction.
        return f"250 2.0.0 Message accepted for delivery ({session.id})"


class SubmissionHandler(BaseHandler):
    """Ports 587 and 465: authenticated users send to anyone, from their own addresses only."""

    relay_allowed = True

    async def check_sender(self, session: MailSession, sender: str) -> None:
        assert session.user is not None  # aiosmtpd answered 530 5.7.0 before MAIL without AUTH
        await aio.run(submission.check_sender, session.user.account_id, sender)

    async def handle_DATA(self, server: SMTPServer, session: MailSession, envelope: MailEnvelope) -> str:
        assert session.user is not None
        trace = trace_of(server, session, envelope)
        try:
            result = await aio.run_durable(
                submission.submit,
                session.user.account_id,
                self.sender_of(envelope),
                list(envelope.rcpt_tos),
                envelope.original_content or b"",
                trace,
                dsn=envelope.dsn_request(),
            )
        except store.StorageFailure:
            log.exception("session %s peer %s: storing failed", session.id, session.ip)
            raise SMTPError("451 4.3.0 Could not store the message; try again later") from None
        session.queue_id = str(result.queue_id or "")
        return f"250 2.0.0 Message accepted ({len(result.delivered)} delivered, {len(result.queued)} queued)"
