"""A Debian mail client against the server: curl's IMAP support (imap://) uploads (APPEND) and downloads a folder."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from mailcore import store
from tests.imap.conftest import PASSWORD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
MESSAGE = b"From: a@example.org\r\nTo: alice@example.test\r\nSubject: via curl\r\n\r\nhello from curl\r\n"


def curl(*args: str) -> bytes:
    if shutil.which("curl") is None:
        pytest.fail("curl is missing: `make deps-debian` installs it (debian-packages.txt)")
    user = f"alice@example.test:{PASSWORD}"
    result = subprocess.run(["curl", "--silent", "--show-error", "--user", user, *args], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_curl_uploads_and_downloads_a_folder(imap_server, account, tmp_path):
    base = f"imap://127.0.0.1:{imap_server.port}"
    store.append(store.get_folder(account.pk, "Archive"), b"Subject: old\r\n\r\nold mail\r\n")
    upload = tmp_path / "message.eml"
    upload.write_bytes(MESSAGE)
    curl("--upload-file", str(upload), f"{base}/Archive")  # APPEND
    assert [m.subject for m in store.fetch(store.get_folder(account.pk, "Archive"))] == ["old", "via curl"]
    assert curl(f"{base}/Archive;UID=2") == MESSAGE  # SELECT + UID FETCH BODY[]
    assert curl(f"{base}/Archive;UID=1") == b"Subject: old\r\n\r\nold mail\r\n"
    listing = curl(f"{base}/")
    assert b'"/" Archive' in listing and b'"/" INBOX' in listing


def test_curl_over_implicit_tls(imap_server, account):
    store.append(store.get_folder(account.pk, "INBOX"), MESSAGE)
    assert curl("--insecure", f"imaps://127.0.0.1:{imap_server.tls_port}/INBOX;UID=1") == MESSAGE
