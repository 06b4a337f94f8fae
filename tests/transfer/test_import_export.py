"""Migration in and out: export then import gives the same messages and flags."""
import datetime as dt
import mailbox
import re

import pytest
from django.core.management import CommandError, call_command

from mailcore import store
from mailcore.directory import create_account
from tests.conftest import corpus_files

FLAG_SETS = [(), ("\\Seen",), ("\\Seen", "\\Flagged"), ("\\Answered", "\\Seen"), ("\\Draft",), ("\\Deleted", "\\Seen")]


def fill(account):
    """Every corpus message into INBOX, Archive/2024 and Sent, with varied flags and dates."""
    store.create_folder(account.pk, "Archive/2024")
    folders = ["INBOX", "Archive/2024", "Sent"]
    for n, path in enumerate(corpus_files()):
        ref = store.get_folder(account.pk, folders[n % 3])
        when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=n)
        store.append(ref, path.read_bytes(), FLAG_SETS[n % len(FLAG_SETS)], when)


def snapshot(account, line_ended=False):
    """{folder: sorted [(bytes, flags, internal date)]} of the account's non-empty folders.

    `line_ended`: give messages that lack a final line end one (an mbox cannot store their absence).
    """
    result = {}
    for info in store.list_folders(account.pk):
        ref = store.get_folder(account.pk, info.name)
        rows = [(_ended(store.read_blob(m.blob), line_ended), tuple(sorted(m.flags)), m.internal_date) for m in store.fetch(ref)]
        if rows:
            result[info.name] = sorted(rows)
    return result


def _ended(raw, line_ended):
    """What an mbox can keep: a final line end, and no Status/X-Status headers of the message's own."""
    if not line_ended:
        return raw
    header_end = raw.find(b"\r\n\r\n")
    if header_end >= 0:
        header = re.sub(rb"(?im)^(status|x-status):[^\r]*\r\n", b"", raw[: header_end + 2])
        raw = header + raw[header_end + 2 :]
    return raw + b"\r\n" if raw and not raw.endswith(b"\r\n") else raw


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_export_then_import_gives_the_same_messages_and_flags(alice, tmp_path, fmt, capsys):
    fill(alice)
    call_command("exportmail", "alice@example.test", str(tmp_path / "out"), "--format", fmt)
    assert capsys.readouterr().out.startswith("exported 104 message(s) from 7 folder(s)")
    copy = create_account("copy@example.test", "copy-secret-pw")
    call_command("importmail", "copy@example.test", str(tmp_path / "out"))
    out = capsys.readouterr().out
    assert out.startswith("imported 104 message(s), skipped 0 already present")
    assert snapshot(copy) == snapshot(alice, line_ended=fmt == "mbox")
    call_command("importmail", "copy@example.test", str(tmp_path / "out"))
    assert capsys.readouterr().out.startswith("imported 0 message(s), skipped 104 already present")


def test_import_of_a_foreign_maildir_maps_folders_and_flags(alice, tmp_path):
    root = mailbox.Maildir(tmp_path / "md", create=True)
    message = mailbox.MaildirMessage(b"Subject: one\n\nbody\n")
    message.set_flags("RS")
    message.set_subdir("cur")
    root.add(message)
    sub = root.add_folder("Lists.python")
    sub.add(mailbox.MaildirMessage(b"Subject: two\n\nbody\n"))
    call_command("importmail", "alice@example.test", str(tmp_path / "md"))
    [inbox] = store.fetch(store.get_folder(alice.pk, "INBOX"))
    [listed] = store.fetch(store.get_folder(alice.pk, "Lists/python"))
    assert set(inbox.flags) == {"\\Seen", "\\Answered"} and listed.flags == ()
    assert store.read_message(store.get_folder(alice.pk, "INBOX"), inbox.uid) == b"Subject: one\r\n\r\nbody\r\n"


def test_import_of_an_mbox_keeps_status_flags_and_unquotes_from_lines(alice, tmp_path):
    path = tmp_path / "old.mbox"
    path.write_bytes(
        b"From someone Tue Jan  2 03:04:05 2024\nSubject: a\nStatus: RO\nX-Status: F\n\n>From the start\n\n"
        b"From other Wed Jan  3 03:04:05 2024\nSubject: b\nStatus: O\n\nbody\n"
    )
    call_command("importmail", "alice@example.test", str(path), "--folder", "Old")
    first, second = store.fetch(store.get_folder(alice.pk, "Old"))
    assert set(first.flags) == {"\\Seen", "\\Flagged"} and second.flags == ()
    assert first.internal_date == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    raw = store.read_message(store.get_folder(alice.pk, "Old"), first.uid)
    assert raw == b"Subject: a\r\n\r\nFrom the start\r\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (("importmail", "nobody@example.test", "/nonexistent"), "no mailbox nobody@example.test"),
        (("importmail", "alice@example.test", "/nonexistent"), "/nonexistent does not exist"),
        (("exportmail", "nobody@example.test", "/tmp/x"), "no mailbox nobody@example.test"),
    ],
)
def test_import_export_errors_are_clear(alice, args, message):
    with pytest.raises(CommandError, match=message):
        call_command(*args)
