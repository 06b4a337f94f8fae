"""Operator commands as an operator runs them: real processes on a fresh database."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def fresh_manage(var: Path):
    """A manage.py runner on a fresh var/ (its own SQLite database and blobs), migrated."""
    env = {**os.environ, "MAIL_VAR_DIR": str(var), "PYTHONPATH": str(ROOT)}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MAIL_BLOB_DIR"):
        env.pop(name, None)

    def run(*args, stdin=b""):
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args], input=stdin, env=env, capture_output=True, timeout=60
        )

    assert run("migrate", "-v", "0").returncode == 0
    run.var = var
    return run


@pytest.fixture(scope="module")
def manage(tmp_path_factory):
    return fresh_manage(tmp_path_factory.mktemp("var"))


@pytest.fixture(scope="module")
def manage_with_alice(tmp_path_factory):
    """A fresh var/ of its own with example.test and alice in it, made once for the tests that use it."""
    manage = fresh_manage(tmp_path_factory.mktemp("var"))
    assert manage("createdomain", "example.test").returncode == 0
    assert manage("createmailbox", "alice@example.test", "--password", "alice-secret-pw").returncode == 0
    return manage


def test_create_domain_mailbox_alias_and_deliver(manage):
    assert manage("createdomain", "example.test").stdout == b"created domain example.test (example.test)\n"
    result = manage("createmailbox", "alice@example.test", stdin=b"alice-secret-pw\n")
    assert (result.returncode, result.stdout) == (0, b"created mailbox alice@example.test\n")
    result = manage("createalias", "abuse@example.test", "alice@example.test")
    assert result.stdout == b"created alias abuse@example.test -> alice@example.test\n"
    result = manage("deliver", "abuse@example.test", stdin=b"Subject: hi\n\nbody\n")
    assert (result.returncode, result.stdout) == (0, b"delivered to abuse@example.test (uid 1)\n")
    result = manage("createalias", "postmaster@example.test", "alice@example.test")
    assert result.stderr == b"CommandError: postmaster@example.test already exists\n"  # made with alice
    blobs = [p for p in (manage.var / "blobs").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in blobs] == [b"Subject: hi\r\n\r\nbody\r\n"]


@pytest.mark.parametrize(
    "args, stdin, reason",
    [
        (("createdomain", "not_a_domain"), b"", b"CommandError: invalid domain 'not_a_domain'\n"),
        (("createmailbox", "x@unknown.test", "--password", "pw-12345678"), b"",
         b"CommandError: domain unknown.test is not hosted here (create it first)\n"),
        (("createmailbox", "not-an-address", "--password", "pw-12345678"), b"",
         b"CommandError: 'not-an-address' is not of the form local@domain\n"),
        (("createmailbox", "y@example.test"), b"\n", b"CommandError: an empty password is not allowed\n"),
        (("createalias", "@nowhere.test", "a@example.test"), b"",
         b"CommandError: domain nowhere.test is not hosted here (create it first)\n"),
        (("deliver", "nobody@example.test"), b"Subject: x\n\n.", b"CommandError: nobody@example.test: unknown recipient\n"),
        (("deliver", "alice@example.test"), b"", b"CommandError: no message on standard input\n"),
    ],
)
def test_errors_exit_non_zero_with_one_line_reason(manage_with_alice, args, stdin, reason):
    result = manage_with_alice(*args, stdin=stdin)
    assert result.returncode != 0
    assert result.stderr == reason


def test_duplicate_domain_is_refused(manage):
    manage("createdomain", "dup.test")
    result = manage("createdomain", "DUP.test")
    assert (result.returncode, result.stderr) == (1, b"CommandError: domain dup.test already exists\n")


@pytest.mark.parametrize("command", ["createdomain", "createmailbox", "createalias", "deliver", "runmail", "gcblobs"])
def test_every_command_has_help(manage, command):
    result = manage(command, "--help")
    assert result.returncode == 0 and b"usage: manage.py " + command.encode() in result.stdout


def test_setupdemo_creates_two_logins_once(tmp_path):
    manage = fresh_manage(tmp_path)
    first = manage("setupdemo").stdout.decode()
    second = manage("setupdemo").stdout.decode()
    assert first == second
    lines = first.splitlines()
    assert lines[0] == "Demo logins (also in var/demo-logins.txt):"
    assert [line.split()[0] for line in lines[1:]] == ["admin", "alice@example.test", "bob@example.test"]


def test_full_disk_during_blob_write_is_a_clear_error_with_nothing_stored(tmp_path):
    """A file-size limit makes the blob write fail like a full disk (EFBIG instead of ENOSPC)."""
    import resource
    import signal as signals

    manage = fresh_manage(tmp_path)
    manage("createdomain", "example.test")
    manage("createmailbox", "alice@example.test", "--password", "alice-secret-pw")
    limit = (tmp_path / "db.sqlite3").stat().st_size * 4 + 1_000_000

    def limit_file_size():
        signals.signal(signals.SIGXFSZ, signals.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "MAIL_VAR_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    big = b"Subject: big\r\n\r\n" + b"x" * (limit * 2)
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "deliver", "alice@example.test"],
        input=big, env=env, capture_output=True, timeout=60, preexec_fn=limit_file_size,
    )
    assert result.returncode == 1
    assert result.stderr == b"CommandError: delivery failed: cannot store message blob: File too large\n"
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []  # the temp file is gone too
    count = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c",
         "from mailcore.models import Message; print(Message.objects.count())"],
        env=env, capture_output=True, timeout=60,
    )
    assert count.stdout.splitlines()[-1] == b"0"
