"""Exclusive holds on a folder with an expiry: POP3's maildrop lock (RFC 1939 §4).

A database row per held folder, so the hold is seen by every process sharing
the database (SQLite or PostgreSQL). The holder renews it while alive and
releases it when done; a crashed holder's row simply expires.
"""
from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction
from django.utils import timezone

from mailcore.models import MailboxLock
from mailcore.store.types import FolderRef


def acquire_lock(ref: FolderRef, owner: str, ttl: float) -> bool:
    """Hold `ref` for `owner` for `ttl` seconds; False when someone else holds it unexpired."""
    now = timezone.now()
    expires = now + dt.timedelta(seconds=ttl)
    try:
        with transaction.atomic():
            MailboxLock.objects.filter(mailbox_id=ref.mailbox_id, expires_at__lte=now).delete()
            MailboxLock.objects.create(mailbox_id=ref.mailbox_id, owner=owner, expires_at=expires)
    except IntegrityError:
        return False
    return True


def renew_lock(ref: FolderRef, owner: str, ttl: float) -> bool:
    """Push the expiry of `owner`'s hold on `ref` out by `ttl` seconds; False if it is no longer held."""
    expires = timezone.now() + dt.timedelta(seconds=ttl)
    return MailboxLock.objects.filter(mailbox_id=ref.mailbox_id, owner=owner).update(expires_at=expires) == 1


def release_lock(ref: FolderRef, owner: str) -> None:
    """Give up `owner`'s hold on `ref` (nothing happens when it is not held by `owner`)."""
    MailboxLock.objects.filter(mailbox_id=ref.mailbox_id, owner=owner).delete()
