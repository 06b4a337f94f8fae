"""IDLE and several sessions on one folder: untagged EXISTS/EXPUNGE/FETCH only where RFC 3501 §7 allows."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from mailcore import store
from tests.imap.conftest import RawClient

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
MESSAGE = b"From: a@example.org\r\nSubject: new\r\n\r\nhello\r\n"
WAKE_BOUND = 5  # seconds a read may block before the test fails (the target is one second; never asserted)


def selected_client(imap_server) -> RawClient:
    client = RawClient(imap_server.port)
    client.login()
    client.command(b"s SELECT INBOX", b"s")
    client.sock.settimeout(WAKE_BOUND)
    return client


def test_idle_wakes_on_delivery_in_this_process(imap_server, account):
    client = selected_client(imap_server)
    client.send(b"a IDLE\r\n")
    assert client.line() == b"+ idling\r\n"
    store.deliver(MESSAGE, ["alice@example.test"])
    assert client.line() == b"* 1 EXISTS\r\n"
    assert client.line() == b"* 1 RECENT\r\n"  # RFC 3501 §7.3.2
    client.send(b"DONE\r\n")
    assert client.line() == b"a OK IDLE terminated\r\n"


def test_idle_reports_flags_and_expunge_from_another_session(imap_server, account):
    store.deliver(MESSAGE, ["alice@example.test"])
    store.deliver(MESSAGE, ["alice@example.test"])
    watcher, actor = selected_client(imap_server), selected_client(imap_server)
    watcher.send(b"a IDLE\r\n")
    assert watcher.line() == b"+ idling\r\n"
    actor.command(b"b STORE 1 +FLAGS (\\Flagged)", b"b")
    assert watcher.line() == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n"
    actor.command(b"b STORE 2 +FLAGS.SILENT (\\Deleted)", b"b")
    assert watcher.line() == b"* 2 FETCH (UID 2 FLAGS (\\Deleted \\Recent))\r\n"
    actor.command(b"b EXPUNGE", b"b")
    assert watcher.line() == b"* 2 EXPUNGE\r\n"
    watcher.send(b"DONE\r\n")
    assert watcher.line() == b"a OK IDLE terminated\r\n"


def test_idle_bad_continuation_is_bad(imap_server, account):
    client = selected_client(imap_server)
    client.send(b"a IDLE\r\n")
    assert client.line() == b"+ idling\r\n"
    client.send(b"NOPE\r\n")
    assert client.line() == b"a BAD expected DONE to end IDLE\r\n"


def _database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    return f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT'] or 5432}/{settings['NAME']}"


@pytest.mark.slow
def test_idle_wakes_on_delivery_by_another_process(imap_server, account, blob_dir):
    client = selected_client(imap_server)
    client.send(b"a IDLE\r\n")
    assert client.line() == b"+ idling\r\n"
    env = {**os.environ, "DATABASE_URL": _database_url(), "MAIL_BLOB_DIR": str(blob_dir)}
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "deliver", "alice@example.test"],
        input=MESSAGE, env=env, check=True, timeout=60,
    )
    assert client.line() == b"* 1 EXISTS\r\n"
    assert client.line() == b"* 1 RECENT\r\n"  # RFC 3501 §7.3.2
    client.send(b"DONE\r\n")
    assert client.line() == b"a OK IDLE terminated\r\n"


def test_no_expunge_during_fetch_store_search_but_at_noop(imap_server, account):
    for _ in range(3):
        store.deliver(MESSAGE, ["alice@example.test"])
    a, b = selected_client(imap_server), selected_client(imap_server)
    b.command(b"b STORE 2 +FLAGS.SILENT (\\Deleted)", b"b")
    b.command(b"b EXPUNGE", b"b")
    store.deliver(MESSAGE, ["alice@example.test"])
    # RFC 3501 §7.4.1: no EXPUNGE during FETCH; new mail (EXISTS) may be reported (at once in-process,
    # or later when the event comes through Redis).
    reply = a.command(b"a FETCH 3 (UID)")
    assert reply[0] == b"* 3 FETCH (UID 3)\r\n" and reply[-1] == b"a OK FETCH completed\r\n"
    # `a` selected first: every message is \Recent for it, the expunged one too until it hears of that
    assert reply[1:-1] in ([b"* 4 EXISTS\r\n", b"* 4 RECENT\r\n"], [])
    heard_exists = bool(reply[1:-1])
    # the expunged message keeps its number until the client may hear of it
    search = a.command(b"a SEARCH ALL")
    assert not any(b"EXPUNGE" in line for line in search)
    assert search[0] == (b"* SEARCH 1 3 4\r\n" if heard_exists else b"* SEARCH 1 3\r\n")
    assert search[-1] == b"a OK SEARCH completed\r\n"
    heard_exists = heard_exists or b"* 4 EXISTS\r\n" in search
    noop = a.command(b"a NOOP")
    assert noop[0] == b"* 2 EXPUNGE\r\n" and noop[-1] == b"a OK NOOP completed\r\n"
    assert noop[1:-1] == ([] if heard_exists else [b"* 3 EXISTS\r\n", b"* 3 RECENT\r\n"])
    assert a.command(b"a FETCH 3 (UID)") == [b"* 3 FETCH (UID 4)\r\n", b"a OK FETCH completed\r\n"]


def test_qresync_session_hears_vanished(imap_server, account):
    store.deliver(MESSAGE, ["alice@example.test"])
    a = RawClient(imap_server.port)
    a.login()
    a.command(b"a ENABLE QRESYNC")
    a.command(b"a SELECT INBOX")
    b = selected_client(imap_server)
    b.command(b"b STORE 1 +FLAGS.SILENT (\\Deleted)", b"b")
    b.command(b"b EXPUNGE", b"b")
    reply = a.command(b"a NOOP")
    assert reply[0] == b"* VANISHED 1\r\n" and reply[-1] == b"a OK NOOP completed\r\n"
