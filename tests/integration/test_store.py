"""The store API against the real database and a real blob directory."""
import asyncio
import os
import threading
from pathlib import Path

import pytest
from django.db import connection

from mailcore import store
from mailcore.mime import to_crlf
from mailcore.models import Message
from mailcore.store import aio, blobs
from tests.conftest import CORPUS_DIR, corpus_files

MESSAGE = b"From: carol@elsewhere.test\nTo: alice@example.test\nSubject: Hello\n\nHi Alice.\n"


def inbox(account):
    return store.get_folder(account.pk, "INBOX")


def test_deliver_stores_crlf_bytes_once_and_assigns_uids(alice, bob):
    report = store.deliver(MESSAGE, ["alice@example.test", "bob@example.test"])
    assert report.all_delivered and set(report.delivered) == {"alice@example.test", "bob@example.test"}
    for account in (alice, bob):
        [info] = store.fetch(inbox(account))
        assert info.uid == 1 and info.flags == () and info.subject == "Hello"
        assert store.read_message(inbox(account), 1) == MESSAGE.replace(b"\n", b"\r\n")
    assert len({m.blob for m in Message.objects.all()}) == 1


def test_unknown_and_remote_recipients_are_reported(alice):
    store.deliver(MESSAGE, ["alice@example.test"])
    from mailcore.directory import create_alias

    create_alias("fwd@example.test", ["someone@elsewhere.test"])
    report = store.deliver(MESSAGE, ["nobody@example.test", "fwd@example.test", "bad address"])
    assert report.unknown == ["nobody@example.test", "bad address"]
    assert report.remote == ["someone@elsewhere.test"]
    assert report.delivered == {}


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p.relative_to(CORPUS_DIR)))
def test_corpus_round_trips_byte_exact_after_crlf(alice, path):
    raw = path.read_bytes()
    appended = store.append(inbox(alice), raw)
    stored = store.read_message(inbox(alice), appended.uid)
    assert stored == raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    [info] = store.fetch(inbox(alice), [appended.uid])
    assert info.size == len(stored)


def test_append_with_flags_and_date(alice):
    import datetime as dt

    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    appended = store.append(store.get_folder(alice.pk, "Drafts"), MESSAGE, ["\\Draft", "\\seen", "$Label1"], when)
    [info] = store.fetch(store.get_folder(alice.pk, "Drafts"))
    assert appended.uid == 1 and appended.uidvalidity == store.get_folder(alice.pk, "Drafts").uidvalidity
    assert info.flags == ("\\Seen", "\\Draft", "$Label1") and info.internal_date == when


def test_flags_add_remove_replace_and_modseq(alice):
    ref = inbox(alice)
    store.deliver(MESSAGE, ["alice@example.test"])
    store.deliver(MESSAGE, ["alice@example.test"])
    before = store.folder_info(ref).highestmodseq
    result = store.store_flags(ref, [1, 2], ["\\Seen", "work"], store.FLAG_ADD)
    assert [(c.uid, c.flags) for c in result.changed] == [(1, ("\\Seen", "work")), (2, ("\\Seen", "work"))]
    assert result.changed[0].modseq == before + 1 == store.folder_info(ref).highestmodseq
    assert store.store_flags(ref, [1], ["\\Seen"], store.FLAG_ADD).changed == []  # no change, no MODSEQ
    store.store_flags(ref, [1], ["work"], store.FLAG_REMOVE)
    store.store_flags(ref, [2], ["\\Flagged"], store.FLAG_REPLACE)
    assert [m.flags for m in store.fetch(ref)] == [("\\Seen",), ("\\Flagged",)]


def test_unchangedsince_reports_modified_messages(alice):
    ref = inbox(alice)
    store.deliver(MESSAGE, ["alice@example.test"])
    store.deliver(MESSAGE, ["alice@example.test"])
    modseq_of_2 = store.fetch(ref, [2])[0].modseq
    store.store_flags(ref, [2], ["\\Seen"], store.FLAG_ADD)
    result = store.store_flags(ref, [1, 2], ["\\Flagged"], store.FLAG_ADD, unchanged_since=modseq_of_2)
    assert result.modified == [2] and [c.uid for c in result.changed] == [1]


def test_copy_move_expunge_and_tombstones(alice):
    ref, archive = inbox(alice), store.get_folder(alice.pk, "Archive")
    for _ in range(3):
        store.deliver(MESSAGE, ["alice@example.test"])
    assert store.copy(ref, [1, 3], archive) == [(1, 1), (3, 2)]
    assert store.move(ref, [2], archive) == [(2, 3)]
    assert store.uids(ref) == [1, 3] and store.uids(archive) == [1, 2, 3]
    modseq = store.folder_info(ref).highestmodseq
    store.store_flags(ref, [3], ["\\Deleted"], store.FLAG_ADD)
    assert store.expunge(ref) == [3]
    assert store.uids(ref) == [1]
    assert store.expunged_since(ref, 0) == [2, 3] and store.expunged_since(ref, modseq) == [3]
    store.deliver(MESSAGE, ["alice@example.test"])
    assert store.uids(ref) == [1, 4]  # UIDs are never reused
    assert [m.uid for m in store.fetch_by_sequence(ref, 2, 2)] == [4]


def test_quota_is_a_temporary_failure_and_counts_usage(domain):
    from mailcore.directory import create_account

    size = len(MESSAGE.replace(b"\n", b"\r\n"))
    carol = create_account("carol@example.test", "carol-secret-pw", quota_bytes=size * 2)
    assert store.deliver(MESSAGE, ["carol@example.test"]).all_delivered
    assert store.deliver(MESSAGE, ["carol@example.test"]).all_delivered
    report = store.deliver(MESSAGE, ["carol@example.test"])
    assert report.over_quota == ["carol@example.test"] and report.delivered == {}
    assert store.quota(carol.pk) == (size * 2, size * 2)
    with pytest.raises(store.OverQuota) as caught:
        store.append(store.get_folder(carol.pk, "Drafts"), MESSAGE)
    assert caught.value.temporary
    store.store_flags(inbox(carol), [1], ["\\Deleted"], store.FLAG_ADD)
    store.expunge(inbox(carol))
    assert store.quota(carol.pk) == (size, size * 2)


def test_folders_create_rename_delete(alice):
    store.create_folder(alice.pk, "Projects/2024/Q1")
    names = [f.name for f in store.list_folders(alice.pk)]
    assert {"Projects", "Projects/2024", "Projects/2024/Q1"} <= set(names) and names[0] == "INBOX"
    store.rename_folder(alice.pk, "Projects", "Work")
    names = {f.name for f in store.list_folders(alice.pk)}
    assert {"Work", "Work/2024", "Work/2024/Q1"} <= names and "Projects" not in names
    with pytest.raises(store.FolderExists):
        store.create_folder(alice.pk, "Work")
    with pytest.raises(store.FolderNotAllowed):
        store.delete_folder(alice.pk, "inbox")
    with pytest.raises(store.FolderNotAllowed):
        store.rename_folder(alice.pk, "Work", "Work/inside")
    store.delete_folder(alice.pk, "Work/2024")
    assert "Work/2024" not in {f.name for f in store.list_folders(alice.pk)}


@pytest.mark.parametrize("name", ["", "a//b", "/lead", "trail/", "a/../b", "%", "x*", "tab\there", ".."])
def test_bad_folder_names_are_refused(alice, name):
    with pytest.raises(store.InvalidFolderName):
        store.create_folder(alice.pk, name)


def test_recreated_folder_gets_a_new_uidvalidity(alice):
    first = store.create_folder(alice.pk, "Temp")
    store.delete_folder(alice.pk, "Temp")
    second = store.create_folder(alice.pk, "Temp")
    assert second.uidvalidity > first.uidvalidity


def test_renaming_inbox_moves_its_mail_and_leaves_it_empty(alice):
    store.deliver(MESSAGE, ["alice@example.test"])
    store.rename_folder(alice.pk, "INBOX", "Old")
    assert store.uids(inbox(alice)) == []
    assert len(store.uids(store.get_folder(alice.pk, "Old"))) == 1


def test_folders_of_another_account_are_out_of_reach(alice, bob):
    store.deliver(MESSAGE, ["bob@example.test"])
    bob_inbox = inbox(bob)
    forged = store.FolderRef(alice.pk, bob_inbox.mailbox_id, "INBOX", bob_inbox.uidvalidity)
    with pytest.raises(store.NoSuchFolder):
        store.fetch(forged)
    with pytest.raises(store.NoSuchFolder):
        store.read_message(forged, 1)


def test_threads_join_replies(alice):
    store.deliver(b"Message-ID: <root@x.test>\r\nSubject: a\r\n\r\n.", ["alice@example.test"])
    store.deliver(b"Message-ID: <r1@x.test>\r\nIn-Reply-To: <root@x.test>\r\n\r\n.", ["alice@example.test"])
    store.deliver(b"Message-ID: <other@x.test>\r\n\r\n.", ["alice@example.test"])
    threads = [m.thread_id for m in store.fetch(inbox(alice))]
    assert threads[0] == threads[1] != threads[2]


def test_unwritable_blob_storage_is_a_storage_failure_with_no_rows(alice, blob_dir):
    if os.geteuid() == 0:
        # root ignores directory permissions: make the blob path a file instead.
        blob_dir.parent.mkdir(parents=True, exist_ok=True)
        blob_dir.write_bytes(b"not a directory")
    else:
        blob_dir.mkdir(parents=True)
        blob_dir.chmod(0o500)
    with pytest.raises(store.StorageFailure) as caught:
        store.deliver(MESSAGE, ["alice@example.test"])
    assert caught.value.temporary
    assert Message.objects.count() == 0


@pytest.mark.django_db(transaction=True)  # deliver runs in a transaction of its own, as in production
def test_failed_commit_leaves_an_orphan_that_collection_removes(alice, blob_dir, monkeypatch):
    from mailcore.store import messages

    def broken_thread(*args):
        raise RuntimeError("database went away")

    monkeypatch.setattr(messages, "_thread_of", broken_thread)
    with pytest.raises(RuntimeError):
        store.deliver(MESSAGE, ["alice@example.test"])
    assert Message.objects.count() == 0
    assert len(list(blobs.iter_blobs())) == 1
    assert store.collect_orphan_blobs(grace=3600) == []  # too young: may be about to be used
    assert len(store.collect_orphan_blobs(grace=0)) == 1
    assert list(blobs.iter_blobs()) == []


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_deliveries_get_distinct_ascending_uids(alice):
    errors = []
    barrier = threading.Barrier(20)

    def deliver(n):
        try:
            barrier.wait()
            store.deliver(MESSAGE + str(n).encode(), ["alice@example.test"])
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    uids = list(Message.objects.filter(mailbox__account=alice).order_by("id").values_list("uid", flat=True))
    assert sorted(uids) == list(range(1, 21))
    assert uids == sorted(uids)  # rows committed in UID order: UIDs ascend with insertion
    assert store.folder_info(inbox(alice)).uidnext == 21


@pytest.mark.django_db(transaction=True)
def test_change_events_reach_async_subscribers(alice):
    ref = inbox(alice)

    async def scenario():
        subscription = store.hub.subscribe(alice.pk, ref.mailbox_id)
        bridge = None
        if os.environ.get("REDIS_URL"):
            ready = asyncio.Event()
            bridge = asyncio.create_task(store.hub.redis_bridge(ready))
            await asyncio.wait_for(ready.wait(), 5)
        try:
            await aio.run(store.deliver, MESSAGE, ["alice@example.test"])
            new = await asyncio.wait_for(subscription.get(), 5)
            await aio.run(store.store_flags, ref, [1], ["\\Seen"], store.FLAG_ADD)
            flags = await asyncio.wait_for(subscription.get(), 5)
            return new, flags
        finally:
            subscription.close()
            if bridge:
                bridge.cancel()
            aio.shutdown()

    new, flags = asyncio.run(scenario())
    assert (new.kind, new.uids, new.mailbox_id) == ("new", (1,), ref.mailbox_id)
    assert (flags.kind, flags.uids) == ("flags", (1,)) and flags.modseq > new.modseq


def test_async_boundary_refuses_non_store_functions():
    with pytest.raises(TypeError):
        asyncio.run(aio.run(print, "x"))


@pytest.mark.django_db(transaction=True)
def test_group_commit_batches_concurrent_writes_and_isolates_a_failure(alice, monkeypatch):
    """run_durable: concurrent deliveries share commits; a failing call fails alone."""
    ref = inbox(alice)
    gone = store.FolderRef(alice.pk, 10**9, "Gone", 1)
    batch_sizes = []
    real_run_batch = aio._run_batch

    def observed(jobs, relaxed=False):
        batch_sizes.append(len(jobs))
        real_run_batch(jobs, relaxed)

    monkeypatch.setattr(aio, "_run_batch", observed)

    async def scenario():
        calls = [aio.run_durable(store.deliver, MESSAGE + str(n).encode(), ["alice@example.test"]) for n in range(30)]
        calls.append(aio.run_durable(store.append, gone, MESSAGE))
        try:
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            aio.shutdown()

    results = asyncio.run(scenario())
    assert all(r.all_delivered for r in results[:30])
    assert isinstance(results[30], store.NoSuchFolder)
    assert store.uids(ref) == list(range(1, 31))
    assert sum(batch_sizes) == 31 and len(batch_sizes) < 31  # some calls shared a commit
    bodies = {store.read_message(ref, uid).rsplit(b"\r\n", 1)[1] for uid in store.uids(ref)}
    assert bodies == {str(n).encode() for n in range(30)}


def test_folder_counters_match_the_messages_after_every_kind_of_change(alice):
    from mailcore.store.bulk import bulk_append

    inbox_ref, archive = inbox(alice), store.get_folder(alice.pk, "Archive")

    def check():
        for ref in (inbox_ref, archive):
            messages = store.fetch(ref)
            info = store.folder_info(ref)
            expected = (len(messages), sum("\\Seen" not in m.flags for m in messages), sum(m.size for m in messages))
            assert (info.messages, info.unseen, info.size) == expected
        listed = {f.name: (f.messages, f.unseen, f.size) for f in store.list_folders(alice.pk)}
        assert listed["INBOX"] == (store.folder_info(inbox_ref).messages, store.folder_info(inbox_ref).unseen,
                                   store.folder_info(inbox_ref).size)

    for n in range(4):
        store.deliver(MESSAGE + str(n).encode(), ["alice@example.test"])
    check()
    store.append(inbox_ref, MESSAGE + b"seen", ["\\Seen"])
    check()
    store.store_flags(inbox_ref, [1, 2, 5], ["\\Seen"], store.FLAG_ADD)
    check()
    store.store_flags(inbox_ref, [5], ["\\Seen"], store.FLAG_REMOVE)
    check()
    store.copy(inbox_ref, [1, 3], archive)
    check()
    store.move(inbox_ref, [2, 4], archive)
    check()
    store.store_flags(archive, [1, 2, 3], ["\\Deleted"], store.FLAG_REPLACE)
    store.expunge(archive)
    check()
    bulk_append(archive, [MESSAGE + b"b1", MESSAGE + b"b2"])
    check()



def _commit_setting():
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA synchronous")
            return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[cursor.fetchone()[0]]
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0].upper()


@pytest.mark.django_db(transaction=True)
def test_relaxed_transaction_skips_the_disk_wait_for_itself_only(alice):
    """Flag writes commit without waiting for the disk; what comes after is fully durable again."""
    from mailcore.store import sql

    ref = inbox(alice)
    uid = store.append(ref, MESSAGE).uid
    before = _commit_setting()
    assert before in ("FULL", "ON")
    with sql.relaxed_transaction():
        assert _commit_setting() == ("NORMAL" if connection.vendor == "sqlite" else "OFF")
        store.store_flags(ref, [uid], ["\\Seen"], store.FLAG_ADD)
    assert _commit_setting() == before
    assert store.fetch(ref, [uid])[0].flags == ("\\Seen",)


@pytest.mark.parametrize("deferred", [False, True], ids=["alone", "group-commit"])
def test_a_new_fan_out_directory_is_made_durable_with_the_blob(blob_dir, monkeypatch, deferred):
    """A blob renamed into a directory just created: the file, its directory and every directory
    that gained an entry are fsynced before the write counts as done (POSIX promises no more)."""
    synced: list[Path] = []
    monkeypatch.setattr(blobs, "_fsync_dir", lambda path: synced.append(Path(path)))
    monkeypatch.setattr(blobs, "_fsync_path", lambda path: synced.append(Path(path)))
    monkeypatch.setattr(blobs.os, "fsync", lambda fd: None)  # the file's own fsync (by descriptor)
    if deferred:
        with blobs.deferred_sync():
            digest = blobs.put(b"a message\r\n")
            blobs.sync_deferred()
    else:
        digest = blobs.put(b"a message\r\n")
    leaf = blob_dir / digest[:2] / digest[2:4]  # both fan-out levels are new in an empty store
    assert {leaf, leaf.parent, blob_dir} <= set(synced)


@pytest.mark.django_db(transaction=True)
def test_a_message_stored_before_its_batch_is_fsynced_by_the_batch_before_the_commit(alice, blob_dir, monkeypatch):
    """store_parsed (in the session's thread, or a worker process) writes the blob but leaves its fsyncs,
    and those of the new fan-out directories, to the group commit of deliver_stored, before its COMMIT."""
    events: list[str] = []
    real_fsync_path = blobs._fsync_path
    monkeypatch.setattr(blobs, "_fsync_path", lambda path: (events.append(f"sync {path}"), real_fsync_path(path)))
    monkeypatch.setattr(blobs, "_fsync_dir", lambda path: events.append(f"sync-dir {path}"))
    prepared = store.store_parsed(MESSAGE + b"early")
    assert events == []
    leaf = blob_dir / prepared.digest[:2] / prepared.digest[2:4]
    made = [leaf, leaf.parent, blob_dir, blob_dir.parent]  # each gained an entry (the store was not there yet)
    assert set(prepared.unsynced) == {str(leaf / prepared.digest), *map(str, made)}
    real_commit = connection.commit
    monkeypatch.setattr(connection, "commit", lambda: (events.append("COMMIT"), real_commit()))
    jobs = _jobs((store.deliver_stored, prepared, ["alice@example.test"]))
    aio._run_batch(jobs)
    assert jobs[0].error is None and jobs[0].result.all_delivered
    assert sorted(events[:-1]) == sorted(f"sync {path}" for path in prepared.unsynced)
    assert events[-1] == "COMMIT"
    assert store.read_message(inbox(alice), 1) == to_crlf(MESSAGE + b"early")


def test_a_blob_already_there_is_fsynced_again_for_the_next_row(blob_dir, monkeypatch):
    """Its writer may not have synced it yet (its batch still to come, or rolled back)."""
    first_digest, _ = blobs.put_unsynced(b"same bytes\r\n")
    synced: list[Path] = []
    monkeypatch.setattr(blobs, "_fsync_path", lambda path: synced.append(Path(path)))
    monkeypatch.setattr(blobs, "_fsync_dir", lambda path: synced.append(Path(path)))
    assert blobs.put(b"same bytes\r\n") == first_digest
    path = blob_dir / first_digest[:2] / first_digest[2:4] / first_digest
    assert synced == [path, path.parent]
    assert blobs.put_unsynced(b"same bytes\r\n") == (first_digest, (str(path), str(path.parent)))


def test_a_blob_file_left_short_by_a_crash_is_written_again(blob_dir):
    """Renamed into place, never fsynced, then a crash: the file may be empty. The same bytes stored
    again must not trust it."""
    digest, _ = blobs.put_unsynced(b"the whole message\r\n")
    path = blob_dir / digest[:2] / digest[2:4] / digest
    path.write_bytes(b"")
    assert blobs.put(b"the whole message\r\n") == digest
    assert blobs.get(digest) == b"the whole message\r\n"


@pytest.mark.django_db
def test_insert_parameters_are_what_the_orm_would_send():
    """The INSERT skips the ORM's conversion only where it is the identity; the result is the same."""
    import datetime as dt

    from mailcore.store import sql

    values = {
        "mailbox_id": 7, "uid": 42, "modseq": 9, "seen": True, "answered": False, "flagged": False, "deleted": False,
        "draft": False, "keywords": ["$Label1"], "internal_date": dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC),
        "size": 4096, "blob": "ab" * 32, "envelope": {"subject": "Grüße", "from": [["A", None, "a", "b.test"]]},
        "bodystructure": {"type": "text"}, "subject": "Grüße", "sender": "A <a@b.test>",
        "sent_date": None, "message_id": "<1@b.test>", "thread_id": None, "has_attachments": False,
    }
    fields = [Message._meta.get_field(name) for name in sql._INSERT_FIELDS]
    orm = [f.get_db_prep_save(values[f.attname], connection) for f in fields]

    def compared(value):  # psycopg's Jsonb wrapper has no equality of its own; its Int8 is an int
        return ("json", value.obj) if hasattr(value, "obj") else value

    assert [compared(v) for v in sql.insert_params(values)] == [compared(v) for v in orm]


def _jobs(*calls):
    return [aio._Job(fn, args, {}, None) for fn, *args in calls]


@pytest.mark.django_db(transaction=True)
def test_a_batch_without_failures_commits_once_without_savepoints(alice):
    from django.test.utils import CaptureQueriesContext

    jobs = _jobs(*[(store.deliver, MESSAGE + b"%d" % n, ["alice@example.test"]) for n in range(3)])
    with CaptureQueriesContext(connection) as queries:
        aio._run_batch(jobs)
    assert [job.error for job in jobs] == [None, None, None]
    assert [job.result.all_delivered for job in jobs] == [True, True, True]
    assert not [q["sql"] for q in queries if "SAVEPOINT" in q["sql"].upper()]
    assert store.uids(inbox(alice)) == [1, 2, 3]


@pytest.mark.django_db(transaction=True)
def test_a_failing_call_sends_the_batch_round_again_in_savepoints_and_every_blob_is_synced(alice, monkeypatch):
    """The all-together pass is rolled back as a whole; in the second, the failure is the call's own.
    The first pass wrote the blobs, so the second finds them there: they must still be fsynced."""
    synced: list[str] = []
    real_fsync_path = blobs._fsync_path
    monkeypatch.setattr(blobs, "_fsync_path", lambda path: (synced.append(Path(path).name), real_fsync_path(path)))
    gone = store.FolderRef(alice.pk, 10**9, "Gone", 1)
    first, second = MESSAGE + b"first", MESSAGE + b"second"
    jobs = _jobs((store.deliver, first, ["alice@example.test"]), (store.append, gone, MESSAGE + b"lost"),
                 (store.deliver, second, ["alice@example.test"]))
    aio._run_batch(jobs)
    assert jobs[0].error is None and jobs[2].error is None
    assert isinstance(jobs[1].error, store.NoSuchFolder)
    ref = inbox(alice)
    assert store.uids(ref) == [1, 2]  # the first pass's UIDs were rolled back with it
    assert [store.read_message(ref, uid).rsplit(b"\n", 1)[1] for uid in (1, 2)] == [b"first", b"second"]
    assert {blobs.digest_of(to_crlf(first)), blobs.digest_of(to_crlf(second))} <= set(synced)


@pytest.mark.django_db(transaction=True)
def test_a_call_alone_in_its_batch_gets_its_own_error_and_no_savepoint(alice):
    from django.test.utils import CaptureQueriesContext

    gone = store.FolderRef(alice.pk, 10**9, "Gone", 1)
    [ok] = _jobs((store.deliver, MESSAGE, ["alice@example.test"]))
    [failing] = _jobs((store.append, gone, MESSAGE))
    with CaptureQueriesContext(connection) as queries:
        aio._run_batch([ok])
    aio._run_batch([failing])
    assert ok.error is None and ok.result.all_delivered
    assert isinstance(failing.error, store.NoSuchFolder)
    assert not [q["sql"] for q in queries if q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))]
    assert store.uids(inbox(alice)) == [1]
