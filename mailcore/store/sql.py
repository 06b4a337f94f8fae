"""The hot paths' statements (delivery, APPEND, and the protocols' reads) in plain SQL, one round trip each.

The ORM spends far more time compiling these small statements than the
database spends running them (a delivery was ~10,000 Python calls, most of
them query building). The SQL is the same on SQLite (3.35+) and PostgreSQL;
values are converted by the model fields themselves (`get_db_prep_save`), so
rows are stored exactly as the ORM would store them.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import BooleanField, CharField, Field, ForeignKey, IntegerField, TextField
from django.db.models.expressions import Col

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


# Fields whose ORM conversion gives back a plain int, bool or str (or None) as it is. (On PostgreSQL
# the ORM wraps big integers in psycopg's Int8, an int that only names the type: a plain int
# inserts the same value.)
_PLAIN_FIELDS = (IntegerField, BooleanField, CharField, TextField, ForeignKey)
_PLAIN_VALUES = (int, bool, str, type(None))


@functools.cache
def _insert_plan(vendor: str) -> tuple[list[tuple[Field[Any, Any], bool]], str]:
    """Each field of `_INSERT_FIELDS` (with whether it is plain) and the INSERT statement, once per vendor."""
    fields = [_concrete(Message._meta.get_field(name)) for name in _INSERT_FIELDS]
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    marks = ", ".join(["%s"] * len(fields))
    plan = [(field, isinstance(field, _PLAIN_FIELDS)) for field in fields]
    return plan, f"INSERT INTO {_table(Message)} ({columns}) VALUES ({marks}) RETURNING id"


def insert_params(values: dict[str, Any]) -> list[Any]:
    """The INSERT's parameters: the ORM's own conversion, skipped where it would return the value as it is."""
    plan, _ = _insert_plan(connection.vendor)
    return [
        value if plain and type(value) in _PLAIN_VALUES else field.get_db_prep_save(value, connection)
        for name, (field, plain) in zip(_INSERT_FIELDS, plan, strict=True)
        for value in (values[name],)
    ]


def insert_message(values: dict[str, Any]) -> int:
    """INSERT one message row (every field of `_INSERT_FIELDS`) and return its id."""
    _, statement = _insert_plan(connection.vendor)
    params = insert_params(values)
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


# Reads -------------------------------------------------------------------------

UID_LIST_LIMIT = 500  # longer UID lists are read as one UID range and filtered here (SQLite's variable limit)


@functools.cache
def _select_plan(vendor: str, model: type[Any], columns: tuple[str, ...], alias: str) -> tuple[list[Col], str]:
    """The column expressions and the SELECT list for `columns` of `model`, built once per vendor."""
    fields = [_concrete(model._meta.get_field(name)) for name in columns]
    expressions = [field.get_col(alias) for field in fields]
    names = ", ".join(f"{alias}.{connection.ops.quote_name(str(field.column))}" for field in fields)
    return expressions, names


def _converted(expressions: list[Col], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with each value converted from the database as the ORM would (JSON, dates, booleans)."""
    converters = [
        (index, [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)])
        for index, col in enumerate(expressions)
    ]
    converters = [(index, found) for index, found in converters if found]
    if not converters or not rows:
        return rows
    columns = list(zip(*rows, strict=True))  # column by column: one comprehension per converter
    for index, functions in converters:
        values, expression = columns[index], expressions[index]
        for convert in functions:
            values = tuple([convert(value, expression, connection) for value in values])
        columns[index] = values
    return list(zip(*columns, strict=True))


def folder_row(account_id: int, mailbox_id: int, columns: tuple[str, ...]) -> tuple[Any, ...] | None:
    """`columns` of the account's folder `mailbox_id`; None when the account has no such folder."""
    expressions, names = _select_plan(connection.vendor, Mailbox, columns, "b")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {_table(Mailbox)} b WHERE b.id = %s AND b.account_id = %s",
                       [mailbox_id, account_id])
        row = cursor.fetchone()
    return None if row is None else _converted(expressions, [row])[0]


def message_rows(
    account_id: int,
    mailbox_id: int,
    columns: tuple[str, ...],
    uids: Sequence[int] | None = None,
    changed_since: int | None = None,
    convert: bool = True,
) -> list[tuple[Any, ...]]:
    """`columns` of the messages of the account's folder `mailbox_id`, by ascending UID.

    `convert=False` leaves values as the database driver returns them (JSON as
    text, booleans as 0/1 on SQLite), for callers that decode them faster themselves.

    Only the UIDs in `uids` when given, only those with MODSEQ above `changed_since`
    when given. The folder must belong to the account, so another account's folder
    id reads nothing. (A scalar subquery rather than a join: with it SQLite keeps
    choosing the (mailbox, modseq) index for CHANGEDSINCE and change reports.)
    """
    expressions, names = _select_plan(connection.vendor, Message, columns, "m")
    where = [f"m.mailbox_id = (SELECT b.id FROM {_table(Mailbox)} b WHERE b.id = %s AND b.account_id = %s)"]
    params: list[Any] = [mailbox_id, account_id]
    wanted: set[int] | None = None
    if uids is not None:
        if not uids:
            return []
        if len(uids) <= UID_LIST_LIMIT:
            where.append(f"m.uid IN ({', '.join(['%s'] * len(uids))})")
            params.extend(uids)
        else:
            wanted = set(uids)
            where.append("m.uid BETWEEN %s AND %s")
            params.extend((min(wanted), max(wanted)))
    if changed_since is not None:
        where.append("m.modseq > %s")
        params.append(changed_since)
    statement = (
        f"SELECT m.uid, {names} FROM {_table(Message)} m WHERE {' AND '.join(where)} ORDER BY m.uid"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        found = cursor.fetchall()
    if wanted is not None:
        found = [row for row in found if row[0] in wanted]
    values = [row[1:] for row in found]
    return _converted(expressions, values) if convert else values


def uid_rows(account_id: int, mailbox_id: int, above: int = 0) -> list[tuple[int]]:
    """(UID,) of the account's folder's messages with UIDs above `above`, ascending (a plain cursor:
    several times faster than the ORM for 10,000 rows, and covered by the (mailbox, uid) index)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.uid FROM {_table(Message)} m WHERE m.mailbox_id = "
            f"(SELECT b.id FROM {_table(Mailbox)} b WHERE b.id = %s AND b.account_id = %s) AND m.uid > %s "
            "ORDER BY m.uid",
            [mailbox_id, account_id, above],
        )
        return cursor.fetchall()


def update_messages(ids: Sequence[int], values: dict[str, Any], batch: int = UID_LIST_LIMIT) -> None:
    """Set the same `values` (field name -> value) on the message rows `ids`: one UPDATE per batch of ids."""
    fields = [_concrete(Message._meta.get_field(name)) for name in values]
    assignments = ", ".join(f"{connection.ops.quote_name(str(field.column))} = %s" for field in fields)
    prepared = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    with connection.cursor() as cursor:
        for start in range(0, len(ids), batch):
            chunk = list(ids[start : start + batch])
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"UPDATE {_table(Message)} SET {assignments} WHERE id IN ({marks})", [*prepared, *chunk])


# Commits -------------------------------------------------------------------------


@contextlib.contextmanager
def relaxed_transaction() -> Iterator[None]:
    """A transaction whose COMMIT does not wait for the disk: for state cheap to lose, never for mail.

    PostgreSQL: `synchronous_commit = off` for this transaction only; a database
    crash can lose the last commits, never corrupt anything. SQLite (WAL):
    `synchronous = NORMAL` around it; the commit survives a crash of the process,
    and only a power failure or OS crash can lose it. Used for flag changes (IMAP
    STORE, as Dovecot does not fsync them either) and the delivery queue's
    lease and result bookkeeping.
    """
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        with connection.cursor() as cursor:  # SQLite refuses to change it inside a transaction
            cursor.execute("PRAGMA synchronous")
            (level,) = cursor.fetchone()
            cursor.execute("PRAGMA synchronous = NORMAL")
        try:
            with transaction.atomic():
                yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA synchronous = {int(level)}")
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")  # this transaction only
        yield
