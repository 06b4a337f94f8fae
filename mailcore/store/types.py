"""Values the store hands out (plain data, safe to use in any thread or event loop) and its errors."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


class StoreError(Exception):
    """Base of every store error; `temporary` says whether trying again later may succeed."""

    temporary = False


class OverQuota(StoreError):
    """The account has no room: SMTP `452 4.2.2`, IMAP `NO [OVERQUOTA]` (RFC 9208 §4.3)."""

    temporary = True


class StorageFailure(StoreError):
    """The message could not be made durable (disk full, unwritable): SMTP `451 4.3.0`."""

    temporary = True


class NoSuchFolder(StoreError):
    """The folder does not exist for this account: IMAP `NO [NONEXISTENT]` or `[TRYCREATE]`."""


class FolderExists(StoreError):
    """A folder of that name exists already: IMAP `NO [ALREADYEXISTS]`."""


class InvalidFolderName(StoreError):
    """The name is not acceptable (empty part, wildcard, control character, too long)."""


class FolderNotAllowed(StoreError):
    """The operation is not allowed on this folder (deleting INBOX, renaming onto a child)."""


@dataclass(frozen=True)
class FolderRef:
    """A handle to one folder of one account; every message operation is scoped by it."""

    account_id: int
    mailbox_id: int
    name: str
    uidvalidity: int


@dataclass(frozen=True)
class FolderInfo:
    id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str
    subscribed: bool
    messages: int = 0
    unseen: int = 0
    size: int = 0


@dataclass(frozen=True)
class MessageInfo:
    """One message row as the protocols and the webmail see it."""

    uid: int
    modseq: int
    flags: tuple[str, ...]
    internal_date: dt.datetime
    size: int
    blob: str
    envelope: dict[str, Any]
    bodystructure: dict[str, Any]
    subject: str
    sender: str
    sent_date: dt.datetime | None
    message_id: str
    thread_id: int | None
    has_attachments: bool


@dataclass(frozen=True)
class Appended:
    """Where a message landed (RFC 4315 APPENDUID)."""

    uidvalidity: int
    uid: int


@dataclass
class DeliveryReport:
    """The outcome of one delivery, per envelope recipient (as given)."""

    delivered: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # rcpt -> [(mailbox id, uid)]
    unknown: list[str] = field(default_factory=list)
    over_quota: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)  # alias targets outside our domains

    @property
    def all_delivered(self) -> bool:
        return not self.unknown and not self.over_quota


@dataclass(frozen=True)
class FlagChange:
    uid: int
    flags: tuple[str, ...]
    modseq: int


@dataclass
class FlagResult:
    """RFC 7162 §3.1.3: the changed messages, and the UIDs that failed UNCHANGEDSINCE."""

    changed: list[FlagChange] = field(default_factory=list)
    modified: list[int] = field(default_factory=list)
