"""runmail as a real process: it starts, says it is ready, makes its TLS certificate, stops on SIGTERM."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_runmail_starts_and_stops_cleanly_on_sigterm(tmp_path):
    env = {**os.environ, "MAIL_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    # Ports chosen by the OS: the defaults may be taken by a runmail already running on this machine.
    for name in ("SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "POP3", "POP3S"):
        env[f"MAIL_{name}_PORT"] = str(free_port())
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runmail"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            if "runmail ready" in line or not line:
                break
        assert any("runmail ready" in line for line in lines), lines
        assert (tmp_path / "tls" / "selfsigned.crt").exists()
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=20)
        assert process.returncode == 0
        assert "runmail stopped" in rest
    finally:
        if process.poll() is None:
            process.kill()


def test_runmail_runs_the_webmail_outbox_and_the_delivery_and_import_runners_without_a_broker(settings):
    from mailcore import runner
    from mailcore.delivery.runner import delivery_runner
    from mailcore.importjobs import import_runner
    from mailcore.tls import watch_certificates
    from webmail.outbox import outbox_runner

    settings.CELERY_BROKER_URL = ""
    settings.REDIS_URL = ""
    assert runner.background_jobs() == [watch_certificates, delivery_runner, import_runner, outbox_runner]


def test_runmail_raises_its_open_files_limit_to_the_hard_limit(tmp_path):
    """Started with systemd's soft limit of 1024 (here 256) on open files, runmail raises it to the hard limit:
    at the soft limit every listener's accept() would fail once enough IMAP clients sit in IDLE."""
    import resource

    from tests.support.runmail import runmail

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 512:
        pytest.skip(f"the hard limit here is only {hard}")
    env = {**os.environ, "MAIL_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
    env["MAIL_IMAP_PORT"] = str(free_port())

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    with runmail(env, preexec_fn=low_soft_limit) as running:
        limits = Path(f"/proc/{running.process.pid}/limits").read_text()
    [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert line.split()[3:5] == [str(hard), str(hard)]
    assert any(f"open files limit raised from 256 to {hard}" in line for line in running.log)
