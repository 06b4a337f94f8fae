"""CONDSTORE/QRESYNC (RFC 7162), QUOTA (RFC 9208), IMAP4rev2 after ENABLE (RFC 9051) over real sockets."""
from __future__ import annotations

import pytest
from imapclient import IMAPClient

from mailcore import store
from tests.imap.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGE = b"From: a@example.org\r\nSubject: m\r\n\r\nbody\r\n"


@pytest.fixture
def inbox(account):
    ref = store.get_folder(account.pk, "INBOX")
    for _ in range(3):
        store.append(ref, MESSAGE)
    return ref


def test_condstore_select_fetch_changedsince_and_unchangedsince(raw, inbox):
    raw.login()
    info = store.folder_info(inbox)
    reply = raw.command(b"a SELECT INBOX (CONDSTORE)")
    assert b"* OK [HIGHESTMODSEQ %d] highest mod-sequence\r\n" % info.highestmodseq in reply
    assert raw.command(b"a STORE 2 +FLAGS (\\Seen)") == [
        b"* 2 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (%d))\r\n" % (info.highestmodseq + 1), b"a OK STORE completed\r\n"
    ]
    assert raw.command(b"a FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % info.highestmodseq) == [
        b"* 2 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (%d))\r\n" % (info.highestmodseq + 1), b"a OK FETCH completed\r\n"
    ]
    assert raw.command(b"a STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % info.highestmodseq) == [
        b"* 1 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (%d))\r\n" % (info.highestmodseq + 2),
        b"a OK [MODIFIED 2] conditional STORE failed for some messages\r\n",
    ]
    assert raw.command(b"a SEARCH MODSEQ %d" % (info.highestmodseq + 2)) == [
        b"* SEARCH 1 (MODSEQ %d)\r\n" % (info.highestmodseq + 2), b"a OK SEARCH completed\r\n"
    ]


def test_qresync_select_reports_vanished_and_changed(raw, inbox):
    before = store.folder_info(inbox)
    store.store_flags(inbox, [1, 2], ["\\Deleted"], store.FLAG_ADD)
    store.expunge(inbox, [2])
    raw.login()
    raw.command(b"a ENABLE QRESYNC")
    reply = raw.command(b"a SELECT INBOX (QRESYNC (%d %d 1:3))" % (inbox.uidvalidity, before.highestmodseq))
    after = store.folder_info(inbox)
    assert b"* VANISHED (EARLIER) 2\r\n" in reply
    assert b"* 1 FETCH (UID 1 FLAGS (\\Deleted \\Recent) MODSEQ (%d))\r\n" % (before.highestmodseq + 1) in reply
    assert b"* OK [HIGHESTMODSEQ %d] highest mod-sequence\r\n" % after.highestmodseq in reply
    assert raw.command(b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % before.highestmodseq) == [
        b"* VANISHED (EARLIER) 2\r\n",
        b"* 1 FETCH (UID 1 FLAGS (\\Deleted \\Recent) MODSEQ (%d))\r\n" % (before.highestmodseq + 1),
        b"a OK UID FETCH completed\r\n",
    ]


def test_qresync_without_enable_is_bad(raw, inbox):
    raw.login()
    assert raw.command(b"a SELECT INBOX (QRESYNC (1 1))") == [
        b"a BAD QRESYNC must be enabled first (RFC 7162 \xc2\xa73.2.3)\r\n"
    ]


def test_quota_with_imapclient(imap_server, account, inbox):
    type(account).objects.filter(pk=account.pk).update(quota_bytes=10 * 1024 * 1024)
    with IMAPClient("127.0.0.1", port=imap_server.port, ssl=False) as client:
        client.login("alice@example.test", PASSWORD)
        roots, quotas = client.get_quota_root("INBOX")
        assert roots.mailbox == "INBOX" and roots.quota_roots == [""]
        assert quotas[0].resource == "STORAGE" and quotas[0].limit == 10240 and quotas[0].usage == 1


def test_quota_exact_replies(raw, account, inbox):
    raw.login()
    assert raw.command(b"a GETQUOTAROOT INBOX") == [b"* QUOTAROOT INBOX\r\n", b"a OK GETQUOTAROOT completed\r\n"]
    assert raw.command(b'a GETQUOTA ""') == [b"a NO [NONEXISTENT] no such quota root\r\n"]
    assert raw.command(b'a SETQUOTA "" (STORAGE 1)') == [b"a NO [NOPERM] quota limits are set by the administrator\r\n"]


def test_imap4rev2_after_enable(raw, inbox):
    raw.login()
    assert raw.command(b"a ENABLE IMAP4rev2") == [b"* ENABLED IMAP4rev2\r\n", b"a OK ENABLE completed\r\n"]
    reply = raw.command(b"a SELECT INBOX")
    assert b"* 0 RECENT\r\n" not in reply and b"* 3 EXISTS\r\n" in reply  # RFC 9051: no RECENT
    assert raw.command(b"a SEARCH ALL") == [b'* ESEARCH (TAG "a") ALL 1:3\r\n', b"a OK SEARCH completed\r\n"]
    assert raw.command(b"a SELECT Drafts")[0] == b"* OK [CLOSED] previous mailbox closed\r\n"
