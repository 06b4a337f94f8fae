"""Import and export of whole accounts as mbox files or Maildir trees (stdlib `mailbox`).

Folder mapping. Maildir: the top level is INBOX and Maildir++ subfolders
(`.Sent`, `.Archive.2024`) map to `Sent`, `Archive/2024`. mbox: a single file
goes to one folder (INBOX unless told otherwise); a directory maps each
`NAME.mbox` (nested directories for levels) to folder NAME.

Flags: Maildir info letters (S R F T D) and mbox Status/X-Status letters map to
\\Seen \\Answered \\Flagged \\Deleted \\Draft. The mbox headers are removed on
import and (re)written from the stored flags on export, and From lines are
quoted the mboxrd way, so export then import gives the same bytes, except that
an mbox cannot keep a message's own Status headers or the absence of a final
line end. Maildir keeps every byte.
Re-importing skips messages a folder already holds (Message-ID plus digest).
"""
from __future__ import annotations

import datetime as dt
import mailbox
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailcore import store
from mailcore.mime import parse_message, to_crlf
from mailcore.mime.headers import first, parse_fields, split_header
from mailcore.store import blobs

MAILDIR_FLAGS = {"S": "\\Seen", "R": "\\Answered", "F": "\\Flagged", "T": "\\Deleted", "D": "\\Draft"}
STATUS_FLAGS = {"R": "\\Seen"}  # mbox Status: header (O, "old", has no IMAP flag)
X_STATUS_FLAGS = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}
MBOX_SUFFIX = ".mbox"
_MBOX_FLAG_HEADERS = re.compile(rb"^(Status|X-Status):[^\n]*\n", re.IGNORECASE | re.MULTILINE)
# mboxrd: every body line matching >*From gets one more > on export and loses one on import.
_MBOXRD_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)
_MBOXRD_TO_QUOTE = re.compile(rb"^(>*From )", re.MULTILINE)

Progress = Callable[[int], None]


class TransferError(ValueError):
    """The path is not a readable mbox or Maildir, or the target cannot be written."""


@dataclass
class Summary:
    imported: int = 0
    skipped: int = 0
    folders: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SourceMessage:
    folder: str
    raw: bytes
    flags: tuple[str, ...]
    date: dt.datetime | None


# Import -----------------------------------------------------------------------


def read_source(path: Path, folder: str = store.INBOX) -> Iterator[SourceMessage]:
    """Every message under `path` (a Maildir tree, an mbox file, or a directory of mbox files)."""
    for name, box in _boxes(path, folder):
        if isinstance(box, mailbox.Maildir):
            yield from _read_maildir(box, name)
        elif isinstance(box, mailbox.mbox):
            try:
                yield from _read_mbox(box, name)
            finally:
                box.close()


def count_source(path: Path, folder: str = store.INBOX) -> int:
    """How many messages `read_source` will give (for a progress display); reads no message."""
    total = 0
    for _, box in _boxes(path, folder):
        total += len(box)
        box.close()
    return total


def _boxes(path: Path, folder: str) -> Iterator[tuple[str, mailbox.Mailbox]]:
    """(folder name, mailbox) for each Maildir folder or mbox file under `path`."""
    if (path / "cur").is_dir() or (path / "new").is_dir():
        yield from _maildir_tree(mailbox.Maildir(path, factory=None, create=False), store.INBOX)
    elif path.is_file():
        yield folder, _open_mbox(path)
    elif path.is_dir():
        for file in sorted(path.rglob(f"*{MBOX_SUFFIX}")):
            name = str(file.relative_to(path))[: -len(MBOX_SUFFIX)].replace(os.sep, store.DELIMITER)
            yield name, _open_mbox(file)
    else:
        raise TransferError(f"{path} is neither an mbox file nor a Maildir")


def _maildir_tree(box: mailbox.Maildir, folder: str) -> Iterator[tuple[str, mailbox.Maildir]]:
    yield folder, box
    for sub in sorted(box.list_folders()):
        # Maildir++: ".Archive.2024" is the folder Archive/2024 below INBOX's level.
        yield from _maildir_tree(box.get_folder(sub), sub.replace(".", store.DELIMITER))


def _read_maildir(box: mailbox.Maildir, folder: str) -> Iterator[SourceMessage]:
    for key in sorted(box.keys()):
        message = box.get_message(key)
        flags = tuple(MAILDIR_FLAGS[c] for c in message.get_flags() if c in MAILDIR_FLAGS)
        date = dt.datetime.fromtimestamp(message.get_date(), dt.UTC)
        yield SourceMessage(folder, box.get_bytes(key), flags, date)


def _open_mbox(path: Path) -> mailbox.mbox:
    try:
        return mailbox.mbox(path, create=False)
    except (OSError, mailbox.Error) as err:
        raise TransferError(f"cannot read mbox {path}: {err}") from err


def _read_mbox(box: mailbox.mbox, folder: str) -> Iterator[SourceMessage]:
    for key in box.iterkeys():
        raw = _MBOXRD_QUOTED.sub(rb"\1", box.get_bytes(key))
        data = to_crlf(raw)
        fields = parse_fields(data[: split_header(data)[0]])
        status, x_status = first(fields, "status") or "", first(fields, "x-status") or ""
        flags = {STATUS_FLAGS[c] for c in status if c in STATUS_FLAGS}
        flags |= {X_STATUS_FLAGS[c] for c in x_status if c in X_STATUS_FLAGS}
        if status or x_status:
            raw = _strip_mbox_flag_headers(raw)
        from_line = box.get_message(key).get_from()
        yield SourceMessage(folder, raw, tuple(sorted(flags)), _from_line_date(from_line))


def _strip_mbox_flag_headers(raw: bytes) -> bytes:
    end = raw.find(b"\n\n")
    header, body = (raw, b"") if end < 0 else (raw[: end + 1], raw[end + 1 :])
    return _MBOX_FLAG_HEADERS.sub(b"", header) + body


def _from_line_date(from_line: str) -> dt.datetime | None:
    """The date at the end of an mbox From_ line ("sender Mon Jan  1 00:00:00 2024")."""
    try:
        parsed = time.strptime(" ".join(from_line.split()[-5:]), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None
    return dt.datetime(*parsed[:6], tzinfo=dt.UTC)


def import_messages(
    account_id: int, messages: Iterator[SourceMessage], progress: Progress | None = None,
    summary: Summary | None = None,
) -> Summary:
    """Append each message to its folder (created when missing), skipping ones already there.

    `summary`, when given, is counted into as the import goes (a caller may read it from `progress`).
    """
    summary = summary if summary is not None else Summary()
    refs: dict[str, store.FolderRef] = {}
    for message in messages:
        ref = refs.get(message.folder) or _folder(account_id, message.folder)
        refs[message.folder] = ref
        if message.folder not in summary.folders:
            summary.folders.append(message.folder)
        data = to_crlf(message.raw)
        if store.contains(ref, parse_message(data).message_id, blobs.digest_of(data)):
            summary.skipped += 1
        else:
            store.append(ref, data, message.flags, message.date)
            summary.imported += 1
        if progress:
            progress(1)
    return summary


def _folder(account_id: int, name: str) -> store.FolderRef:
    try:
        return store.get_folder(account_id, name)
    except store.NoSuchFolder:
        return store.create_folder(account_id, name)


# Export -----------------------------------------------------------------------


def export_account(account_id: int, path: Path, fmt: str, progress: Progress | None = None) -> Summary:
    """Write every folder of the account under `path` as a Maildir tree or mbox files."""
    summary = Summary()
    if fmt == "maildir":
        mailbox.Maildir(path, create=True)  # makes tmp/, new/ and cur/ (only when `path` is new)
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    for info in store.list_folders(account_id):
        messages = store.fetch(store.get_folder(account_id, info.name))
        summary.folders.append(info.name)
        if fmt == "maildir":
            _export_maildir(path, info.name, messages, progress)
        else:
            _export_mbox(path, info.name, messages, progress)
        summary.imported += len(messages)
    return summary


def _export_maildir(
    root: Path, name: str, messages: list[store.MessageInfo], progress: Progress | None
) -> None:
    maildir_name = name.replace(store.DELIMITER, ".")
    directory = root if name == store.INBOX else root / f".{maildir_name}"
    box = mailbox.Maildir(root, create=True)
    box = box if name == store.INBOX else box.add_folder(maildir_name)
    for info in messages:
        raw = store.read_blob(info.blob).replace(b"\r\n", b"\n")
        key = box.add(raw)  # bytes are written as they are; then the file is named for its flags
        letters = "".join(sorted(c for c, flag in MAILDIR_FLAGS.items() if flag in info.flags))
        new = directory / "cur" / f"{key}{box.colon}2,{letters}"
        os.rename(directory / "new" / key, new)
        stamp = info.internal_date.timestamp()
        os.utime(new, (stamp, stamp))
        if progress:
            progress(1)


def _export_mbox(
    path: Path, name: str, messages: list[store.MessageInfo], progress: Progress | None
) -> None:
    file = path.joinpath(*name.split(store.DELIMITER)).with_name(name.split(store.DELIMITER)[-1] + MBOX_SUFFIX)
    file.parent.mkdir(parents=True, exist_ok=True)
    box = _MboxRd(file, create=True)
    box.lock()
    try:
        for info in messages:
            raw = store.read_blob(info.blob).replace(b"\r\n", b"\n")
            from_line = b"From MAILER-DAEMON " + time.asctime(info.internal_date.utctimetuple()).encode() + b"\n"
            content = _with_mbox_flag_headers(_strip_mbox_flag_headers(raw), info.flags)
            box.add(from_line + _MBOXRD_TO_QUOTE.sub(rb">\1", content))
            if progress:
                progress(1)
        box.flush()
    finally:
        box.unlock()
        box.close()


class _MboxRd(mailbox.mbox):
    """mbox written as mboxrd: From-quoting is done (reversibly) before `add`."""

    _mangle_from_ = False


def _with_mbox_flag_headers(raw: bytes, flags: tuple[str, ...]) -> bytes:
    status = "R" if "\\Seen" in flags else ""
    x_status = "".join(c for c, flag in X_STATUS_FLAGS.items() if flag in flags)
    extra = (f"Status: {status}O\n" if status else "Status: O\n") + (f"X-Status: {x_status}\n" if x_status else "")
    end = raw.find(b"\n\n")
    if end < 0:
        return raw + b"\n" + extra.encode() if raw and not raw.endswith(b"\n") else raw + extra.encode()
    return raw[: end + 1] + extra.encode() + raw[end + 1 :]
