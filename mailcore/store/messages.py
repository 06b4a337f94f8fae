"""Messages in folders: deliver, append, fetch, flags, copy, move, expunge, quota.

Every write follows one order so that crashes lose nothing and PostgreSQL
never deadlocks: blob first (fsynced), then in one transaction the account row
(quota), then the folder row (UID and MODSEQ allocation), then message rows.
Change events go out only after the transaction commits.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from mailcore import directory
from mailcore.address import AddressError
from mailcore.mime import ParsedMessage, parse_message, to_crlf
from mailcore.models import SYSTEM_FLAG_FIELDS, Account, Expunged, Mailbox, Message
from mailcore.store import blobs, search, sql
from mailcore.store.events import EXPUNGE, FLAGS, NEW, MailboxEvent, hub
from mailcore.store.folders import INBOX
from mailcore.store.types import (
    Appended,
    DeliveryReport,
    FlagChange,
    FlagResult,
    FolderRef,
    MessageInfo,
    NoSuchFolder,
    OverQuota,
    StorageFailure,
)

log = logging.getLogger(__name__)

FLAG_ADD, FLAG_REMOVE, FLAG_REPLACE = "add", "remove", "replace"
_FIELD_BY_LOWER_FLAG = {name.lower(): field for name, field in SYSTEM_FLAG_FIELDS.items()}
BULK_BATCH = 500


# Writing ------------------------------------------------------------------


def store_blob(raw: bytes) -> tuple[bytes, str]:
    """CRLF-normalise and durably store `raw`; return the stored bytes and their digest."""
    data = to_crlf(raw)
    try:
        return data, blobs.put(data)
    except blobs.BlobError as err:
        raise StorageFailure(str(err)) from err


@dataclass(frozen=True)
class StoredBlob:
    """A message stored (its fsyncs perhaps still to do: `unsynced`) and parsed: what `deliver_stored`
    inserts rows for."""

    data: bytes  # the stored bytes (CRLF line ends)
    digest: str
    parsed: ParsedMessage
    document: search.SearchDocument  # made here, once, not per recipient inside the transaction
    unsynced: tuple[str, ...] = ()  # paths deliver_stored has fsynced before its rows commit


def store_parsed(raw: bytes) -> StoredBlob:
    """CRLF-normalise, store and parse `raw`: the part of a delivery that needs no transaction.

    Callers run it before theirs, in parallel (an SMTP session's thread or worker
    process) rather than in the group commit's one thread. The blob's fsyncs wait
    for `deliver_stored`, which has them done with its batch's, before the COMMIT.
    A blob no row comes to use is collected later.
    """
    data = to_crlf(raw)
    try:
        digest, unsynced = blobs.put_unsynced(data)
    except blobs.BlobError as err:
        raise StorageFailure(str(err)) from err
    parsed = parse_message(data)
    return StoredBlob(data, digest, parsed, search.document_for(data, parsed), unsynced)


def deliver(raw: bytes, recipients: Sequence[str], internal_date: dt.datetime | None = None) -> DeliveryReport:
    """Deliver `raw` to each envelope recipient's INBOX (after aliases, +tags and catch-all).

    Returns what happened per recipient. Durable when it returns: the blob is
    fsynced and every row committed. One recipient over quota does not stop the
    others. Raises StorageFailure when the blob cannot be written.
    """
    return deliver_stored(store_parsed(raw), recipients, internal_date)


def deliver_stored(
    blob: StoredBlob, recipients: Sequence[str], internal_date: dt.datetime | None = None
) -> DeliveryReport:
    """`deliver` for a message `store_parsed` has stored already: only the rows, in one transaction."""
    try:
        blobs.sync_later(blob.unsynced)  # in a group commit: with its batch's fsyncs, before the COMMIT
    except OSError as err:
        raise StorageFailure(f"cannot store message blob: {err.strerror or err}") from err
    report = DeliveryReport()
    targets = _route_recipients(recipients, report)
    when = internal_date or timezone.now()
    # No savepoint of its own (one round trip less per message): nothing in it raises but a database
    # error or a missing INBOX, and either fails the caller's whole call; over quota is noted, not raised.
    with transaction.atomic(savepoint=False):
        for account_id in sorted(targets):
            inbox = sql.FolderKey.by_name(account_id, INBOX)
            try:
                mailbox_id, uid = _insert(account_id, inbox, blob, when, flags=())
            except OverQuota:
                report.over_quota.extend(targets[account_id])
                continue
            for rcpt in targets[account_id]:
                report.delivered.setdefault(rcpt, []).append((mailbox_id, uid))
    return report


def _route_recipients(recipients: Sequence[str], report: DeliveryReport) -> dict[int, list[str]]:
    """Map account id to the recipients that reach it; note unknown and remote ones in `report`."""
    targets: dict[int, list[str]] = {}
    for rcpt in recipients:
        try:
            route = directory.resolve(rcpt)
        except AddressError:
            report.unknown.append(rcpt)
            continue
        if route.unknown:
            report.unknown.append(rcpt)
        for account_id in route.accounts:
            targets.setdefault(account_id, []).append(rcpt)
        report.remote.extend(r for r in route.remote if r not in report.remote)
    return targets


def append(
    ref: FolderRef, raw: bytes, flags: Iterable[str] = (), internal_date: dt.datetime | None = None
) -> Appended:
    """RFC 9051 §6.3.12 APPEND: add a message to a folder; returns APPENDUID data (RFC 4315)."""
    data, digest = store_blob(raw)
    parsed = parse_message(data)
    blob = StoredBlob(data, digest, parsed, search.document_for(data, parsed))
    with transaction.atomic():
        mailbox = _mailbox(ref)
        when = internal_date or timezone.now()
        _, uid = _insert(ref.account_id, sql.FolderKey.by_id(mailbox.pk), blob, when, tuple(flags))
    return Appended(uidvalidity=mailbox.uidvalidity, uid=uid)


def _mailbox(ref: FolderRef) -> Mailbox:
    mailbox = Mailbox.objects.filter(pk=ref.mailbox_id, account_id=ref.account_id).first()
    if mailbox is None:
        raise NoSuchFolder(f"folder {ref.name} no longer exists")
    return mailbox


def _insert(
    account_id: int, folder: sql.FolderKey, blob: StoredBlob, when: dt.datetime, flags: tuple[str, ...]
) -> tuple[int, int]:
    """Insert one message row for a stored blob (inside the caller's transaction); return (mailbox id, UID).

    Lock order as everywhere: the account row (quota), then the folder row (UIDs).
    """
    parsed = blob.parsed
    size = len(blob.data)
    _charge_quota(account_id, size)
    thread_id = _thread_of(account_id, parsed)
    system, keywords = _initial_flags(flags)
    allocated = sql.allocate_uids(folder, 1, 1, 0 if system["seen"] else 1, size)
    if allocated is None:
        raise Mailbox.DoesNotExist(f"no folder {folder.params} for account {account_id}")
    mailbox_id, uid, modseq = allocated
    row_id = sql.insert_message({
        "mailbox_id": mailbox_id, "uid": uid, "modseq": modseq, **system, "keywords": keywords,
        "internal_date": when, "size": size, "blob": blob.digest, "envelope": parsed.envelope,
        "bodystructure": parsed.bodystructure, "subject": parsed.subject, "sender": parsed.sender,
        "sent_date": parsed.sent_date, "message_id": parsed.message_id, "thread_id": thread_id,
        "has_attachments": parsed.has_attachments,
    })
    if thread_id is None:
        sql.start_own_thread(row_id)
    search.index_document(row_id, blob.document)
    _notify(NEW, account_id, mailbox_id, modseq, (uid,))
    return mailbox_id, uid


def _initial_flags(flags: tuple[str, ...]) -> tuple[dict[str, bool], list[str]]:
    """The system flag columns and keywords of a new message (\\Recent is never stored)."""
    wanted = {_FIELD_BY_LOWER_FLAG[f.lower()] for f in flags if f.lower() in _FIELD_BY_LOWER_FLAG}
    keywords = list(dict.fromkeys(f for f in flags if not f.startswith("\\")))
    return {column: column in wanted for column in SYSTEM_FLAG_FIELDS.values()}, keywords


def _charge_quota(account_id: int, size: int) -> None:
    """Add `size` to the account's usage, or raise OverQuota; atomic under concurrency."""
    if not sql.charge_quota(account_id, size):
        raise OverQuota("mailbox is over quota")


def _release_quota(account_id: int, size: int) -> None:
    if size:
        Account.objects.filter(pk=account_id).update(used_bytes=F("used_bytes") - size)


@dataclass(frozen=True)
class Counts:
    """A change to a folder's message, unseen and size counters."""

    messages: int = 0
    unseen: int = 0
    size: int = 0


NO_CHANGE = Counts()


def _allocate_uids(mailbox_id: int, count: int, delta: Counts = NO_CHANGE) -> tuple[int, int]:
    """Reserve `count` UIDs and one new MODSEQ, and apply `delta`; returns (first UID, MODSEQ).

    The UPDATE takes the folder row's write lock until commit, so concurrent
    writers get distinct, ascending UIDs (RFC 9051 §2.3.1.1: "strictly ascending")
    and the counters stay exact.
    """
    allocated = sql.allocate_uids(sql.FolderKey.by_id(mailbox_id), count, delta.messages, delta.unseen, delta.size)
    if allocated is None:
        raise Mailbox.DoesNotExist(f"no folder {mailbox_id}")
    return allocated[1], allocated[2]


def _next_modseq(mailbox_id: int, delta: Counts = NO_CHANGE) -> int:
    return _allocate_uids(mailbox_id, 0, delta)[1]


def _thread_of(account_id: int, parsed: ParsedMessage) -> int | None:
    """The thread of the newest message this one replies to or references, if we have it."""
    parents = parsed.in_reply_to + parsed.references
    if not parents:
        return None
    return sql.newest_thread(account_id, parents)


def _notify(kind: str, account_id: int, mailbox_id: int, modseq: int, uids: tuple[int, ...]) -> None:
    event = MailboxEvent(kind=kind, account_id=account_id, mailbox_id=mailbox_id, modseq=modseq, uids=uids)
    transaction.on_commit(lambda: hub.publish(event))


# Flags ----------------------------------------------------------------------


def _apply_flags(row: Message, flags: Iterable[str], mode: str) -> bool:
    """Change `row`'s flags in memory; return whether anything changed. \\Recent is never stored."""
    system = {f: getattr(row, f) for f in SYSTEM_FLAG_FIELDS.values()}
    keywords = list(row.keywords)
    wanted_system = {_FIELD_BY_LOWER_FLAG[f.lower()] for f in flags if f.lower() in _FIELD_BY_LOWER_FLAG}
    wanted_keywords = [f for f in flags if not f.startswith("\\")]
    if mode == FLAG_REPLACE:
        new_system = {f: f in wanted_system for f in system}
        new_keywords = list(dict.fromkeys(wanted_keywords))
    elif mode == FLAG_ADD:
        new_system = {f: on or f in wanted_system for f, on in system.items()}
        new_keywords = list(dict.fromkeys(keywords + wanted_keywords))
    else:
        new_system = {f: on and f not in wanted_system for f, on in system.items()}
        new_keywords = [k for k in keywords if k not in wanted_keywords]
    if new_system == system and new_keywords == keywords:
        return False
    for name, value in new_system.items():
        setattr(row, name, value)
    row.keywords = new_keywords
    return True


def store_flags(
    ref: FolderRef, uids: Iterable[int], flags: Iterable[str], mode: str, unchanged_since: int | None = None
) -> FlagResult:
    """RFC 9051 §6.4.6 STORE, with RFC 7162 §3.1.3 UNCHANGEDSINCE. One MODSEQ for the whole change."""
    flag_list = list(flags)
    result = FlagResult()
    with transaction.atomic():
        rows = [Message(**dict(zip(_FLAG_COLUMNS, row, strict=True)))
                for row in folder_messages(ref, _FLAG_COLUMNS, uids)]
        if unchanged_since is not None:
            result.modified = [r.uid for r in rows if r.modseq > unchanged_since]
            rows = [r for r in rows if r.modseq <= unchanged_since]
        unseen_before = sum(not row.seen for row in rows)
        changed = [row for row in rows if _apply_flags(row, flag_list, mode)]
        if not changed:
            return result
        modseq = _next_modseq(ref.mailbox_id, Counts(unseen=sum(not row.seen for row in rows) - unseen_before))
        for row in changed:
            row.modseq = modseq
        _save_flags(changed, modseq)
        result.changed = [FlagChange(row.uid, tuple(row.flags), modseq) for row in changed]
        _notify(FLAGS, ref.account_id, ref.mailbox_id, modseq, tuple(r.uid for r in changed))
    return result


_FLAG_COLUMNS = ("id", "uid", "modseq", "keywords", *SYSTEM_FLAG_FIELDS.values())


def _save_flags(rows: list[Message], modseq: int) -> None:
    """Write the rows' new flags: one UPDATE per distinct set of flags (a STORE usually makes one).

    Much cheaper than bulk_update's per-row CASE expressions, and the same rows end the same.
    """
    groups: dict[tuple[tuple[bool, ...], tuple[str, ...]], list[int]] = {}
    columns = list(SYSTEM_FLAG_FIELDS.values())
    for row in rows:
        key = (tuple(bool(getattr(row, column)) for column in columns), tuple(row.keywords))
        groups.setdefault(key, []).append(row.pk)
    for (system, keywords), ids in groups.items():
        values = {**dict(zip(columns, system, strict=True)), "keywords": list(keywords), "modseq": modseq}
        sql.update_messages(ids, values)


# Copy, move, expunge ------------------------------------------------------------


def copy(source: FolderRef, uids: Iterable[int], target: FolderRef) -> list[tuple[int, int]]:
    """RFC 9051 §6.4.7 COPY: returns (source UID, new UID) pairs for COPYUID (RFC 4315 §3)."""
    with transaction.atomic():
        return _copy_rows(source, uids, target)


def _copy_rows(source: FolderRef, uids: Iterable[int], target: FolderRef) -> list[tuple[int, int]]:
    _mailbox(source)
    target_box = _mailbox(target)
    rows = list(Message.objects.filter(mailbox_id=source.mailbox_id, uid__in=list(uids)).order_by("uid"))
    if not rows:
        return []
    _charge_quota(target.account_id, sum(r.size for r in rows))
    added = Counts(len(rows), sum(not r.seen for r in rows), sum(r.size for r in rows))
    first_uid, modseq = _allocate_uids(target_box.pk, len(rows), added)
    old_ids = [row.pk for row in rows]
    pairs = []
    for offset, row in enumerate(rows):
        pairs.append((row.uid, first_uid + offset))
        row.pk = None
        row.mailbox = target_box
        row.uid = first_uid + offset
        row.modseq = modseq
    Message.objects.bulk_create(rows, batch_size=BULK_BATCH)
    search.index_copies(zip(old_ids, [row.pk for row in rows], strict=True))
    _notify(NEW, target.account_id, target_box.pk, modseq, tuple(new for _, new in pairs))
    return pairs


def move(source: FolderRef, uids: Iterable[int], target: FolderRef) -> list[tuple[int, int]]:
    """RFC 6851 §3.1 MOVE: copy and expunge as one atomic step."""
    uid_list = list(uids)
    with transaction.atomic():
        pairs = _copy_rows(source, uid_list, target)
        _expunge_rows(source, [old for old, _ in pairs])
    return pairs


def expunge(ref: FolderRef, uids: Iterable[int] | None = None) -> list[int]:
    """RFC 9051 §6.4.3 EXPUNGE (and UID EXPUNGE, RFC 4315 §2.1): remove \\Deleted messages."""
    with transaction.atomic():
        query = Message.objects.filter(mailbox_id=_mailbox(ref).pk, deleted=True)
        if uids is not None:
            query = query.filter(uid__in=list(uids))
        return _expunge_rows(ref, list(query.order_by("uid").values_list("uid", flat=True)))


def _expunge_rows(ref: FolderRef, uids: list[int]) -> list[int]:
    if not uids:
        return []
    rows = Message.objects.filter(mailbox_id=ref.mailbox_id, uid__in=uids)
    totals = rows.aggregate(n=Count("id"), unseen=Count("id", filter=Q(seen=False)), size=Sum("size"))
    freed = totals["size"] or 0
    _release_quota(ref.account_id, freed)
    modseq = _next_modseq(ref.mailbox_id, Counts(-totals["n"], -totals["unseen"], -freed))
    rows.delete()
    Expunged.objects.bulk_create(
        [Expunged(mailbox_id=ref.mailbox_id, uid=uid, modseq=modseq) for uid in uids], batch_size=BULK_BATCH
    )
    _notify(EXPUNGE, ref.account_id, ref.mailbox_id, modseq, tuple(uids))
    return uids


# Reading ------------------------------------------------------------------------


def uids(ref: FolderRef, above: int = 0) -> list[int]:
    """Every UID in the folder (or only those above `above`), ascending: index i is sequence number i + 1."""
    found = [uid for (uid,) in sql.uid_rows(ref.account_id, ref.mailbox_id, above)]
    if not found:
        _mailbox(ref)  # NoSuchFolder when it is gone
    return found


def fetch(
    ref: FolderRef,
    uids: Iterable[int] | None = None,
    changed_since: int | None = None,
    with_bodystructure: bool = True,
) -> list[MessageInfo]:
    """Messages by UID (all when `uids` is None), ascending; only those changed after a MODSEQ if given.

    `with_bodystructure=False` leaves `bodystructure` empty: listing 10,000 messages
    (IMAP FETCH FLAGS ENVELOPE, change reports) then skips decoding the largest column.
    """
    columns = (*_INFO_COLUMNS, *SYSTEM_FLAG_FIELDS.values()) + (("bodystructure",) if with_bodystructure else ())
    found = folder_messages(ref, columns, uids, changed_since)
    return [_info_from_values(dict(zip(columns, row, strict=True))) for row in found]


def folder_messages(
    ref: FolderRef,
    columns: tuple[str, ...],
    uids: Iterable[int] | None = None,
    changed_since: int | None = None,
    convert: bool = True,
) -> list[tuple[Any, ...]]:
    """`columns` of the folder's messages by ascending UID (plain SQL: the protocols' hot read path).

    NoSuchFolder when the folder is gone (checked only when nothing was found).
    `convert=False`: values as the driver returns them (see `sql.message_rows`).
    """
    wanted = None if uids is None else list(uids)
    found = sql.message_rows(ref.account_id, ref.mailbox_id, columns, wanted, changed_since, convert)
    if not found:
        _mailbox(ref)
    return found


_INFO_COLUMNS = (
    "uid", "modseq", "keywords", "internal_date", "size", "blob", "envelope", "subject", "sender",
    "sent_date", "message_id", "thread_id", "has_attachments",
)


def _info_from_values(row: dict[str, object]) -> MessageInfo:
    """A MessageInfo from a `.values()` row (no model instance: several times faster for long lists)."""
    system = [name for name, column in SYSTEM_FLAG_FIELDS.items() if row.pop(column)]
    keywords = row.pop("keywords") or []
    assert isinstance(keywords, list)
    row.setdefault("bodystructure", {})
    return MessageInfo(flags=(*system, *keywords), **row)  # type: ignore[arg-type]  # columns match the fields


def fetch_by_sequence(ref: FolderRef, first: int, last: int) -> list[MessageInfo]:
    """Messages with sequence numbers first..last (1-based, inclusive)."""
    if first < 1 or last < first:
        return []
    query = Message.objects.filter(mailbox_id=_mailbox(ref).pk).order_by("uid")
    return [_message_info(row) for row in query[first - 1 : last]]


def expunged_since(ref: FolderRef, modseq: int) -> list[int]:
    """UIDs expunged after `modseq` (RFC 7162 §3.2.5.2 VANISHED (EARLIER))."""
    return list(
        Expunged.objects.filter(mailbox_id=_mailbox(ref).pk, modseq__gt=modseq)
        .order_by("uid")
        .values_list("uid", flat=True)
    )


def read_message(ref: FolderRef, uid: int) -> bytes:
    """The stored raw bytes of one message of this folder."""
    digest = Message.objects.filter(mailbox_id=_mailbox(ref).pk, uid=uid).values_list("blob", flat=True).first()
    if digest is None:
        raise NoSuchFolder(f"no message with UID {uid} in {ref.name}")
    return read_blob(digest)


def read_blob(digest: str, start: int = 0, end: int | None = None) -> bytes:
    """Bytes of a stored message (callers get digests only from their own MessageInfo)."""
    try:
        return blobs.get(digest) if start == 0 and end is None else blobs.get_range(digest, start, end)
    except blobs.BlobError as err:
        raise StorageFailure(str(err)) from err


def read_blobs(digests: Sequence[str], max_bytes: int) -> dict[str, bytes]:
    """The bytes of the first blob, and of the following ones while they fit in `max_bytes` together.

    Read-ahead for clients that fetch messages one after another (POP3 RETR):
    one worker-thread call serves many commands. Only the first blob's failure
    is raised; a later unreadable blob just ends the read-ahead.
    """
    found: dict[str, bytes] = {}
    total = 0
    for digest in digests:
        if digest in found:
            continue
        try:
            data = read_blob(digest)
        except StorageFailure:
            if not found:
                raise
            break
        if found and total + len(data) > max_bytes:
            break
        found[digest] = data
        total += len(data)
    return found


def contains(ref: FolderRef, message_id: str, digest: str) -> bool:
    """Whether the folder already holds this exact message (same Message-ID and content digest)."""
    return Message.objects.filter(mailbox_id=_mailbox(ref).pk, message_id=message_id, blob=digest).exists()


def _message_info(row: Message) -> MessageInfo:
    return MessageInfo(
        uid=row.uid,
        modseq=row.modseq,
        flags=tuple(row.flags),
        internal_date=row.internal_date,
        size=row.size,
        blob=row.blob,
        envelope=row.envelope,
        bodystructure=row.bodystructure,
        subject=row.subject,
        sender=row.sender,
        sent_date=row.sent_date,
        message_id=row.message_id,
        thread_id=row.thread_id,
        has_attachments=row.has_attachments,
    )


# Quota and housekeeping ---------------------------------------------------------


def quota(account_id: int) -> tuple[int, int]:
    """(bytes used, limit in bytes; 0 for none) (RFC 9208 §5.1 STORAGE)."""
    return sql.quota(account_id)


def collect_orphan_blobs(grace: float = blobs.ORPHAN_GRACE_SECONDS) -> list[str]:
    """Delete stored blobs no message row points to (after a failed write or expunges)."""
    from mailcore.delivery.queue import referenced_blobs

    referenced = set(Message.objects.values_list("blob", flat=True).distinct()) | referenced_blobs()
    return blobs.delete_unreferenced(referenced, grace)
