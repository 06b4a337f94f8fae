"""Raw messages stored once, content-addressed by SHA-256, through Django's storage API.

On a filesystem storage a blob is written to a temporary file, fsynced, renamed
into place and its directory fsynced, so that a reply sent after `put` returns
survives a crash. Other storages (S3 through django-storages) are durable when
their save call returns.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages

log = logging.getLogger(__name__)

# A blob younger than this is never collected: its row may be about to commit.
ORPHAN_GRACE_SECONDS = 3600


class BlobError(OSError):
    """A blob could not be written or read (disk full, unwritable, missing)."""


_deferred = threading.local()  # .paths: files written in this thread whose fsync is deferred; .dirs: directories


@contextmanager
def deferred_sync() -> Iterator[None]:
    """Within this block, blob writes in this thread skip fsync until `sync_deferred()`.

    Group commit uses it: many messages are written, then synced together,
    then one database transaction commits them all.
    """
    _deferred.paths = []
    _deferred.dirs = []
    try:
        yield
    finally:
        _deferred.paths = None
        _deferred.dirs = None


def put_unsynced(raw: bytes) -> tuple[str, tuple[str, ...]]:
    """`put` without waiting for the disk: the digest, and the paths to fsync (the file, and every
    directory that gained an entry) before a row may point to the blob (`sync_later`).

    For work done before a transaction, in parallel, whose group commit then syncs
    these paths together with its own (directories once per batch).
    """
    outer = getattr(_deferred, "paths", None), getattr(_deferred, "dirs", None)
    with deferred_sync():
        digest = put(raw)
        paths: list[Path] = _deferred.paths
        pending = [*paths, *dict.fromkeys([*(path.parent for path in paths), *_deferred.dirs])]
    _deferred.paths, _deferred.dirs = outer
    return digest, tuple(str(path) for path in pending)


def sync_later(pending: Iterable[str]) -> None:
    """fsync `pending` (from `put_unsynced`) with this thread's deferred blobs, before its commit;
    at once when this thread defers nothing."""
    targets = [Path(path) for path in pending]
    deferred: list[Path] | None = getattr(_deferred, "dirs", None)
    if deferred is None:
        for target in targets:
            _fsync_path(target)
    else:
        deferred.extend(targets)  # synced once each, with the directories, by sync_deferred


def sync_deferred() -> None:
    """fsync every blob written under `deferred_sync()` so far, and each directory once.

    The fsyncs run side by side: the filesystem commits concurrent fsyncs
    together (ext4's journal does), so ten take little longer than one. Every
    one has finished, or the first error is raised, when this returns.
    """
    paths: list[Path] = getattr(_deferred, "paths", None) or []
    dirs: list[Path] = getattr(_deferred, "dirs", None) or []
    targets = [*paths, *dict.fromkeys([*(path.parent for path in paths), *dirs])]
    if len(targets) <= 1:
        for target in targets:
            _fsync_path(target)
    else:
        for future in [_sync_pool().submit(_fsync_path, target) for target in targets]:
            future.result()
    paths.clear()
    dirs.clear()


SYNC_THREADS = 16  # fsyncs of one batch in flight at once
_sync_executor: ThreadPoolExecutor | None = None
_sync_lock = threading.Lock()


def _sync_pool() -> ThreadPoolExecutor:
    global _sync_executor
    with _sync_lock:
        if _sync_executor is None:
            _sync_executor = ThreadPoolExecutor(max_workers=SYNC_THREADS, thread_name_prefix="fsync")
        return _sync_executor


def _fsync_path(path: Path) -> None:
    """fsync a file or a directory (its entries: a rename into it is then durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def blob_storage() -> Storage:
    return storages["mailblobs"]


def blob_name(digest: str) -> str:
    """Storage path of a digest: two levels of fan-out keep directories small."""
    return f"{digest[:2]}/{digest[2:4]}/{digest}"


def digest_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def put(raw: bytes) -> str:
    """Store `raw` durably (once per content) and return its digest."""
    digest = digest_of(raw)
    storage = blob_storage()
    name = blob_name(digest)
    try:
        if isinstance(storage, FileSystemStorage):
            _put_file(Path(storage.path(name)), raw)
        elif not storage.exists(name):
            storage.save(name, ContentFile(raw))
    except OSError as err:
        raise BlobError(f"cannot store message blob: {err.strerror or err}") from err
    return digest


def _put_file(path: Path, raw: bytes) -> None:
    deferred: list[Path] | None = getattr(_deferred, "paths", None)
    if _is_whole(path, len(raw)):
        # Refresh the age so that orphan collection cannot remove a blob a new row is about to use.
        os.utime(path)
        # Whoever wrote it may not have fsynced it yet (its own commit still to come, or failed):
        # sync it for this row too; a file with nothing unwritten costs little.
        if deferred is None:
            _fsync_path(path)
            _fsync_dir(path.parent)
        else:
            deferred.append(path)
        return
    grown = _make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            if deferred is None:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if deferred is None:
        for directory in (path.parent, *grown):
            _fsync_dir(directory)
    else:
        deferred.append(path)
        _deferred.dirs.extend(grown)


def _is_whole(path: Path, size: int) -> bool:
    """Whether the blob file is there with its full size. A file renamed into place whose fsync never
    came (a crash before its batch committed) may be shorter after the crash: it is written again."""
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _make_dirs(directory: Path) -> list[Path]:
    """Create `directory` and any missing parents; return the directories that gained an entry.

    Those must be fsynced too, or a power failure could lose a new fan-out
    directory, and with it the blob renamed into it (POSIX makes only the fsynced
    directory's own entries durable).
    """
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)  # another thread may have made it meanwhile: its entry is synced as well
    return [new.parent for new in missing]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def get(digest: str) -> bytes:
    """The raw bytes of a stored blob."""
    try:
        with blob_storage().open(blob_name(digest), "rb") as handle:
            return bytes(handle.read())
    except OSError as err:
        raise BlobError(f"message blob {digest} is unreadable: {err}") from err


def get_range(digest: str, start: int, end: int | None) -> bytes:
    """Bytes [start, end) of a blob (to its end when `end` is None), reading only that range."""
    storage = blob_storage()
    try:
        with storage.open(blob_name(digest), "rb") as handle:
            handle.seek(start)
            return bytes(handle.read() if end is None else handle.read(max(0, end - start)))
    except OSError as err:
        raise BlobError(f"message blob {digest} is unreadable: {err}") from err


def iter_blobs() -> Iterator[tuple[str, str, float]]:
    """Every stored file as (storage name, digest, age in seconds); leftover temp files included."""
    storage = blob_storage()
    now = time.time()
    for first_level in storage.listdir("")[0]:
        for second_level in storage.listdir(first_level)[0]:
            for filename in storage.listdir(f"{first_level}/{second_level}")[1]:
                name = f"{first_level}/{second_level}/{filename}"
                yield name, filename, now - storage.get_modified_time(name).timestamp()


def delete_unreferenced(referenced: Iterable[str], grace: float = ORPHAN_GRACE_SECONDS) -> list[str]:
    """Delete blobs (and temp files) not in `referenced` and older than `grace` seconds.

    Returns the storage names removed.
    """
    keep = set(referenced)
    storage = blob_storage()
    removed = []
    for name, digest, age in list(iter_blobs()):
        if digest not in keep and age >= grace:
            storage.delete(name)
            removed.append(name)
            log.info("removed orphan blob %s", name)
    return removed
