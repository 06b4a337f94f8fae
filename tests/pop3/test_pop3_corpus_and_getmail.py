"""The whole mail corpus through RETR byte-exact, and Debian's getmail retrieving a maildrop into a Maildir."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from mailcore import store
from mailcore.mime import to_crlf
from tests.conftest import corpus_files
from tests.pop3.conftest import RawClient, deliver, inbox_uids, message, unstuff

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_corpus_message_comes_back_byte_exact_from_retr_and_list_sizes_match(server, alice):
    files = corpus_files()
    for path in files:
        deliver(path.read_bytes())
    ref = store.get_folder(alice.pk, "INBOX")
    stored = [store.read_message(ref, uid) for uid in inbox_uids(alice)]
    raw = RawClient(server.port)
    raw.line()
    raw.command(b"USER alice@example.test")
    assert raw.command(b"PASS alice-secret-pw") == (
        f"+OK maildrop has {len(files)} messages ({sum(map(len, stored))} octets)".encode()
    )
    assert raw.command(b"LIST") == f"+OK {len(files)} messages ({sum(map(len, stored))} octets)".encode()
    assert raw.multiline() == b"".join(f"{n} {len(data)}\r\n".encode() for n, data in enumerate(stored, 1))
    for number, (path, data) in enumerate(zip(files, stored, strict=True), start=1):
        assert data == to_crlf(path.read_bytes())
        assert raw.command(f"RETR {number}".encode()) == f"+OK {len(data)} octets".encode()
        body = unstuff(raw.multiline())
        expected = data if data.endswith(b"\r\n") or not data else data + b"\r\n"  # RFC 1939 §3: lines end in CRLF
        assert body == expected, path.name
    assert raw.command(b"QUIT") == b"+OK bye, 0 messages deleted"


GETMAIL = shutil.which("getmail")
GETMAIL_RETURN_PATH = b"Return-Path: <unknown>\n"  # getmail's own first line (no envelope sender in POP3)
needs_getmail = pytest.mark.skipif(GETMAIL is None, reason="getmail6 (debian-packages.txt) is not installed")


def run_getmail(tmp_path: Path, port: int, delete: bool, ssl: bool = False) -> list[bytes]:
    """Run Debian's getmail once against our server; return the messages it wrote to the Maildir."""
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
        (maildir / sub).chmod(0o777)
    maildir.chmod(0o777)
    rc = tmp_path / "getmailrc"
    rc.write_text(
        "[retriever]\n"
        f"type = {'SimplePOP3SSLRetriever' if ssl else 'SimplePOP3Retriever'}\n"
        f"server = 127.0.0.1\nport = {port}\n"
        "username = alice@example.test\npassword = alice-secret-pw\n"
        "[destination]\ntype = Maildir\n"
        f"path = {maildir}/\n"
        # getmail refuses to deliver as root; it then writes as this user instead
        f"{'user = nobody' if os.geteuid() == 0 else ''}\n"
        "[options]\n"
        f"delete = {str(delete).lower()}\nread_all = false\n"
        "delivered_to = false\nreceived = false\nverbose = 0\n"
    )
    before = set((maildir / "new").iterdir())
    done = subprocess.run([GETMAIL, f"--getmaildir={tmp_path}", f"--rcfile={rc}"], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
    written = [path.read_bytes() for path in sorted(set((maildir / "new").iterdir()) - before)]
    return [data.removeprefix(GETMAIL_RETURN_PATH) for data in written]


@pytest.fixture
def getmail_dir():
    """A directory the unprivileged delivery user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="pop3-getmail-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@needs_getmail
def test_getmail_leaving_mail_on_the_server_downloads_each_message_once(server, alice, getmail_dir):
    tmp_path = getmail_dir
    deliver(message(1))
    deliver(message(2))
    first = run_getmail(tmp_path, server.port, delete=False)
    assert sorted(first) == sorted(m.replace(b"\r\n", b"\n") for m in (message(1), message(2)))
    assert run_getmail(tmp_path, server.port, delete=False) == []  # UIDL says: nothing new
    deliver(message(3))
    assert run_getmail(tmp_path, server.port, delete=False) == [message(3).replace(b"\r\n", b"\n")]
    assert len(inbox_uids(alice)) == 3
    flags = [info.flags for info in store.fetch(store.get_folder(alice.pk, "INBOX"))]
    assert all("\\Seen" in f for f in flags)


@needs_getmail
def test_getmail_with_delete_empties_the_maildrop_over_implicit_tls(tls_server, alice, getmail_dir):
    tmp_path = getmail_dir
    deliver(message(1))
    deliver(message(2, "..dots\r\n.one"))
    got = run_getmail(tmp_path, tls_server.port, delete=True, ssl=True)
    assert sorted(got) == sorted(m.replace(b"\r\n", b"\n") for m in (message(1), message(2, "..dots\r\n.one")))
    assert inbox_uids(alice) == []
