"""Light reads for protocol hot paths: UIDs with flags, and SQL filters on message columns.

`fetch` builds a full MessageInfo per message (JSON envelope and structure
decoded); an IMAP client listing 10,000 flags or searching by flag, date or
size needs none of that. These functions read only the columns asked for and
leave every filter that maps to a column to the database. They change nothing.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Q

from mailcore.mime.headers import parse_fields
from mailcore.models import SYSTEM_FLAG_FIELDS, Message
from mailcore.store.messages import _mailbox, fetch, folder_messages, read_blob
from mailcore.store.types import FolderRef, MessageInfo

_FLAG_COLUMNS = list(SYSTEM_FLAG_FIELDS.values())
_FIELD_BY_LOWER_FLAG = {name.lower(): column for name, column in SYSTEM_FLAG_FIELDS.items()}
SUBJECT_COLUMN_LIMIT = 998  # the cached decoded Subject is cut here (Message.subject)


@dataclass(frozen=True)
class FlagsRow:
    uid: int
    modseq: int
    flags: tuple[str, ...]


@dataclass
class ColumnFilter:
    """Conditions ANDed together, each on one column of the message row.

    Dates are whole UTC days: `*_since` includes the day, `*_before` excludes it
    (RFC 9051 §6.4.4 compares dates without the time of day).
    """

    flags_set: list[str] = field(default_factory=list)  # system flags (\\Seen ...) that must be set
    flags_clear: list[str] = field(default_factory=list)
    larger_than: list[int] = field(default_factory=list)
    smaller_than: list[int] = field(default_factory=list)
    internal_since: list[dt.date] = field(default_factory=list)
    internal_before: list[dt.date] = field(default_factory=list)
    sent_since: list[dt.date] = field(default_factory=list)
    sent_before: list[dt.date] = field(default_factory=list)
    modseq_at_least: list[int] = field(default_factory=list)

    @staticmethod
    def is_system_flag(flag: str) -> bool:
        return flag.lower() in _FIELD_BY_LOWER_FLAG

    def is_empty(self) -> bool:
        return not any(getattr(self, name) for name in self.__dataclass_fields__)

    def q(self) -> Q:
        condition = Q()
        for flag in self.flags_set:
            condition &= Q(**{_FIELD_BY_LOWER_FLAG[flag.lower()]: True})
        for flag in self.flags_clear:
            condition &= Q(**{_FIELD_BY_LOWER_FLAG[flag.lower()]: False})
        for size in self.larger_than:
            condition &= Q(size__gt=size)
        for size in self.smaller_than:
            condition &= Q(size__lt=size)
        for column, since, before in (("internal_date", self.internal_since, self.internal_before),
                                      ("sent_date", self.sent_since, self.sent_before)):
            for day in since:
                condition &= Q(**{f"{column}__gte": _start_of(day)})
            for day in before:
                condition &= Q(**{f"{column}__lt": _start_of(day)})
        for modseq in self.modseq_at_least:
            condition &= Q(modseq__gte=modseq)
        return condition


def _start_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def flags(ref: FolderRef, uids: Iterable[int] | None = None, changed_since: int | None = None) -> list[FlagsRow]:
    """UID, MODSEQ and flags of messages (all when `uids` is None), ascending; only those changed after a MODSEQ."""
    names = list(SYSTEM_FLAG_FIELDS)
    # Undecoded values (the hot path of every change report and FETCH FLAGS): booleans by truth,
    # and each distinct keywords JSON text decoded once (nearly every row holds "[]").
    found = folder_messages(ref, _FLAGS_ROW_COLUMNS, uids, changed_since, convert=False)
    keywords_of: dict[object, tuple[str, ...]] = {}
    result = []
    for uid, modseq, raw_keywords, *system in found:
        key = raw_keywords if isinstance(raw_keywords, (str, bytes, type(None))) else repr(raw_keywords)
        keywords = keywords_of.get(key)
        if keywords is None:
            keywords = keywords_of[key] = _keywords(raw_keywords)
        result.append(FlagsRow(int(uid), int(modseq),
                               (*(n for n, on in zip(names, system, strict=True) if on), *keywords)))
    return result


def _keywords(raw: object) -> tuple[str, ...]:
    """A keywords column value as stored (JSON text, or already decoded by the driver) as a tuple."""
    value = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return tuple(str(keyword) for keyword in value or ()) if isinstance(value, (list, tuple, type(None))) else ()


_FLAGS_ROW_COLUMNS = ("uid", "modseq", "keywords", *_FLAG_COLUMNS)


def matching_uids(ref: FolderRef, where: ColumnFilter) -> list[int]:
    """UIDs (ascending) of the messages whose columns meet every condition of `where`."""
    if where.is_empty():
        return [uid for (uid,) in folder_messages(ref, ("uid",))]
    query = Message.objects.filter(where.q(), mailbox_id=_mailbox(ref).pk)
    return list(query.order_by("uid").values_list("uid", flat=True))


def subjects(ref: FolderRef) -> list[tuple[int, str, bool]]:
    """(UID, decoded Subject, whether it was cut at SUBJECT_COLUMN_LIMIT) of every message, ascending."""
    return [(uid, subject, len(subject) >= SUBJECT_COLUMN_LIMIT)
            for uid, subject in folder_messages(ref, ("uid", "subject"))]


def fetch_with_bytes(
    ref: FolderRef, uids: Iterable[int], changed_since: int | None = None
) -> list[tuple[MessageInfo, bytes]]:
    """`fetch` (with structure) and each message's stored bytes, in one call (for a few messages at a time)."""
    return [(info, read_blob(info.blob)) for info in fetch(ref, uids, changed_since)]


def header_fields(ref: FolderRef, uids: Iterable[int], names: Iterable[str]) -> dict[int, list[tuple[str, str]]]:
    """UID -> the top-level header fields called `names` (lowercase), reading only each header from storage.

    For fields the row does not cache, such as References (RFC 5256 §4 THREAD).
    """
    wanted = {name.lower() for name in names}
    result = {}
    for info in fetch(ref, uids):
        header = read_blob(info.blob, 0, info.bodystructure.get("header_end") or None)
        result[info.uid] = [(name, value) for name, value in parse_fields(header) if name in wanted]
    return result
