"""Pulling a whole account from another IMAP server (`manage.py importimap`), resumably.

Every selectable folder of the source is read with EXAMINE (nothing on the
source changes: BODY.PEEK[], RFC 3501 §6.4.5) and its messages appended to the
folder of the same name here (the source's hierarchy delimiter becomes ours),
with their flags (except \\Recent, which no client may set: RFC 3501 §2.3.2)
and internal dates. After each message the source folder's UIDVALIDITY and
the message's UID are recorded (mailcore.store.imports), so a stopped import
goes on where it stopped. If the UIDVALIDITY changed, the folder is read again
from the start and the store's duplicate check (Message-ID plus digest) skips
what is already here; so does it for a message stored just before a crash
whose position was not yet recorded.
"""
from __future__ import annotations

import datetime as dt
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from mailcore import store
from mailcore.mime import parse_message, to_crlf
from mailcore.store import blobs, imports

log = logging.getLogger(__name__)

PLAIN, SSL, STARTTLS = "plain", "ssl", "starttls"
DEFAULT_PORTS = {PLAIN: 143, STARTTLS: 143, SSL: 993}  # RFC 3501 §2.1 (143); RFC 8314 §7.3 (993)
FETCH_BATCH = 50  # messages per UID FETCH: bounded memory, few round trips
TIMEOUT_SECONDS = 60
_UNSELECTABLE = {b"\\noselect", b"\\nonexistent"}  # RFC 3501 §7.2.2, RFC 5258 §3
_NOT_STORABLE = {"\\recent"}


class ImportFailed(Exception):
    """The source server could not be reached, refused the login, or failed a command."""


@dataclass(frozen=True)
class Source:
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    security: str = PLAIN
    ca_file: str | None = None


@dataclass
class Summary:
    imported: int = 0
    skipped: int = 0
    folders: list[str] = field(default_factory=list)


@dataclass
class Progress:
    """Callbacks for a progress display: messages found to import, and messages handled."""

    found: Callable[[int], None] = lambda count: None
    handled: Callable[[int], None] = lambda count: None


def import_account(
    account_id: int, source: Source, progress: Progress | None = None, summary: Summary | None = None
) -> Summary:
    """Import every selectable folder of `source` into the account; returns counts.

    `summary`, when given, is counted into as the import goes (a caller may read it from `progress`).
    """
    progress = progress or Progress()
    summary = summary if summary is not None else Summary()
    try:
        client = _connect(source)
        try:
            for name, delimiter in _source_folders(client):
                _import_folder(client, account_id, source, name, delimiter, summary, progress)
        finally:
            _logout(client)
    except (IMAPClientError, OSError, ssl.SSLError) as err:
        raise ImportFailed(f"{source.host}:{source.port}: {err}") from err
    return summary


def _connect(source: Source) -> IMAPClient:
    context = ssl.create_default_context(cafile=source.ca_file)
    client = IMAPClient(source.host, port=source.port, ssl=source.security == SSL, ssl_context=context,
                        timeout=TIMEOUT_SECONDS)
    client.normalise_times = False  # keep INTERNALDATE's zone (RFC 3501 §2.3.3)
    if source.security == STARTTLS:
        client.starttls(context)
    client.login(source.username, source.password)
    return client


def _logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except (IMAPClientError, OSError):
        log.debug("logout from the source failed", exc_info=True)


def _source_folders(client: IMAPClient) -> list[tuple[str, str]]:
    """(name, hierarchy delimiter) of every selectable folder, INBOX first."""
    folders = []
    for flags, delimiter, name in client.list_folders():
        if any(flag.lower() in _UNSELECTABLE for flag in flags):
            continue
        text = delimiter.decode() if isinstance(delimiter, bytes) else (delimiter or "")
        folders.append((name if isinstance(name, str) else name.decode(), text))
    return sorted(folders, key=lambda f: (f[0].upper() != store.INBOX, f[0]))


def local_name(name: str, delimiter: str) -> str:
    """Our folder name for a source folder: INBOX stays INBOX, levels joined with our delimiter."""
    if name.upper() == store.INBOX:
        return store.INBOX
    if not delimiter or delimiter == store.DELIMITER:
        return name
    return store.DELIMITER.join(part.replace(store.DELIMITER, "_") for part in name.split(delimiter))


def _import_folder(
    client: IMAPClient, account_id: int, source: Source, name: str, delimiter: str, summary: Summary,
    progress: Progress,
) -> None:
    selected = client.select_folder(name, readonly=True)
    uidvalidity = int(selected[b"UIDVALIDITY"])
    position = imports.SourceFolder(account_id, source.host, source.username, name)
    after = imports.resume_after(position, uidvalidity)
    pending = _uids_after(client, after) if selected.get(b"EXISTS", 0) else []
    progress.found(len(pending))
    target = local_name(name, delimiter)
    ref = _folder(account_id, target)
    summary.folders.append(target)
    imports.remember(position, uidvalidity, after)
    for start in range(0, len(pending), FETCH_BATCH):
        batch = pending[start : start + FETCH_BATCH]
        fetched = client.fetch(batch, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
        for uid in batch:
            item = fetched.get(uid)
            if item is not None:  # None: expunged on the source meanwhile
                _store_one(ref, item, summary)
            imports.remember(position, uidvalidity, uid)
            progress.handled(1)


def _uids_after(client: IMAPClient, after: int) -> list[int]:
    # RFC 3501 §6.4.8: "N:*" always includes the highest UID, even when it is below N.
    return sorted(uid for uid in client.search(["UID", f"{after + 1}:*"]) if uid > after)


def _store_one(ref: store.FolderRef, item: dict, summary: Summary) -> None:
    data = to_crlf(item[b"BODY[]"])
    if store.contains(ref, parse_message(data).message_id, blobs.digest_of(data)):
        summary.skipped += 1
        return
    flags = [_text(flag) for flag in item.get(b"FLAGS", ())]
    date = item.get(b"INTERNALDATE")
    store.append(ref, data, [f for f in flags if f.lower() not in _NOT_STORABLE],
                 date if isinstance(date, dt.datetime) else None)
    summary.imported += 1


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _folder(account_id: int, name: str) -> store.FolderRef:
    try:
        return store.get_folder(account_id, name)
    except store.NoSuchFolder:
        return store.create_folder(account_id, name)

