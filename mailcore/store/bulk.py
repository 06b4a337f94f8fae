"""Loading many messages into one folder at once (imports, benchmarks): one transaction per batch.

Same write order as `append` (blobs first, then quota, UIDs, rows, index), but
UIDs are allocated per batch and rows inserted with bulk_create. Identical raw
messages are parsed and stored once.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from mailcore.mime import ParsedMessage, parse_message
from mailcore.models import Message
from mailcore.store import search
from mailcore.store.events import NEW
from mailcore.store.messages import BULK_BATCH, Counts, _allocate_uids, _charge_quota, _mailbox, _notify, store_blob
from mailcore.store.types import FolderRef


def bulk_append(ref: FolderRef, raws: Sequence[bytes], when: dt.datetime | None = None) -> list[int]:
    """Append every message of `raws` to the folder, unflagged; returns their UIDs in order."""
    stored: dict[bytes, tuple[bytes, str, ParsedMessage, search.SearchDocument]] = {}
    for raw in raws:
        if raw not in stored:
            data, digest = store_blob(raw)
            parsed = parse_message(data)
            stored[raw] = (data, digest, parsed, search.document_for(data, parsed))
    uids: list[int] = []
    for start in range(0, len(raws), BULK_BATCH):
        uids.extend(_append_batch(ref, raws[start : start + BULK_BATCH], stored, when or timezone.now()))
    return uids


def _append_batch(ref: FolderRef, raws: Sequence[bytes], stored: dict, when: dt.datetime) -> list[int]:
    with transaction.atomic():
        mailbox = _mailbox(ref)
        _charge_quota(ref.account_id, sum(len(stored[raw][0]) for raw in raws))
        size = sum(len(stored[raw][0]) for raw in raws)
        first_uid, modseq = _allocate_uids(mailbox.pk, len(raws), Counts(len(raws), len(raws), size))
        rows = []
        for offset, raw in enumerate(raws):
            data, digest, parsed, _doc = stored[raw]
            rows.append(Message(
                mailbox=mailbox, uid=first_uid + offset, modseq=modseq, internal_date=when, size=len(data),
                blob=digest, envelope=parsed.envelope, bodystructure=parsed.bodystructure, subject=parsed.subject,
                sender=parsed.sender, sent_date=parsed.sent_date, message_id=parsed.message_id,
                has_attachments=parsed.has_attachments,
            ))
        Message.objects.bulk_create(rows, batch_size=BULK_BATCH)
        backend = search.backend()
        for row, raw in zip(rows, raws, strict=True):
            backend.add(row.pk, stored[raw][3])
        uids = [row.uid for row in rows]
        _notify(NEW, ref.account_id, mailbox.pk, modseq, tuple(uids))
    return uids
