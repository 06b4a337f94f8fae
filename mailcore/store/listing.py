"""Message lists for people: newest first, by keyset (never OFFSET), with snippets; and search.

`page` walks one folder by UID; `search_messages` walks every folder of an account (or
one) by row id. Both return at most `limit` entries and the caller asks for
the next page with the last entry's key, so a deep page costs what page 1 costs.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Max, Q, QuerySet
from django.db.models.expressions import RawSQL

from mailcore.models import Mailbox, Message
from mailcore.store import search as fulltext
from mailcore.store.messages import _mailbox, _message_info
from mailcore.store.types import FolderRef, MessageInfo

MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class ListEntry:
    """One line of a message list; `key` is what the next page starts below."""

    folder_id: int
    folder_name: str
    info: MessageInfo
    snippet: str
    key: int


def page(ref: FolderRef, before_uid: int | None = None, limit: int = 50) -> list[ListEntry]:
    """Messages of one folder with UID below `before_uid` (all when None), highest UID first."""
    mailbox = _mailbox(ref)
    rows = Message.objects.filter(mailbox_id=mailbox.pk)
    if before_uid is not None:
        rows = rows.filter(uid__lt=before_uid)
    chosen = list(rows.order_by("-uid")[: _bounded(limit)])
    snippets = fulltext.backend().snippets([row.pk for row in chosen])
    return [ListEntry(mailbox.pk, mailbox.name, _message_info(r), snippets.get(r.pk, ""), r.uid) for r in chosen]


def search_messages(
    account_id: int,
    query: fulltext.SearchQuery,
    folder: FolderRef | None = None,
    before_key: int | None = None,
    limit: int = 50,
) -> list[ListEntry]:
    """Messages of the account (or of `folder`) matching `query`, newest row first.

    Gmail's convention for dates: `after` is inclusive, `before` exclusive (UTC days).
    """
    rows = Message.objects.filter(mailbox__account_id=account_id)
    if folder is not None:
        rows = rows.filter(mailbox_id=_mailbox(folder).pk)
    rows = _filtered(rows, query)
    if before_key is not None:
        rows = rows.filter(pk__lt=before_key)
    chosen = list(rows.order_by("-pk")[: _bounded(limit)])
    names = dict(Mailbox.objects.filter(account_id=account_id).values_list("pk", "name"))
    snippets = fulltext.backend().snippets([row.pk for row in chosen])
    return [
        ListEntry(r.mailbox_id, names.get(r.mailbox_id, ""), _message_info(r), snippets.get(r.pk, ""), r.pk)
        for r in chosen
    ]


def _filtered(rows: QuerySet[Message], query: fulltext.SearchQuery) -> QuerySet[Message]:
    words = query.words
    if words:
        sql, params = fulltext.backend().matching_sql(words)
        rows = rows.filter(pk__in=RawSQL(sql, params))
    conditions = Q()
    if query.has_attachment:
        conditions &= Q(has_attachments=True)
    if query.unread:
        conditions &= Q(seen=False)
    if query.flagged:
        conditions &= Q(flagged=True)
    if query.before is not None:
        conditions &= Q(internal_date__lt=_start_of(query.before))
    if query.after is not None:
        conditions &= Q(internal_date__gte=_start_of(query.after))
    return rows.filter(conditions)


def _start_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def _bounded(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE_SIZE))


# Conversations (the webmail's conversation view) ---------------------------------


def newest_of_threads(ref: FolderRef, thread_ids: list[int]) -> dict[int, int]:
    """For each thread, the highest UID it has in this folder (a thread is listed once, at its newest)."""
    if not thread_ids:
        return {}
    rows = (Message.objects.filter(mailbox_id=_mailbox(ref).pk, thread_id__in=thread_ids)
            .values("thread_id").annotate(newest=Max("uid")).values_list("thread_id", "newest"))
    return {int(thread_id): int(newest) for thread_id, newest in rows if thread_id is not None}


def thread_sizes(account_id: int, thread_ids: list[int]) -> dict[int, int]:
    """How many messages each thread has in all the account's folders (Sent included)."""
    if not thread_ids:
        return {}
    rows = (Message.objects.filter(mailbox__account_id=account_id, thread_id__in=thread_ids)
            .values("thread_id").annotate(size=Count("pk")).values_list("thread_id", "size"))
    return {int(thread_id): int(size) for thread_id, size in rows if thread_id is not None}


def thread(account_id: int, thread_id: int, limit: int = MAX_PAGE_SIZE) -> list[ListEntry]:
    """The messages of one thread in every folder of the account, oldest first."""
    rows = list(Message.objects.filter(mailbox__account_id=account_id, thread_id=thread_id)
                .order_by("internal_date", "pk")[: _bounded(limit)])
    names = dict(Mailbox.objects.filter(account_id=account_id).values_list("pk", "name"))
    snippets = fulltext.backend().snippets([row.pk for row in rows])
    return [ListEntry(r.mailbox_id, names.get(r.mailbox_id, ""), _message_info(r), snippets.get(r.pk, ""), r.pk)
            for r in rows]
