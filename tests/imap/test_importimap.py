"""`manage.py importimap`: a whole account pulled over real IMAP, from our own server and from Dovecot."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from imapclient import IMAPClient

from mailcore import imapimport, store
from mailcore.mime import to_crlf
from mailcore.models import ImapImport
from tests.conftest import corpus_files
from tests.support.dovecot import Dovecot, missing

DOVECOT_USER, DOVECOT_PASSWORD = "carol", "carol-dovecot-pw"
FLAG_SETS = [(), (b"\\Seen",), (b"\\Seen", b"\\Flagged"), (b"\\Answered", b"\\Seen", b"$Label1"), (b"\\Draft",),
             (b"\\Deleted", b"\\Seen")]


@dataclass
class Peer:
    port: int
    user: str
    password: str
    delimiter: str


def fill(peer: Peer, count: int = 12) -> dict[str, list[tuple[bytes, tuple[str, ...], dt.datetime]]]:
    """Append `count` corpus messages to INBOX, Sent and Archive<delim>2024 of the source; return what went where."""
    archive = f"Archive{peer.delimiter}2024"
    folders = ["INBOX", "Sent", archive]
    expected: dict[str, list] = {"INBOX": [], "Sent": [], "Archive/2024": []}
    with IMAPClient("127.0.0.1", port=peer.port, ssl=False) as client:
        client.login(peer.user, peer.password)
        for name in ("Sent", "Archive", archive):
            if not client.folder_exists(name):
                client.create_folder(name)
        for n, path in enumerate(corpus_files()[:count]):
            flags = FLAG_SETS[n % len(FLAG_SETS)]
            when = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))) + dt.timedelta(days=n)
            raw = to_crlf(path.read_bytes())
            folder = folders[n % 3]
            client.append(folder, raw, flags, when)
            local = "Archive/2024" if folder == archive else folder
            expected[local].append((raw, tuple(sorted(f.decode() for f in flags)), when))
    return expected


def imported(account) -> dict[str, list[tuple[bytes, tuple[str, ...], dt.datetime]]]:
    result = {}
    for info in store.list_folders(account.pk):
        ref = store.get_folder(account.pk, info.name)
        rows = [(store.read_blob(m.blob), tuple(sorted(m.flags)), m.internal_date) for m in store.fetch(ref)]
        if rows or info.name in ("INBOX", "Sent", "Archive/2024"):
            result[info.name] = rows
    return result


def command_args(peer: Peer, tmp_path: Path) -> list[str]:
    password_file = tmp_path / "password"
    password_file.write_text(peer.password + "\n")
    return ["alice@example.test", "--host", "127.0.0.1", "--port", str(peer.port), "--user", peer.user,
            "--password-file", str(password_file)]


def stop_after(count: int) -> imapimport.Progress:
    """A progress display that is interrupted (as by Ctrl-C) once `count` messages are handled."""
    handled = [0]

    def tick(n: int) -> None:
        handled[0] += n
        if handled[0] >= count:
            raise KeyboardInterrupt

    return imapimport.Progress(handled=tick)


# Against our own server ------------------------------------------------------------


@pytest.fixture
def ours(imap_server, alice, bob) -> Peer:
    return Peer(imap_server.port, "bob@example.test", "bob-secret-pw", "/")


def test_import_from_our_server_keeps_folders_flags_and_dates(ours, alice, tmp_path, capsys):
    expected = fill(ours)
    call_command("importimap", *command_args(ours, tmp_path))
    out = capsys.readouterr().out
    assert out == "imported 12 message(s), skipped 0 already present, from 7 folder(s) of bob@example.test at 127.0.0.1\n"
    assert imported(alice) == expected


def test_import_over_implicit_tls_and_starttls_verifies_the_certificate(ours, alice, imap_server, tmp_path, capsys):
    from mailcore.tls import certificate_paths

    fill(ours, 3)
    ca = str(certificate_paths()[0])
    call_command("importimap", *command_args(ours, tmp_path), "--starttls", "--ca-file", ca)
    assert capsys.readouterr().out.startswith("imported 3 message(s), skipped 0")
    args = command_args(ours, tmp_path)
    args[args.index("--port") + 1] = str(imap_server.tls_port)
    with pytest.raises(CommandError, match="CERTIFICATE_VERIFY_FAILED"):
        call_command("importimap", *args, "--ssl")
    ImapImport.objects.all().delete()  # forget the positions: the duplicate check alone must skip all
    call_command("importimap", *args, "--ssl", "--ca-file", ca)
    assert capsys.readouterr().out.startswith("imported 0 message(s), skipped 3 already present")


def test_interrupted_import_resumes_where_it_stopped(ours, alice, tmp_path, capsys):
    expected = fill(ours)
    source = imapimport.Source("127.0.0.1", ours.port, ours.user, ours.password)
    with pytest.raises(KeyboardInterrupt):
        imapimport.import_account(alice.pk, source, stop_after(5))
    assert sum(len(rows) for rows in imported(alice).values()) == 5
    call_command("importimap", *command_args(ours, tmp_path))
    assert capsys.readouterr().out.startswith("imported 7 message(s), skipped 0 already present")
    assert imported(alice) == expected
    call_command("importimap", *command_args(ours, tmp_path))
    assert capsys.readouterr().out.startswith("imported 0 message(s), skipped 0 already present")


def test_changed_uidvalidity_reads_the_folder_again_without_duplicates(ours, alice, tmp_path, capsys):
    expected = fill(ours)
    call_command("importimap", *command_args(ours, tmp_path))
    capsys.readouterr()
    ImapImport.objects.filter(folder="INBOX").update(uidvalidity=1)
    call_command("importimap", *command_args(ours, tmp_path))
    assert capsys.readouterr().out.startswith("imported 0 message(s), skipped 4 already present")
    assert imported(alice) == expected


def test_wrong_password_is_a_command_error_and_imports_nothing(ours, alice, tmp_path):
    fill(ours, 2)
    args = command_args(Peer(ours.port, ours.user, "not-the-password", "/"), tmp_path)
    with pytest.raises(CommandError, match=r"127\.0\.0\.1"):
        call_command("importimap", *args)
    assert all(not rows for rows in imported(alice).values())


def test_unknown_local_account_is_a_command_error(db, tmp_path):
    with pytest.raises(CommandError, match=r"no mailbox nobody@example\.test"):
        call_command("importimap", "nobody@example.test", "--host", "127.0.0.1", "--user", "x",
                     "--password-file", str(tmp_path / "missing"))


# Against Debian's Dovecot ------------------------------------------------------------


@pytest.fixture
def dovecot() -> Iterator[Peer]:
    reason = missing("imap")
    if reason:
        pytest.skip(reason)
    with Dovecot("imap", {DOVECOT_USER: DOVECOT_PASSWORD}) as server:
        yield Peer(server.port, DOVECOT_USER, DOVECOT_PASSWORD, ".")


def test_import_from_dovecot_maps_folders_and_keeps_flags_and_dates(dovecot, alice, tmp_path, capsys):
    expected = fill(dovecot)
    call_command("importimap", *command_args(dovecot, tmp_path))
    out = capsys.readouterr().out
    assert out == "imported 12 message(s), skipped 0 already present, from 4 folder(s) of carol at 127.0.0.1\n"
    assert imported(alice) == expected


def test_interrupted_import_from_dovecot_resumes_and_picks_up_new_mail(dovecot, alice, tmp_path, capsys):
    expected = fill(dovecot)
    source = imapimport.Source("127.0.0.1", dovecot.port, dovecot.user, dovecot.password)
    with pytest.raises(KeyboardInterrupt):
        imapimport.import_account(alice.pk, source, stop_after(6))
    call_command("importimap", *command_args(dovecot, tmp_path))
    assert capsys.readouterr().out.startswith("imported 6 message(s), skipped 0 already present")
    assert imported(alice) == expected
    later = to_crlf(corpus_files()[20].read_bytes())
    when = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with IMAPClient("127.0.0.1", port=dovecot.port, ssl=False) as client:
        client.login(dovecot.user, dovecot.password)
        client.append("INBOX", later, (b"\\Flagged",), when)
    call_command("importimap", *command_args(dovecot, tmp_path))
    assert capsys.readouterr().out.startswith("imported 1 message(s), skipped 0 already present")
    assert imported(alice)["INBOX"] == [*expected["INBOX"], (later, ("\\Flagged",), when)]
