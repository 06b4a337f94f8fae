"""Commands valid in any state (RFC 9051 §6.1) and ENABLE (RFC 5161), ID (RFC 2971)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from mailcore.imap import wire
from mailcore.imap.errors import Bad
from mailcore.imap.parser import Parser

if TYPE_CHECKING:
    from mailcore.imap.session import Session

# What this server implements, in the order CAPABILITY lists it.
EXTENSIONS = (
    "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN "
    "LIST-EXTENDED LIST-STATUS SPECIAL-USE ESEARCH CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE "
    "SORT THREAD=REFERENCES STATUS=SIZE BINARY SEARCHRES"
)
ENABLEABLE = {"CONDSTORE", "QRESYNC", "IMAP4REV2"}  # RFC 5161 §3.1: others are ignored
SERVER_ID = {"name": "mailcore", "vendor": "mailcore"}
MAX_ID_FIELDS = 30  # RFC 2971 §3.3: at most 30 field-value pairs


def capability_line(session: Session) -> str:
    """RFC 9051 §6.1.1, §6.2.3: STARTTLS and LOGINDISABLED before TLS; AUTH=PLAIN when logins are allowed."""
    parts = [EXTENSIONS]
    if not session.tls_active and session.context is not None:
        parts.append("STARTTLS")
    parts.append("AUTH=PLAIN" if session.login_allowed else "LOGINDISABLED")
    return " ".join(parts)


async def cmd_CAPABILITY(s: Session, p: Parser) -> str:
    """RFC 9051 §6.1.1; RFC 3501 §6.1.1."""
    p.end()
    s.untagged("CAPABILITY " + capability_line(s))
    return "CAPABILITY completed"


async def cmd_NOOP(s: Session, p: Parser) -> str:
    """RFC 9051 §6.1.2: also the client's way to ask for pending changes (polled here)."""
    p.end()
    if s.selected is not None:
        await s.selected.report_changes(s, allow_expunge=True, poll=True)
    return "NOOP completed"


async def cmd_LOGOUT(s: Session, p: Parser) -> str:
    """RFC 9051 §6.1.3: BYE first, then the tagged OK."""
    from mailcore.imap.session import LOGOUT

    p.end()
    s.untagged("BYE logging out")
    s.state = LOGOUT
    return "LOGOUT completed"


async def cmd_ID(s: Session, p: Parser) -> str:
    """RFC 2971 §3.1: the client's identification (logged) and ours."""
    p.sp()
    if p.peek_upper("NIL"):
        p.keyword()
        fields: list[bytes | None] = []
    else:
        fields = p.parenthesised(p.nstring)
    p.end()
    if len(fields) % 2 or len(fields) > 2 * MAX_ID_FIELDS:
        raise Bad("ID needs field-value pairs, at most 30")
    pairs = b" ".join(wire.string(k) + b" " + wire.string(v) for k, v in SERVER_ID.items())
    s.untagged(b"ID (" + pairs + b")")
    return "ID completed"


async def cmd_ENABLE(s: Session, p: Parser) -> str:
    """RFC 5161 §3.1; RFC 9051 §6.3.1. ENABLE QRESYNC implies CONDSTORE (RFC 7162 §3.2.3)."""
    names = []
    while p.take(b" "):
        names.append(p.atom().upper())
    p.end()
    if not names:
        raise Bad("ENABLE needs at least one capability")
    newly = [n for n in dict.fromkeys(names) if n in ENABLEABLE and n not in s.enabled]
    if "QRESYNC" in newly:
        s.enabled.add("CONDSTORE")
    s.enabled.update(newly)
    shown = {"IMAP4REV2": "IMAP4rev2"}
    s.untagged("ENABLED" + "".join(" " + shown.get(n, n) for n in newly))
    return "ENABLE completed"

