"""Import jobs (issue 8): the admin's "Import mail…", the job's run and progress, Retry, and the workers that run it."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections
from django.utils import timezone

from mailcore import importjobs, mailboxio
from mailcore.directory import create_account
from mailcore.models import ImportJob
from tests.imap.conftest import imap_server  # noqa: F401  (fixture, used by name)
from tests.imap.test_importimap import Peer, fill, imported
from tests.support import celery_worker, celeryqueue
from tests.transfer.test_import_export import fill as fill_account
from tests.transfer.test_import_export import snapshot
from tests.webmail.test_e2e_browser import CHROMIUM, browser, open_page, shot  # noqa: F401  (browser: a fixture)

ROOT = Path(__file__).resolve().parents[2]
START = "/admin/mailcore/importjob/start/{}/"


@pytest.fixture(autouse=True, scope="module")
def private_celery_queue() -> Iterator[str]:
    """With a broker, this module's tasks go to a queue of its own (deleted after), not to real workers'."""
    with celeryqueue.private_celery_queue("test-imports") as name:
        yield name


@pytest.fixture(autouse=True)
def imports_allowed_from_tmp(settings, tmp_path):
    """MAIL_IMPORT_DIRS: the admin may import from this test's directory only."""
    settings.MAIL_IMPORT_DIRS = [tmp_path]


@pytest.fixture
def admin_client(client, db):
    get_user_model().objects.create_superuser("admin", "admin@example.test", "admin-pw-123")
    client.login(username="admin", password="admin-pw-123")
    return client


@pytest.fixture
def exported(alice, tmp_path) -> Path:
    """alice's account (every corpus message, varied flags, three folders) exported as mbox files and a Maildir."""
    fill_account(alice)
    mailboxio.export_account(alice.pk, tmp_path / "mbox", "mbox")
    mailboxio.export_account(alice.pk, tmp_path / "maildir", "maildir")
    return tmp_path


@pytest.fixture
def copy(domain):
    return create_account("copy@example.test", "copy-secret-pw")


def new_job(account, **fields) -> ImportJob:
    job = ImportJob(account=account, **fields)
    importjobs.queue_job(job)
    return job


# The admin: action, form, permissions, pages ------------------------------------------


def test_import_action_on_one_account_opens_the_import_form(admin_client, alice):
    response = admin_client.post("/admin/mailcore/account/", {"action": "import_mail", "_selected_action": [alice.pk]})
    assert response.status_code == 302 and response["Location"] == START.format(alice.pk)
    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    assert b"It must exist and be readable by the process that runs imports" in page.content


def test_import_action_on_two_accounts_asks_for_one(admin_client, alice, bob):
    response = admin_client.post(
        "/admin/mailcore/account/", {"action": "import_mail", "_selected_action": [alice.pk, bob.pk]}, follow=True
    )
    assert b"Choose exactly one account to import mail into." in response.content
    assert ImportJob.objects.count() == 0


@pytest.mark.parametrize(
    "form, field, error",
    [
        ({"kind": "mbox", "path": "relative/old.mbox"}, "path", "Give an absolute path on the server."),
        ({"kind": "mbox", "path": "/nonexistent/old.mbox"}, "path", "/nonexistent/old.mbox does not exist on the server."),
        ({"kind": "maildir", "path": "{tmp}/old.mbox"}, "path", "{tmp}/old.mbox is not a Maildir (it has no cur/ or new/ directory)."),
        ({"kind": "mbox", "path": "{tmp}/md"}, "path", "{tmp}/md is a Maildir: choose Maildir."),
        ({"kind": "mbox", "path": "{tmp}/secret.mbox"}, "path", "{tmp}/secret.mbox is not readable by the server."),
        ({"kind": "mbox", "path": "/etc/passwd"}, "path",
         "/etc/passwd is outside the directories imports may read (MAIL_IMPORT_DIRS)."),
        ({"kind": "mbox", "path": "{tmp}/escape.mbox"}, "path",
         "{tmp}/escape.mbox is outside the directories imports may read (MAIL_IMPORT_DIRS)."),
        ({"kind": "imap", "imap_host": "127.0.0.1", "imap_user": "bob", "imap_security": "ssl"}, "imap_password",
         "Required for an IMAP import."),
        ({"kind": "imap", "imap_host": "127.0.0.1", "imap_user": "bob", "imap_password": "pw", "imap_security": "ssl",
          "imap_port": "70000"}, "imap_port", "Ensure this value is less than or equal to 65535."),
    ],
)
def test_import_form_refuses_what_cannot_be_imported(admin_client, alice, tmp_path, form, field, error):
    (tmp_path / "old.mbox").write_bytes(b"From a Mon Jan  1 00:00:00 2024\nSubject: a\n\nbody\n")
    (tmp_path / "md" / "cur").mkdir(parents=True)
    (tmp_path / "secret.mbox").write_bytes(b"")
    (tmp_path / "secret.mbox").chmod(0)
    (tmp_path / "escape.mbox").symlink_to("/etc/passwd")  # a link out of the allowed directory
    if os.geteuid() == 0 and "secret" in form.get("path", ""):
        pytest.skip("root may read every file")
    data = {"imap_security": "ssl", **{k: v.replace("{tmp}", str(tmp_path)) for k, v in form.items()}}
    response = admin_client.post(START.format(alice.pk), data)
    assert response.status_code == 200
    assert response.context["form"].errors == {field: [error.replace("{tmp}", str(tmp_path))]}
    assert ImportJob.objects.count() == 0


def test_valid_form_queues_the_job_and_shows_its_progress_page(admin_client, alice, tmp_path):
    (tmp_path / "old.mbox").write_bytes(b"From a Mon Jan  1 00:00:00 2024\nSubject: a\n\nbody\n")
    response = admin_client.post(START.format(alice.pk), {"kind": "mbox", "path": str(tmp_path / "old.mbox"),
                                                          "imap_security": "ssl"}, follow=True)
    job = ImportJob.objects.get()
    assert (job.account, job.kind, job.path, job.state) == (alice, "mbox", str(tmp_path / "old.mbox"), "queued")
    progress = f"/admin/mailcore/importjob/{job.pk}/progress/"
    assert response.redirect_chain == [(progress, 302)]
    page = response.content.decode()
    assert f'Import #{job.pk} into Alice@example.test queued: <a href="{progress}">follow its progress</a>.' in page
    assert '<progress id="import-bar" max="1"></progress>' in page  # nothing counted yet: no value
    assert 'src="/static/admin/import-progress.js"' in page and "<script>" not in page
    assert "script-src 'self'" in response["Content-Security-Policy"]
    figures = admin_client.get(f"/admin/mailcore/importjob/{job.pk}/progress.json").json()
    assert figures == {"state": "queued", "finished": False, "error": "", "total": 0, "done": 0, "imported": 0,
                       "skipped": 0, "failed": 0, "max": 1, "value": 0, "indeterminate": True}
    listing = admin_client.get("/admin/mailcore/importjob/").content.decode()
    assert f'<a href="{progress}">progress page</a>' in listing


def test_imap_form_keeps_the_password_only_in_the_job_and_never_shows_it(admin_client, alice):
    admin_client.post(START.format(alice.pk), {"kind": "imap", "imap_host": "imap.old.test", "imap_security": "starttls",
                                               "imap_user": "alice", "imap_password": "old-secret-pw"})
    job = ImportJob.objects.get()
    assert (job.imap_host, job.imap_port, job.imap_security, job.imap_password) == (
        "imap.old.test", 143, "starttls", "old-secret-pw")
    for url in (f"/admin/mailcore/importjob/{job.pk}/change/", f"/admin/mailcore/importjob/{job.pk}/progress/",
                f"/admin/mailcore/importjob/{job.pk}/progress.json", "/admin/mailcore/importjob/"):
        response = admin_client.get(url)
        assert response.status_code == 200 and b"old-secret-pw" not in response.content


def test_import_pages_are_for_staff_with_permission_only(client, alice, tmp_path):
    job = ImportJob.objects.create(account=alice, kind="mbox", path=str(tmp_path))
    urls = [START.format(alice.pk), f"/admin/mailcore/importjob/{job.pk}/progress/",
            f"/admin/mailcore/importjob/{job.pk}/progress.json"]
    for url in urls:  # anonymous: to the admin login
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    user = get_user_model().objects.create_user("mallory", "m@example.test", "mallory-pw-1")
    client.login(username="mallory", password="mallory-pw-1")
    for url in urls:  # a user who is not staff: to the admin login too
        assert client.get(url)["Location"].startswith("/admin/login/")
    user.is_staff = True
    user.save()
    for url in urls:  # staff without the import job permissions: forbidden
        assert client.get(url).status_code == 403
    assert client.post(START.format(alice.pk), {"kind": "mbox", "path": str(tmp_path)}).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_importjob"))
    assert [client.get(url).status_code for url in urls] == [403, 200, 200]
    user.user_permissions.add(Permission.objects.get(codename="add_importjob"))
    assert client.get(urls[0]).status_code == 200
    assert ImportJob.objects.count() == 1


# Running a job -------------------------------------------------------------------------


def test_mbox_job_imports_every_message_with_its_flags_and_a_rerun_skips_them(exported, alice, copy):
    job = new_job(copy, kind="mbox", path=str(exported / "mbox"))
    assert importjobs.run_job(job.pk) == "done"
    job.refresh_from_db()
    assert (job.state, job.total, job.done_count, job.imported, job.skipped, job.failed, job.error) == (
        "done", 104, 104, 104, 0, 0, "")
    assert job.started_at and job.progress_at and job.finished_at
    assert snapshot(copy) == snapshot(alice, line_ended=True)
    again = new_job(copy, kind="mbox", path=str(exported / "mbox" / "INBOX.mbox"))
    assert importjobs.run_job(again.pk) == "done"
    again.refresh_from_db()
    assert (again.total, again.done_count, again.imported, again.skipped) == (35, 35, 0, 35)
    assert importjobs.run_job(again.pk) == ""  # done: a second task for it does nothing


def test_progress_is_written_into_the_row_every_fifty_messages(exported, copy, monkeypatch):
    monkeypatch.setattr(importjobs, "PROGRESS_SECONDS", 3600.0)  # only the message count triggers a write
    job = new_job(copy, kind="maildir", path=str(exported / "maildir"))
    seen: list[tuple[int, int, int]] = []

    def look() -> bool:  # called after each message: what an admin polling the row would see now
        seen.append(ImportJob.objects.filter(pk=job.pk).values_list("total", "done_count", "imported").get())
        return False

    assert importjobs.run_job(job.pk, look) == "done"
    assert len(seen) == 104 and set(seen) == {(104, 0, 0), (104, 50, 50), (104, 100, 100)}
    assert seen[48:51] == [(104, 0, 0), (104, 50, 50), (104, 50, 50)]


def test_job_stopped_by_its_process_is_queued_again_and_resumes_without_duplicates(exported, alice, copy):
    job = new_job(copy, kind="maildir", path=str(exported / "maildir"))
    handled = iter(range(1, 1000))
    assert importjobs.run_job(job.pk, lambda: next(handled) >= 30) == "queued"
    job.refresh_from_db()
    assert (job.state, job.done_count, job.imported) == ("queued", 30, 30)
    assert importjobs.run_job(job.pk) == "done"
    job.refresh_from_db()
    assert (job.total, job.done_count, job.imported, job.skipped) == (104, 104, 74, 30)
    assert snapshot(copy) == snapshot(alice)


def test_crashing_job_ends_failed_with_the_error_and_what_it_did_not_import(admin_client, exported, copy):
    copy.quota_bytes = 200_000
    copy.save()
    job = new_job(copy, kind="maildir", path=str(exported / "maildir"))
    assert importjobs.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.error == "mailbox is over quota" and job.finished_at
    assert job.total == 104 and 0 < job.imported == job.done_count < 104 and job.failed == 104 - job.done_count
    page = admin_client.get(f"/admin/mailcore/importjob/{job.pk}/progress/").content.decode()
    assert f'<progress id="import-bar"\n     max="104" value="{job.done_count}"></progress>' in page
    assert '<div id="import-error"><p class="errornote" data-field="error">mailbox is over quota</p></div>' in page
    assert 'data-finished="true"' in page  # the script has nothing to poll
    gone = new_job(copy, kind="mbox", path=str(exported / "vanished.mbox"))
    assert importjobs.run_job(gone.pk) == "failed"
    gone.refresh_from_db()
    assert gone.error == f"{exported / 'vanished.mbox'} is neither an mbox file nor a Maildir"


def test_a_job_outside_the_import_directories_fails_without_reading(copy, settings, tmp_path):
    """MAIL_IMPORT_DIRS is checked again when the job runs (the settings may have changed since the form)."""
    (tmp_path / "old.mbox").write_bytes(b"From a Mon Jan  1 00:00:00 2024\nSubject: a\n\nbody\n")
    job = new_job(copy, kind="mbox", path=str(tmp_path / "old.mbox"))
    settings.MAIL_IMPORT_DIRS = [tmp_path / "elsewhere"]
    assert importjobs.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.error == f"{tmp_path / 'old.mbox'} is outside the directories imports may read (MAIL_IMPORT_DIRS)"
    assert (job.total, job.imported) == (0, 0)


def test_retry_requeues_failed_and_stalled_jobs_only(admin_client, exported, copy):
    failed = ImportJob.objects.create(account=copy, kind="maildir", path=str(exported / "maildir"), state="failed",
                                      error="mailbox is over quota")
    long_ago = timezone.now() - importjobs.STALE_AFTER - dt.timedelta(seconds=1)
    stalled = ImportJob.objects.create(account=copy, kind="maildir", path=str(exported / "maildir"),
                                       state="running", progress_at=long_ago)
    live = ImportJob.objects.create(account=copy, kind="mbox", path=str(exported / "mbox"), state="running",
                                    progress_at=timezone.now())
    done = ImportJob.objects.create(account=copy, kind="mbox", path=str(exported / "mbox"), state="done")
    cleared = ImportJob.objects.create(account=copy, kind="imap", imap_host="h", imap_user="u", state="failed")
    response = admin_client.post("/admin/mailcore/importjob/", {
        "action": "retry", "_selected_action": [j.pk for j in (failed, stalled, live, done, cleared)]}, follow=True)
    page = response.content.decode()
    assert "2 import job(s) queued again." in page
    assert f"Not retried: import #{live.pk}: it is running and reported progress recently." in page
    assert f"Not retried: import #{done.pk}: it is done." in page
    assert (f"Not retried: import #{cleared.pk}: its IMAP password was cleared when it ended; start a new import."
            in page)
    states = dict(ImportJob.objects.values_list("pk", "state"))
    assert [states[j.pk] for j in (failed, stalled, live, done, cleared)] == [
        "queued", "queued", "running", "done", "failed"]
    assert importjobs.run_job(stalled.pk) == "done" and importjobs.run_job(failed.pk) == "done"
    assert ImportJob.objects.get(pk=failed.pk).skipped == 104  # the stalled one's run imported them first


@pytest.mark.skipif(bool(django_settings.CELERY_BROKER_URL), reason="with a broker the sweep sends real tasks")
def test_a_lost_wake_up_is_recovered_by_the_beat_sweep(exported, copy):
    from mailcore.tasks import sweep_imports

    job = ImportJob.objects.create(account=copy, kind="maildir", path=str(exported / "maildir"))  # never woken
    assert sweep_imports() == 1  # no broker: Celery runs the task it sends at once (eager)
    job.refresh_from_db()
    assert (job.state, job.imported) == ("done", 104)
    assert sweep_imports() == 0


@pytest.mark.django_db(transaction=True)
def test_runmail_import_runner_runs_queued_jobs_without_a_broker(exported, alice, copy, settings):
    settings.CELERY_BROKER_URL = ""
    first = new_job(copy, kind="maildir", path=str(exported / "maildir"))
    second = new_job(copy, kind="maildir", path=str(exported / "maildir"))

    async def scenario() -> None:
        runner = asyncio.create_task(importjobs.import_runner())
        try:
            for _ in range(600):
                states = await asyncio.to_thread(_states, [first.pk, second.pk])
                if states == ["done", "done"]:
                    return
                await asyncio.sleep(0.05)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(scenario())
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, first.imported, first.skipped) == ("done", 104, 0)
    assert (second.state, second.imported, second.skipped) == ("done", 0, 104)
    assert snapshot(copy) == snapshot(alice)


def _states(ids: list[int]) -> list[str]:
    try:
        states = dict(ImportJob.objects.filter(pk__in=ids).values_list("pk", "state"))
        return [states[i] for i in ids]
    finally:
        connections.close_all()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_runmail_process_runs_a_job_the_admin_process_queued(exported, alice, copy, blob_dir):
    env = celery_worker.worker_environment(blob_dir, "unused", MAIL_IMPORT_DIRS=str(exported))
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    for name in ("SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "POP3", "POP3S"):
        env[f"MAIL_{name}_PORT"] = "0"  # listeners off: only the background jobs run
    process = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runmail"], cwd=ROOT, env=env)
    try:
        job = new_job(copy, kind="maildir", path=str(exported / "maildir"))  # no wake-up can reach runmail
        assert _wait_until_finished(job.pk) == "done"
        job.refresh_from_db()
        assert (job.total, job.imported, job.error) == (104, 104, "")
        assert snapshot(copy) == snapshot(alice)
    finally:
        process.terminate()
        process.wait(20)
    assert process.returncode == 0


def _wait_until_finished(job_id: int, seconds: float = 90) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = ImportJob.objects.get(pk=job_id).state
        if state in ("done", "failed"):
            return state
        time.sleep(0.1)
    return ImportJob.objects.get(pk=job_id).state


# IMAP jobs, against our own IMAP server on loopback ------------------------------------


@pytest.fixture
def ours(imap_server, alice, bob) -> Peer:  # noqa: F811
    return Peer(imap_server.port, "bob@example.test", "bob-secret-pw", "/")


def imap_job(account, peer: Peer, **fields) -> ImportJob:
    defaults = {"imap_host": "127.0.0.1", "imap_port": peer.port, "imap_security": "plain",
                "imap_user": peer.user, "imap_password": peer.password}
    return new_job(account, kind="imap", **{**defaults, **fields})


def test_imap_job_imports_every_folder_and_clears_the_password(ours, alice):
    expected = fill(ours)
    job = imap_job(alice, ours)
    assert importjobs.run_job(job.pk) == "done"
    job.refresh_from_db()
    assert (job.total, job.done_count, job.imported, job.skipped, job.imap_password) == (12, 12, 12, 0, "")
    assert imported(alice) == expected
    again = imap_job(alice, ours)
    assert importjobs.run_job(again.pk) == "done"
    again.refresh_from_db()
    assert (again.total, again.imported, again.imap_password) == (0, 0, "")  # resumed past everything
    assert imported(alice) == expected


def test_imap_job_that_cannot_verify_the_certificate_fails_with_the_reason(ours, alice):
    fill(ours, 2)
    job = imap_job(alice, ours, imap_security="starttls")
    assert importjobs.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.error.startswith(f"127.0.0.1:{ours.port}: ") and "CERTIFICATE_VERIFY_FAILED" in job.error
    assert (job.imported, job.failed, job.imap_password) == (0, 0, "")
    wrong = imap_job(alice, ours, imap_password="not-the-password")
    assert importjobs.run_job(wrong.pk) == "failed"
    assert ImportJob.objects.get(pk=wrong.pk).error.startswith(f"127.0.0.1:{ours.port}: ")
    assert all(not rows for rows in imported(alice).values())


# A real Celery worker (CI's PostgreSQL + Redis pass) -------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not django_settings.CELERY_BROKER_URL, reason="needs CELERY_BROKER_URL (CI sets Redis)")
@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_runs_an_import_job_to_done(exported, alice, copy, blob_dir, private_celery_queue):
    with celery_worker.celery_worker(blob_dir, MAIL_IMPORT_DIRS=str(exported)):  # on private_celery_queue, this module's default queue
        job = new_job(copy, kind="maildir", path=str(exported / "maildir"))  # committed: the task is sent now
        assert _wait_until_finished(job.pk) == "done"
        job.refresh_from_db()
        assert (job.state, job.total, job.done_count, job.imported, job.error) == ("done", 104, 104, 104, "")
        assert snapshot(copy) == snapshot(alice)



# The progress page in a real browser ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed (make deps-debian)")
def test_admin_starts_an_import_and_watches_its_progress_in_chromium(live_server, browser, exported, copy):  # noqa: F811
    get_user_model().objects.create_superuser("admin", "admin@example.test", "admin-pw-123")
    base = live_server.url
    page = open_page(browser, base)
    page.goto(f"{base}/admin/login/?next=/admin/mailcore/account/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-pw-123")
    page.click("input[type=submit]")
    page.check(f"input[name=_selected_action][value='{copy.pk}']")
    page.select_option("select[name=action]", "import_mail")
    page.click("button[name=index]")
    page.check("input[name=kind][value=maildir]")
    page.fill("#id_path", str(exported / "maildir"))
    shot(page, "admin-import-form")
    page.click("input[value='Start the import']")
    page.wait_for_selector("#import-progress")
    assert page.text_content("[data-field=state]") == "queued"
    assert page.evaluate("document.getElementById('import-bar').hasAttribute('value')") is False
    job = ImportJob.objects.get()
    worker = threading.Thread(target=_run_in_thread, args=(job.pk,))
    worker.start()
    worker.join(60)
    page.wait_for_selector("[data-field=state]:text-is('done')")  # the script polled the JSON until the end
    bar = page.evaluate("[document.getElementById('import-bar').value, document.getElementById('import-bar').max]")
    assert bar == [104, 104]
    assert [page.text_content(f"[data-field={name}]") for name in ("done", "total", "imported", "skipped")] == [
        "104", "104", "104", "0"]
    assert page.is_hidden("[data-field=error]")
    shot(page, "admin-import-progress")
    assert page.csp_errors == [] and page.blocked == []


def _run_in_thread(job_id: int) -> None:
    try:
        importjobs.run_job(job_id)
    finally:
        connections.close_all()
