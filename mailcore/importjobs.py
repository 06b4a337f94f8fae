"""Import jobs (issue 8): an import started from the admin, run in the background, its progress in its row.

The ImportJob row is the truth and the worker only a runner, as for the outbound
queue: the admin commits the row queued and, on commit, wakes a worker: the
Celery task `mailcore.tasks.run_import` when a broker is configured, else
runmail's in-process import runner (`import_runner`), which also looks for
queued jobs every POLL_INTERVAL seconds, since the admin runs in another process.
Both call `run_job`, which claims the job (queued -> running in one UPDATE, so
two workers cannot both run it), runs the one importer of its kind
(`mailboxio` or `imapimport`) with a progress writer, and ends the job done or
failed with the error text. The IMAP password is cleared when the job ends.

A job is safe to run again: the importers skip what a folder already holds
(Message-ID plus digest) and the IMAP import resumes where it stopped. A job
left running by a killed worker is queued again by `retry` (the admin's Retry).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from mailcore import imapimport, mailboxio, store
from mailcore.conf import conf
from mailcore.models import ImportJob

log = logging.getLogger(__name__)

PROGRESS_EVERY = 50  # messages between two progress writes ...
PROGRESS_SECONDS = 1.0  # ... or seconds, whichever comes first
POLL_INTERVAL = 2.0  # seconds between the in-process runner's looks for queued jobs
STALE_AFTER = dt.timedelta(minutes=5)  # a running job silent this long is taken for a killed worker's
_KNOWN_ERRORS = (mailboxio.TransferError, imapimport.ImportFailed, store.StoreError, OSError)


class JobInterrupted(Exception):
    """The process running the job is stopping; the job goes back to the queue."""


class Counts(Protocol):
    """What both importers' summaries count (mailboxio.Summary, imapimport.Summary)."""

    imported: int
    skipped: int


# Starting and retrying (the admin) ----------------------------------------------------


def queue_job(job: ImportJob) -> None:
    """Save `job` queued and wake a worker once the transaction commits."""
    job.state = ImportJob.QUEUED
    job.save()
    transaction.on_commit(_waker(job.pk))


def wake(job_id: int) -> None:
    """A Celery task when a broker is configured; else runmail's import runner finds the job by polling."""
    if conf.celery_broker_url:
        from mailcore.tasks import run_import

        run_import.delay(job_id)


def retry(jobs: Iterable[ImportJob]) -> tuple[list[ImportJob], list[str]]:
    """Queue again each failed job, and each running job silent for STALE_AFTER; returns (queued, refusals)."""
    queued, refusals = [], []
    for job in jobs:
        reason = _why_not_retry(job)
        if reason:
            refusals.append(f"import #{job.pk}: {reason}")
            continue
        claimed = ImportJob.objects.filter(pk=job.pk, state=job.state, progress_at=job.progress_at)
        if claimed.update(state=ImportJob.QUEUED, error="", finished_at=None):
            transaction.on_commit(_waker(job.pk))
            queued.append(job)
    return queued, refusals


def _waker(job_id: int) -> Callable[[], None]:
    return lambda: wake(job_id)


def _why_not_retry(job: ImportJob) -> str:
    if job.state in (ImportJob.QUEUED, ImportJob.DONE):
        return f"it is {job.state}"
    if job.state == ImportJob.RUNNING and job.progress_at and timezone.now() - job.progress_at < STALE_AFTER:
        return "it is running and reported progress recently"
    if job.kind == ImportJob.IMAP and not job.imap_password:
        return "its IMAP password was cleared when it ended; start a new import"
    return ""


def progress_of(job: ImportJob) -> dict[str, object]:
    """The progress page's figures (and its JSON): state, counts, and the <progress> bar's max and value."""
    finished = job.state in (ImportJob.DONE, ImportJob.FAILED)
    return {
        "state": job.state, "finished": finished, "error": job.error, "total": job.total, "done": job.done_count,
        "imported": job.imported, "skipped": job.skipped, "failed": job.failed,
        "max": job.total or 1,
        "value": job.done_count if job.total else int(job.state == ImportJob.DONE),
        "indeterminate": not finished and not job.total,  # nothing counted yet: a bar without a value
    }


# Running ----------------------------------------------------------------------------


def run_job(job_id: int, should_stop: Callable[[], bool] = lambda: False) -> str:
    """Claim and run one queued job; returns its final state ("" when it was not queued any more)."""
    now = timezone.now()
    claim = ImportJob.objects.filter(pk=job_id, state=ImportJob.QUEUED).update(
        state=ImportJob.RUNNING, started_at=now, progress_at=now, finished_at=None, error="",
        total=0, done_count=0, imported=0, skipped=0, failed=0,
    )
    if not claim:
        return ""
    job = ImportJob.objects.get(pk=job_id)
    writer = ProgressWriter(job_id, should_stop)
    try:
        _run(job, writer)
    except JobInterrupted:
        writer.write()
        ImportJob.objects.filter(pk=job_id).update(state=ImportJob.QUEUED)
        log.info("import #%s interrupted; queued again", job_id)
        return ImportJob.QUEUED
    except _KNOWN_ERRORS as err:
        return _end(writer, ImportJob.FAILED, str(err) or type(err).__name__)
    except Exception as err:  # a crash ends the job failed, with what it said
        log.exception("import #%s crashed", job_id)
        return _end(writer, ImportJob.FAILED, f"{type(err).__name__}: {err}")
    return _end(writer, ImportJob.DONE, "")


def _run(job: ImportJob, writer: ProgressWriter) -> None:
    if job.kind == ImportJob.IMAP:
        port = job.imap_port or imapimport.DEFAULT_PORTS[job.imap_security]
        source = imapimport.Source(host=job.imap_host, port=port, username=job.imap_user,
                                   password=job.imap_password, security=job.imap_security)
        progress = imapimport.Progress(found=writer.found, handled=writer.handled)
        imap_summary = writer.counts = imapimport.Summary()
        imapimport.import_account(job.account_id, source, progress, imap_summary)
        return
    path = Path(job.path)
    if not inside_import_dirs(path):  # checked by the form too; settings may have changed since
        raise mailboxio.TransferError(f"{path} is outside the directories imports may read (MAIL_IMPORT_DIRS)")
    writer.found(mailboxio.count_source(path))
    summary = writer.counts = mailboxio.Summary()
    mailboxio.import_messages(job.account_id, mailboxio.read_source(path), writer.handled, summary)


def inside_import_dirs(path: Path) -> bool:
    """Whether `path`, with every symlink followed, lies in one of MAIL_IMPORT_DIRS (where admin imports read)."""
    real = path.resolve()
    return any(real == root or real.is_relative_to(root) for root in conf.import_dirs)


def _end(writer: ProgressWriter, state: str, error: str) -> str:
    writer.write()
    failed = max(writer.total - writer.done, 0) if state == ImportJob.FAILED else 0
    ImportJob.objects.filter(pk=writer.job_id).update(
        state=state, error=error, failed=failed, finished_at=timezone.now(), imap_password=""
    )
    log.info("import #%s %s: %d imported, %d skipped%s", writer.job_id, state, writer.counts.imported,
             writer.counts.skipped, f" ({error})" if error else "")
    return state


class ProgressWriter:
    """Counts what the importer reports and writes it into the job's row every PROGRESS_EVERY messages
    or PROGRESS_SECONDS, whichever comes first (one UPDATE, not one per message)."""

    def __init__(self, job_id: int, should_stop: Callable[[], bool]) -> None:
        self.job_id = job_id
        self.should_stop = should_stop
        self.counts: Counts = mailboxio.Summary()  # the importer's summary, counted into as it goes
        self.total = 0
        self.done = 0
        self._written_done = 0
        self._written_at = time.monotonic()

    def found(self, count: int) -> None:
        self.total += count
        self.write()

    def handled(self, count: int) -> None:
        self.done += count
        if self.done - self._written_done >= PROGRESS_EVERY or time.monotonic() - self._written_at >= PROGRESS_SECONDS:
            self.write()
        if self.should_stop():
            raise JobInterrupted

    def write(self) -> None:
        ImportJob.objects.filter(pk=self.job_id).update(
            total=max(self.total, self.done), done_count=self.done, imported=self.counts.imported,
            skipped=self.counts.skipped, progress_at=timezone.now(),
        )
        self._written_done, self._written_at = self.done, time.monotonic()


# runmail's in-process runner (no broker) ------------------------------------------------


async def import_runner() -> None:
    """Run queued jobs one at a time until cancelled; a job cut short by the stop is queued again."""
    loop = asyncio.get_running_loop()
    stopping = threading.Event()
    executor = ThreadPoolExecutor(1, thread_name_prefix="import")
    log.info("in-process import runner started")
    try:
        while True:
            try:
                job_id = await loop.run_in_executor(executor, _next_queued_in_thread)
                if job_id is not None:
                    await loop.run_in_executor(executor, _run_in_thread, job_id, stopping.is_set)
                    continue
            except Exception:  # the database away for a moment: the jobs wait in their rows
                log.exception("import runner could not look for or run a job")
            await asyncio.sleep(POLL_INTERVAL)
    finally:
        stopping.set()  # the job in the thread stops at its next message and is queued again
        executor.shutdown(wait=False, cancel_futures=True)


def queued_job_ids() -> list[int]:
    """Queued jobs, oldest first."""
    queued = ImportJob.objects.filter(state=ImportJob.QUEUED).order_by("created_at", "id")
    return list(queued.values_list("pk", flat=True))


def _next_queued_in_thread() -> int | None:
    close_old_connections()
    try:
        return next(iter(queued_job_ids()), None)
    finally:
        connections.close_all()


def _run_in_thread(job_id: int, should_stop: Callable[[], bool]) -> str:
    close_old_connections()
    try:
        return run_job(job_id, should_stop)
    finally:
        connections.close_all()
