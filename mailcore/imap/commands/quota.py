"""QUOTA (RFC 9208): one quota root, "", holding the account's STORAGE limit in KiB."""
from __future__ import annotations

from typing import TYPE_CHECKING

from mailcore import store
from mailcore.imap import wire
from mailcore.imap.errors import No
from mailcore.imap.parser import Parser
from mailcore.store import aio

if TYPE_CHECKING:
    from mailcore.imap.session import Session

ROOT = ""  # RFC 9208 §3.2: every folder of the account shares this one root
KIB = 1024  # RFC 9208 §5.1: STORAGE is counted in units of 1024 octets


async def cmd_GETQUOTAROOT(s: Session, p: Parser) -> str:
    """RFC 9208 §4.3.2: QUOTAROOT then QUOTA for each root; no limit means no root."""
    p.sp()
    name = s.mailbox_arg(p)
    p.end()
    ref = await aio.run(store.get_folder, s.account_id, name)
    used, limit = await aio.run(store.quota, s.account_id)
    if not limit:
        s.untagged(b"QUOTAROOT " + s.mailbox_out(ref.name))
        return "GETQUOTAROOT completed"
    s.untagged(b"QUOTAROOT " + s.mailbox_out(ref.name) + b" " + wire.string(ROOT))
    s.untagged(_quota_line(used, limit))
    return "GETQUOTAROOT completed"


async def cmd_GETQUOTA(s: Session, p: Parser) -> str:
    """RFC 9208 §4.3.1."""
    p.sp()
    root = p.astring_text()
    p.end()
    used, limit = await aio.run(store.quota, s.account_id)
    if root != ROOT or not limit:
        raise No("no such quota root", "NONEXISTENT")
    s.untagged(_quota_line(used, limit))
    return "GETQUOTA completed"


async def cmd_SETQUOTA(s: Session, p: Parser) -> str:
    """RFC 9208 §4.3.3: limits are set by the administrator, not over IMAP."""
    raise No("quota limits are set by the administrator", "NOPERM")


def _quota_line(used: int, limit: int) -> bytes:
    used_kib = (used + KIB - 1) // KIB
    return b'QUOTA "" (STORAGE %d %d)' % (used_kib, limit // KIB)
