"""Full-text search over messages: one interface, SQLite FTS5 and PostgreSQL full-text backends.

A message is indexed when its row is inserted (delivery, APPEND) and when it
is copied; its document goes when the row goes (an SQLite trigger, a
PostgreSQL ON DELETE CASCADE), so expunge and folder deletion need no code
here. The document has four weighted fields (subject, sender, recipients,
body) and a stored snippet for message lists. The tables are made by
migration 0003_webmail_search.
"""
from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from mailcore.mime import ParsedMessage, extract_text, snippet

TABLE = "mailcore_search"
FIELDS = ("subject", "sender", "recipients", "body")
# A query with more terms than this is cut: each term is one index lookup.
MAX_QUERY_TERMS = 16
_WORD = re.compile(r"\w+", re.UNICODE)
_NON_WORD = re.compile(r"\W+", re.UNICODE)


@dataclass
class SearchQuery:
    """What to find: words per field (field "" is any field) and filters on the message row."""

    terms: list[tuple[str, str]] = field(default_factory=list)  # (field or "", words)
    has_attachment: bool = False
    unread: bool = False
    flagged: bool = False
    before: dt.date | None = None
    after: dt.date | None = None

    @property
    def words(self) -> list[tuple[str, str]]:
        """(field, word) pairs in the order given, at most MAX_QUERY_TERMS."""
        pairs = [(name, word.lower()) for name, text in self.terms for word in _WORD.findall(text)]
        return pairs[:MAX_QUERY_TERMS]


@dataclass(frozen=True)
class SearchDocument:
    subject: str
    sender: str
    recipients: str
    body: str
    snippet: str


def document_for(raw: bytes, parsed: ParsedMessage) -> SearchDocument:
    """The searchable text of one message (its body text comes from mailcore.mime)."""
    body = extract_text(raw, parsed.bodystructure)
    envelope = parsed.envelope
    recipients = [*envelope.get("to", []), *envelope.get("cc", [])]
    return SearchDocument(
        subject=parsed.subject,
        sender=_addresses_text(envelope.get("from", [])),
        recipients=_addresses_text(recipients),
        body=body,
        snippet=snippet(body),
    )


def _addresses_text(addresses: list[list[str | None]]) -> str:
    words: list[str] = []
    for name, _adl, local, host in addresses:
        words.extend(part for part in (name, local, host, f"{local}@{host}" if local and host else None) if part)
    return " ".join(words)


class SearchBackend(ABC):
    """The one interface; `backend()` picks the implementation for the database in use."""

    @abstractmethod
    def add(self, message_id: int, doc: SearchDocument) -> None:
        """Index one message row (inside the caller's transaction)."""

    @abstractmethod
    def copy(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Give each new row (second) the document of the row it was copied from (first)."""

    @abstractmethod
    def matching_sql(self, words: list[tuple[str, str]]) -> tuple[str, list[Any]]:
        """SQL selecting the ids of messages that contain every word (as a prefix), and its params."""

    def snippets(self, message_ids: list[int]) -> dict[int, str]:
        if not message_ids:
            return {}
        marks = ",".join(["%s"] * len(message_ids))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {self.id_column}, snippet FROM {TABLE} WHERE {self.id_column} IN ({marks})",
                           message_ids)
            return {row[0]: row[1] for row in cursor.fetchall()}

    id_column = "message_id"


class SqliteFts5(SearchBackend):
    """SQLite FTS5 with the unicode61 tokenizer (diacritics folded: "tieng" finds "tiếng")."""

    id_column = "rowid"

    def add(self, message_id: int, doc: SearchDocument) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (rowid, subject, sender, recipients, body, snippet) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [message_id, doc.subject, doc.sender, doc.recipients, doc.body, doc.snippet],
            )

    def copy(self, pairs: Iterable[tuple[int, int]]) -> None:
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {TABLE} (rowid, subject, sender, recipients, body, snippet) "
                f"SELECT %s, subject, sender, recipients, body, snippet FROM {TABLE} WHERE rowid = %s",
                [(new, old) for old, new in pairs],
            )

    def matching_sql(self, words: list[tuple[str, str]]) -> tuple[str, list[Any]]:
        # FTS5 query syntax: a quoted string is a phrase (so no word is an operator), `*` makes
        # it a prefix, and `column : phrase` limits it to one column.
        parts = [f'{name} : "{word}"*' if name else f'"{word}"*' for name, word in words]
        return f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH %s", [" AND ".join(parts)]


DENSE_MATCHES = 1000  # matches beyond which walking the newest rows first beats the index lookup


class PostgresFullText(SearchBackend):
    """PostgreSQL tsvector with weights A-D for the four fields, the 'simple' configuration."""

    _WEIGHTS = {"subject": "A", "sender": "B", "recipients": "C", "body": "D"}

    def add(self, message_id: int, doc: SearchDocument) -> None:
        values = [_NON_WORD.sub(" ", getattr(doc, name)).lower() for name in FIELDS]
        vector = " || ".join(f"setweight(to_tsvector('simple', %s), '{w}')" for w in self._WEIGHTS.values())
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (message_id, doc, snippet) VALUES (%s, {vector}, %s) "
                "ON CONFLICT (message_id) DO UPDATE SET doc = EXCLUDED.doc, snippet = EXCLUDED.snippet",
                [message_id, *values, doc.snippet],
            )

    def copy(self, pairs: Iterable[tuple[int, int]]) -> None:
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {TABLE} (message_id, doc, snippet) SELECT %s, doc, snippet FROM {TABLE} "
                "WHERE message_id = %s",
                [(new, old) for old, new in pairs],
            )

    def matching_sql(self, words: list[tuple[str, str]]) -> tuple[str, list[Any]]:
        """Rows matching every word as a prefix, written for the plan that suits how many there are.

        PostgreSQL guesses a prefix's frequency badly (a fixed 2% when no common word matches,
        far too little for common words), so a bounded lookup through the GIN index decides:
        few matches: their ids, as a list (the planner then looks each one up); many:
        `word | word:*` (the same matches), whose exact-word statistics let the planner walk
        the newest rows first and stop at the page size.
        """
        # to_tsquery syntax: `word:*` is a prefix, `word:*B` a prefix in weight-B lexemes only.
        prefixes = " & ".join(f"{word}:*{self._WEIGHTS.get(name, '')}" for name, word in words)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT message_id FROM {TABLE} WHERE doc @@ to_tsquery('simple', %s) "
                           f"LIMIT {DENSE_MATCHES}", [prefixes])
            ids = [row[0] for row in cursor.fetchall()]
        if len(ids) < DENSE_MATCHES:
            return "SELECT unnest(%s::bigint[])", [ids]
        exact_or_prefix = " & ".join(
            f"({word}{':' + weight if weight else ''} | {word}:*{weight})"
            for name, word in words for weight in [self._WEIGHTS.get(name, "")])
        return f"SELECT message_id FROM {TABLE} WHERE doc @@ to_tsquery('simple', %s)", [exact_or_prefix]


def backend() -> SearchBackend:
    return PostgresFullText() if connection.vendor == "postgresql" else SqliteFts5()


def index_document(message_id: int, document: SearchDocument) -> None:
    """Called by the store when it inserts a message row (`document_for` made the document before)."""
    backend().add(message_id, document)


def index_copies(pairs: Iterable[tuple[int, int]]) -> None:
    """Called by the store when it copies rows: (old row id, new row id) pairs."""
    backend().copy(list(pairs))


# Schema, used by the migration ------------------------------------------------------

SQLITE_SCHEMA = [
    f"CREATE VIRTUAL TABLE {TABLE} USING fts5(subject, sender, recipients, body, snippet UNINDEXED, "
    "tokenize = 'unicode61 remove_diacritics 2')",
    f"CREATE TRIGGER {TABLE}_forget AFTER DELETE ON mailcore_message BEGIN "
    f"DELETE FROM {TABLE} WHERE rowid = old.id; END",
]
POSTGRES_SCHEMA = [
    # No foreign key: Django's test flush TRUNCATEs mailcore_message, which a FK would refuse.
    f"CREATE TABLE {TABLE} (message_id bigint PRIMARY KEY, doc tsvector NOT NULL, snippet text NOT NULL DEFAULT '')",
    f"CREATE INDEX {TABLE}_doc ON {TABLE} USING gin (doc)",
    f"CREATE FUNCTION {TABLE}_forget() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    f"DELETE FROM {TABLE} WHERE message_id = OLD.id; RETURN OLD; END $$",
    f"CREATE TRIGGER {TABLE}_forget AFTER DELETE ON mailcore_message FOR EACH ROW EXECUTE FUNCTION {TABLE}_forget()",
]
DROP_SCHEMA = {
    "sqlite": [f"DROP TRIGGER IF EXISTS {TABLE}_forget", f"DROP TABLE IF EXISTS {TABLE}"],
    "postgresql": [f"DROP TRIGGER IF EXISTS {TABLE}_forget ON mailcore_message",
                   f"DROP FUNCTION IF EXISTS {TABLE}_forget()", f"DROP TABLE IF EXISTS {TABLE}"],
}
