"""\\Recent (RFC 3501 §2.3.2): which session is the first to be told of a message, across processes.

"This session is the first session to have been notified about this message;
if the session is read-write, subsequent sessions will not see \\Recent set for
this message." Each folder row keeps `recent_uid`: every UID up to it has been
announced to some read-write session. A session claims the UIDs it announces
with one locked read-and-raise of that number, so two sessions (in any
processes sharing the database) never both get the same message as \\Recent.
\\Recent is not a stored flag: it is this number compared with a UID.
"""
from __future__ import annotations

from django.db.models import F

from mailcore.models import Mailbox, Message
from mailcore.store import sql
from mailcore.store.types import FolderRef, NoSuchFolder


def claim(ref: FolderRef, up_to_uid: int) -> int:
    """Announce every UID up to `up_to_uid` to the caller; returns the boundary before (theirs: UIDs above it).

    Writes only when there is something to claim.
    """
    boundary = recent_boundary(ref)
    if up_to_uid <= boundary:
        return up_to_uid
    with sql.relaxed_transaction():  # losing a claim in a power failure only shows \\Recent once more
        rows = Mailbox.objects.filter(pk=ref.mailbox_id, account_id=ref.account_id)
        rows.update(recent_uid=F("recent_uid"))  # take the row's write lock before reading it
        boundary = rows.values_list("recent_uid", flat=True).get()
        if up_to_uid > boundary:
            rows.update(recent_uid=up_to_uid)
    return boundary


def recent_boundary(ref: FolderRef) -> int:
    """The highest UID some read-write session was told of (EXAMINE looks without claiming)."""
    boundary = Mailbox.objects.filter(pk=ref.mailbox_id, account_id=ref.account_id).values_list(
        "recent_uid", flat=True).first()
    if boundary is None:
        raise NoSuchFolder(f"folder {ref.name} no longer exists")
    return boundary


def count_recent(ref: FolderRef) -> int:
    """STATUS RECENT (RFC 3501 §6.3.10): messages no session was told of yet."""
    return Message.objects.filter(mailbox_id=ref.mailbox_id, uid__gt=recent_boundary(ref)).count()


def count_deleted(ref: FolderRef) -> int:
    """STATUS DELETED (RFC 9051 §6.3.11): messages with \\Deleted set."""
    recent_boundary(ref)  # the folder must still exist
    return Message.objects.filter(mailbox_id=ref.mailbox_id, deleted=True).count()
