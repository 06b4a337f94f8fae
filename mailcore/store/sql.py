"""The hot write path's statements (delivery, APPEND) in plain SQL, one round trip each.

The ORM spends far more time compiling these small statements than the
database spends running them (a delivery was ~10,000 Python calls, most of
them query building). The SQL is the same on SQLite (3.35+) and PostgreSQL;
values are converted by the model fields themselves (`get_db_prep_save`), so
rows are stored exactly as the ORM would store them.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Field

from mailcore.models import Account, Mailbox, Message


def _table(model: type[Any]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@dataclass(frozen=True)
class FolderKey:
    """Which folder row a statement addresses: by id, or by account and name (INBOX at delivery)."""

    where: str
    params: tuple[Any, ...]

    @classmethod
    def by_id(cls, mailbox_id: int) -> FolderKey:
        return cls("id = %s", (mailbox_id,))

    @classmethod
    def by_name(cls, account_id: int, name: str) -> FolderKey:
        return cls("account_id = %s AND name = %s", (account_id, name))


def charge_quota(account_id: int, size: int) -> bool:
    """Add `size` to the account's usage if it fits; False when over quota. One UPDATE, so atomic."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_table(Account)} SET used_bytes = used_bytes + %s "
            "WHERE id = %s AND (quota_bytes = 0 OR used_bytes <= quota_bytes - %s)",
            [size, account_id, size],
        )
        return bool(cursor.rowcount)


def allocate_uids(
    folder: FolderKey, count: int, messages: int, unseen: int, size: int
) -> tuple[int, int, int] | None:
    """Reserve `count` UIDs and one MODSEQ and apply the counter deltas: (mailbox id, first UID, MODSEQ).

    UPDATE ... RETURNING: the statement that takes the folder row's write lock
    also reads the values it wrote, so concurrent writers get distinct,
    ascending UIDs (RFC 9051 §2.3.1.1) in one round trip. None when no such folder.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_table(Mailbox)} SET uidnext = uidnext + %s, highestmodseq = highestmodseq + 1, "
            "message_count = message_count + %s, unseen_count = unseen_count + %s, total_size = total_size + %s "
            f"WHERE {folder.where} RETURNING id, uidnext, highestmodseq",
            [count, messages, unseen, size, *folder.params],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    mailbox_id, uidnext, modseq = row
    return mailbox_id, uidnext - count, modseq


_INSERT_FIELDS = (
    "mailbox_id", "uid", "modseq", "seen", "answered", "flagged", "deleted", "draft", "keywords",
    "internal_date", "size", "blob", "envelope", "bodystructure", "subject", "sender", "sent_date",
    "message_id", "thread_id", "has_attachments",
)


def _concrete(field: object) -> Field[Any, Any]:
    assert isinstance(field, Field)
    return field


@functools.cache
def _insert_plan(vendor: str) -> tuple[list[Field[Any, Any]], str]:
    """The fields of `_INSERT_FIELDS` and the INSERT statement for them, built once per database vendor."""
    fields = [_concrete(Message._meta.get_field(name)) for name in _INSERT_FIELDS]
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    marks = ", ".join(["%s"] * len(fields))
    return fields, f"INSERT INTO {_table(Message)} ({columns}) VALUES ({marks}) RETURNING id"


def insert_message(values: dict[str, Any]) -> int:
    """INSERT one message row (every field of `_INSERT_FIELDS`) and return its id."""
    fields, statement = _insert_plan(connection.vendor)
    pairs = zip(_INSERT_FIELDS, fields, strict=True)
    params = [field.get_db_prep_save(values[name], connection) for name, field in pairs]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def start_own_thread(message_id: int) -> None:
    """A message that replies to nothing we hold starts its own thread: thread_id = its id."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_table(Message)} SET thread_id = id WHERE id = %s", [message_id])


def newest_thread(account_id: int, message_ids: Sequence[str]) -> int | None:
    """The thread of the newest message of the account whose Message-ID is one of `message_ids`."""
    marks = ", ".join(["%s"] * len(message_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.thread_id FROM {_table(Message)} m INNER JOIN {_table(Mailbox)} b ON b.id = m.mailbox_id "
            f"WHERE b.account_id = %s AND m.message_id IN ({marks}) AND m.thread_id IS NOT NULL "
            "ORDER BY m.id DESC LIMIT 1",
            [account_id, *message_ids],
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def quota(account_id: int) -> tuple[int, int]:
    """(used_bytes, quota_bytes) of an account; Account.DoesNotExist when there is none."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT used_bytes, quota_bytes FROM {_table(Account)} WHERE id = %s", [account_id])
        row = cursor.fetchone()
    if row is None:
        raise Account.DoesNotExist(f"no account {account_id}")
    return int(row[0]), int(row[1])
