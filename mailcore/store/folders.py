"""Folders of an account: create, list, rename, delete, subscribe (RFC 9051 §6.3)."""
from __future__ import annotations

import re
import time

from django.db import IntegrityError, transaction
from django.db.models import F, Sum

from mailcore.models import DEFAULT_FOLDERS, Account, Mailbox, Message
from mailcore.store import sql
from mailcore.store.events import FOLDERS, MailboxEvent, hub
from mailcore.store.types import (
    FolderExists,
    FolderInfo,
    FolderNotAllowed,
    FolderRef,
    InvalidFolderName,
    NoSuchFolder,
)

DELIMITER = "/"  # RFC 9051 §5.1: the hierarchy delimiter this server uses
INBOX = "INBOX"
MAX_FOLDER_NAME_CHARS = 512
MAX_FOLDER_DEPTH = 32
# RFC 9051 §5.1: `%` and `*` are LIST wildcards and cannot be part of a name;
# control characters cannot be typed or shown.
_FORBIDDEN = re.compile(r"[%*\x00-\x1f\x7f]")


def normalize_name(name: str) -> str:
    """Check a folder name and give INBOX its canonical case (RFC 9051 §5.1: INBOX is case-insensitive)."""
    if not name or len(name) > MAX_FOLDER_NAME_CHARS:
        raise InvalidFolderName("folder name is empty or too long")
    if _FORBIDDEN.search(name):
        raise InvalidFolderName("folder name contains a wildcard or control character")
    parts = name.split(DELIMITER)
    if any(part.strip() == "" or part in (".", "..") for part in parts) or len(parts) > MAX_FOLDER_DEPTH:
        raise InvalidFolderName("folder name has an empty, '.' or '..' level, or too many levels")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return DELIMITER.join(parts)


def _next_uidvalidity(account_id: int) -> int:
    """A UIDVALIDITY larger than any this account has used (RFC 9051 §2.3.1.1)."""
    account = Account.objects.select_for_update().only("last_uidvalidity").get(pk=account_id)
    value = max(int(time.time()), account.last_uidvalidity + 1)
    Account.objects.filter(pk=account_id).update(last_uidvalidity=value)
    return value


def create_default_folders(account: Account) -> None:
    for name, special_use in DEFAULT_FOLDERS:
        _create(account.pk, name, special_use)


def _create(account_id: int, name: str, special_use: str = "") -> Mailbox:
    with transaction.atomic():
        uidvalidity = _next_uidvalidity(account_id)
        return Mailbox.objects.create(
            account_id=account_id, name=name, uidvalidity=uidvalidity, special_use=special_use
        )


def create_folder(account_id: int, name: str, special_use: str = "") -> FolderRef:
    """RFC 9051 §6.3.4 CREATE; missing parent levels are created too."""
    name = normalize_name(name)
    parts = name.split(DELIMITER)
    if _find(account_id, name) is not None:
        raise FolderExists(f"folder {name} already exists")
    try:
        with transaction.atomic():
            for depth in range(1, len(parts)):
                parent = DELIMITER.join(parts[:depth])
                if _find(account_id, parent) is None:
                    _create(account_id, parent)
            mailbox = _create(account_id, name, special_use)
    except IntegrityError as err:
        raise FolderExists(f"folder {name} already exists") from err
    _announce(account_id, mailbox.pk)
    return _ref(mailbox)


def _find(account_id: int, name: str) -> Mailbox | None:
    return Mailbox.objects.filter(account_id=account_id, name=name).first()


def _ref(mailbox: Mailbox) -> FolderRef:
    return FolderRef(mailbox.account_id, mailbox.pk, mailbox.name, mailbox.uidvalidity)


def get_folder(account_id: int, name: str) -> FolderRef:
    """The folder called `name` of this account, or NoSuchFolder."""
    mailbox = _find(account_id, normalize_name(name))
    if mailbox is None:
        raise NoSuchFolder(f"no folder {name}")
    return _ref(mailbox)


def folder_by_special_use(account_id: int, special_use: str) -> FolderRef:
    mailbox = Mailbox.objects.filter(account_id=account_id, special_use=special_use).order_by("pk").first()
    if mailbox is None:
        raise NoSuchFolder(f"no {special_use} folder")
    return _ref(mailbox)


def list_folders(account_id: int) -> list[FolderInfo]:
    """Every folder of the account, INBOX first, then by name."""
    infos = [_info(row) for row in Mailbox.objects.filter(account_id=account_id)]
    return sorted(infos, key=lambda f: (f.name != INBOX, f.name))


def folder_info(ref: FolderRef) -> FolderInfo:
    """Current counters and counts of one folder (RFC 9051 §6.3.11 STATUS)."""
    row = sql.folder_row(ref.account_id, ref.mailbox_id, _INFO_COLUMNS)
    if row is None:
        raise NoSuchFolder(f"folder {ref.name} no longer exists")
    return FolderInfo(*row)


# FolderInfo's fields, in order, as Mailbox columns (plain SQL: every IMAP command's change check reads them)
_INFO_COLUMNS = ("id", "name", "uidvalidity", "uidnext", "highestmodseq", "special_use", "subscribed",
                 "message_count", "unseen_count", "total_size")


def _info(row: Mailbox) -> FolderInfo:
    return FolderInfo(
        id=row.pk,
        name=row.name,
        uidvalidity=row.uidvalidity,
        uidnext=row.uidnext,
        highestmodseq=row.highestmodseq,
        special_use=row.special_use,
        subscribed=row.subscribed,
        messages=row.message_count,
        unseen=row.unseen_count,
        size=row.total_size,
    )


def rename_folder(account_id: int, old: str, new: str) -> FolderRef:
    """RFC 9051 §6.3.6 RENAME: children move with their parent; renaming INBOX moves its mail."""
    old, new = normalize_name(old), normalize_name(new)
    source = _find(account_id, old)
    if source is None:
        raise NoSuchFolder(f"no folder {old}")
    if _find(account_id, new) is not None:
        raise FolderExists(f"folder {new} already exists")
    if new.startswith(old + DELIMITER):
        raise FolderNotAllowed("a folder cannot be moved inside itself")
    if old == INBOX:
        return _rename_inbox(account_id, source, new)
    with transaction.atomic():
        children = Mailbox.objects.filter(account_id=account_id, name__startswith=old + DELIMITER)
        for child in children:
            Mailbox.objects.filter(pk=child.pk).update(name=new + child.name[len(old) :])
        Mailbox.objects.filter(pk=source.pk).update(name=new)
        _create_missing_parents(account_id, new)
    _announce(account_id, source.pk)
    return get_folder(account_id, new)


def _create_missing_parents(account_id: int, name: str) -> None:
    parts = name.split(DELIMITER)
    for depth in range(1, len(parts)):
        parent = DELIMITER.join(parts[:depth])
        if _find(account_id, parent) is None:
            _create(account_id, parent)


def _rename_inbox(account_id: int, inbox: Mailbox, new: str) -> FolderRef:
    """RFC 3501 §6.3.5: renaming INBOX moves all its messages to a new folder and leaves INBOX empty."""
    from mailcore.store.messages import move, uids

    target = create_folder(account_id, new)
    inbox_ref = _ref(inbox)
    move(inbox_ref, uids(inbox_ref), target)
    return target


def delete_folder(account_id: int, name: str) -> None:
    """RFC 9051 §6.3.5 DELETE: the folder and its messages go; subfolders stay."""
    name = normalize_name(name)
    if name == INBOX:
        raise FolderNotAllowed("INBOX cannot be deleted")
    mailbox = _find(account_id, name)
    if mailbox is None:
        raise NoSuchFolder(f"no folder {name}")
    with transaction.atomic():
        freed = Message.objects.filter(mailbox=mailbox).aggregate(total=Sum("size"))["total"] or 0
        Account.objects.filter(pk=account_id).update(used_bytes=F("used_bytes") - freed)
        mailbox.delete()
    _announce(account_id, mailbox.pk)


def set_subscribed(account_id: int, name: str, subscribed: bool) -> None:
    """RFC 9051 §6.3.7/§6.3.8 SUBSCRIBE and UNSUBSCRIBE."""
    updated = Mailbox.objects.filter(account_id=account_id, name=normalize_name(name)).update(subscribed=subscribed)
    if not updated:
        raise NoSuchFolder(f"no folder {name}")


def _announce(account_id: int, mailbox_id: int) -> None:
    event = MailboxEvent(kind=FOLDERS, account_id=account_id, mailbox_id=mailbox_id, modseq=0)
    transaction.on_commit(lambda: hub.publish(event))
