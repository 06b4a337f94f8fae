"""Folders over real sockets: LIST (extended, status, special-use), LSUB, NAMESPACE, STATUS, CREATE, DELETE, RENAME, SUBSCRIBE, SELECT/EXAMINE."""
from __future__ import annotations

import pytest
from imapclient import IMAPClient

from tests.imap.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: a@example.org\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def client(imap_server, account):
    with IMAPClient("127.0.0.1", port=imap_server.port, ssl=False) as client:
        client.login("alice@example.test", PASSWORD)
        yield client


def test_list_all_shows_default_folders_with_special_use(client):
    folders = {name: flags for flags, _, name in client.list_folders()}
    assert set(folders) == {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}
    assert b"\\Sent" in folders["Sent"] and b"\\HasNoChildren" in folders["INBOX"]


def test_list_exact_replies_for_delimiter_and_wildcards(raw):
    raw.login()
    assert raw.command(b'a LIST "" ""') == [b'* LIST (\\Noselect) "/" ""\r\n', b"a OK LIST completed\r\n"]
    raw.command(b"a CREATE Work/Projects/Big")
    assert raw.command(b'a LIST "" Work/%') == [
        b'* LIST (\\HasChildren) "/" Work/Projects\r\n', b"a OK LIST completed\r\n"
    ]
    assert raw.command(b'a LIST Work/ *') == [
        b'* LIST (\\HasChildren) "/" Work/Projects\r\n',
        b'* LIST (\\HasNoChildren) "/" Work/Projects/Big\r\n',
        b"a OK LIST completed\r\n",
    ]


def test_list_extended_return_status_and_special_use_selection(raw):
    raw.login()
    reply = raw.command(b'a LIST (SPECIAL-USE) "" "*" RETURN (STATUS (MESSAGES UIDNEXT))')
    assert b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n' in reply
    assert b"* STATUS Sent (MESSAGES 0 UIDNEXT 1)\r\n" in reply
    assert not any(b" INBOX" in line for line in reply)


def test_create_rename_delete_and_status(client):
    assert client.create_folder("Lists/Python") == b"CREATE completed"
    client.rename_folder("Lists", "Mailing")
    names = [name for _, _, name in client.list_folders()]
    assert "Mailing/Python" in names and "Lists" not in names
    client.append("Mailing/Python", MESSAGE)
    assert client.folder_status("Mailing/Python", ["MESSAGES", "UNSEEN", "SIZE"]) == {
        b"MESSAGES": 1, b"UNSEEN": 1, b"SIZE": len(MESSAGE)
    }
    client.delete_folder("Mailing/Python")
    assert "Mailing/Python" not in [name for _, _, name in client.list_folders()]


def test_create_existing_is_no_alreadyexists(raw):
    raw.login()
    assert raw.command(b"a CREATE Sent") == [b"a NO [ALREADYEXISTS] folder Sent already exists\r\n"]
    assert raw.command(b"a CREATE inbox") == [b"a NO [ALREADYEXISTS] INBOX always exists\r\n"]


def test_delete_inbox_is_refused(raw):
    raw.login()
    assert raw.command(b"a DELETE INBOX") == [b"a NO [CANNOT] INBOX cannot be deleted\r\n"]


@pytest.mark.parametrize("name", [b"../bob", b'"Work/../../x"', b'"a%b"', b'"x*"', b'"/abs"'])
def test_path_trickery_in_names_is_refused(raw, name):
    raw.login()
    reply = raw.command(b"a CREATE " + name)
    assert reply[-1].startswith(b"a NO [CANNOT]") or reply[-1].startswith(b"a BAD")


def test_other_users_folders_are_invisible(imap_server, account, bob):
    from mailcore import store

    store.deliver(MESSAGE, ["bob@example.test"])
    with IMAPClient("127.0.0.1", port=imap_server.port, ssl=False) as client:
        client.login("alice@example.test", PASSWORD)
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
        assert "bob" not in str(client.list_folders())


def test_rename_inbox_moves_its_mail(client):
    client.append("INBOX", MESSAGE)
    client.rename_folder("INBOX", "Old")
    assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 0
    assert client.folder_status("Old", ["MESSAGES"])[b"MESSAGES"] == 1


def test_subscribe_lsub(raw):
    raw.login()
    raw.command(b"a CREATE News")
    raw.command(b"a UNSUBSCRIBE News")
    assert b'* LSUB (\\HasNoChildren) "/" News\r\n' not in raw.command(b'a LSUB "" *')
    assert raw.command(b"a SUBSCRIBE News") == [b"a OK SUBSCRIBE completed\r\n"]
    assert b'* LSUB (\\HasNoChildren) "/" News\r\n' in raw.command(b'a LSUB "" *')
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" News\r\n' in raw.command(b'a LIST (SUBSCRIBED) "" News')


def test_namespace(raw):
    raw.login()
    assert raw.command(b"a NAMESPACE") == [b'* NAMESPACE (("" "/")) NIL NIL\r\n', b"a OK NAMESPACE completed\r\n"]


def test_select_exact_untagged_responses(raw):
    from mailcore import store

    store.deliver(MESSAGE, ["alice@example.test"])
    raw.login()
    reply = raw.command(b"a SELECT INBOX")
    info = store.folder_info(store.get_folder(raw_account_id(), "INBOX"))
    assert reply == [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
        b"* 1 EXISTS\r\n",
        b"* 1 RECENT\r\n",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] flags that can be stored\r\n",
        b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % info.uidvalidity,
        b"* OK [UIDNEXT 2] predicted next UID\r\n",
        b"a OK [READ-WRITE] SELECT completed\r\n",
    ]
    assert raw.command(b"a EXAMINE INBOX")[-1] == b"a OK [READ-ONLY] EXAMINE completed\r\n"


def raw_account_id() -> int:
    from mailcore.models import Account

    return Account.objects.get(address="alice@example.test").pk


def test_select_missing_folder_is_no_nonexistent(raw):
    raw.login()
    assert raw.command(b"a SELECT Nope") == [b"a NO [NONEXISTENT] no folder Nope\r\n"]


def test_non_ascii_folder_names_in_modified_utf7_and_utf8(raw):
    raw.login()
    assert raw.command(b"a CREATE &AMk-t&AOk-")[-1] == b"a OK CREATE completed\r\n"
    assert b'* LIST (\\HasNoChildren) "/" &AMk-t&AOk-\r\n' in raw.command(b'a LIST "" *')
    raw.command(b"a ENABLE IMAP4rev2")
    assert '* LIST (\\HasNoChildren) "/" "Été"\r\n'.encode() in raw.command(b'a LIST "" *')
