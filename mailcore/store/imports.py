"""Where an IMAP import stopped, per source folder (for `importimap` to resume)."""
from __future__ import annotations

from dataclasses import dataclass

from mailcore.models import ImapImport


@dataclass(frozen=True)
class SourceFolder:
    """One folder of a remote account, as the import names it."""

    account_id: int
    host: str
    username: str
    folder: str


def resume_after(source: SourceFolder, uidvalidity: int) -> int:
    """The last source UID imported from this folder, or 0 when never read or its UIDVALIDITY changed.

    RFC 3501 §2.3.1.1: UIDs from before a UIDVALIDITY change name no message now.
    """
    row = _rows(source).values_list("uidvalidity", "last_uid").first()
    if row is None or row[0] != uidvalidity:
        return 0
    return row[1]


def remember(source: SourceFolder, uidvalidity: int, last_uid: int) -> None:
    """Record that every message up to `last_uid` (under `uidvalidity`) is imported."""
    ImapImport.objects.update_or_create(
        account_id=source.account_id, host=source.host, username=source.username, folder=source.folder,
        defaults={"uidvalidity": uidvalidity, "last_uid": last_uid},
    )


def _rows(source: SourceFolder):  # type: ignore[no-untyped-def]
    return ImapImport.objects.filter(
        account_id=source.account_id, host=source.host, username=source.username, folder=source.folder
    )
