"""A certificate renewed on disk is served without a restart: runmail and its SMTP worker processes load it
again into their listening contexts (mailcore/tls.py, watch_certificates). Real process, real TLS clients."""
from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from tests.support.net import free_port
from tests.support.runmail import runmail

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HOSTNAME = "mail.example.test"


def install(ca: trustme.CA, cert_path: Path, key_path: Path) -> int:
    """Write a new certificate for HOSTNAME from `ca` where runmail reads it (key first, as certbot might);
    its serial number."""
    issued = ca.issue_cert(HOSTNAME)
    issued.private_key_pem.write_to_path(str(key_path))
    issued.cert_chain_pems[0].write_to_path(str(cert_path))
    return x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes()).serial_number


def served_serial(port: int, ca: trustme.CA) -> int:
    """The serial number of the certificate an implicit-TLS listener presents now."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with (socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
          context.wrap_socket(raw, server_hostname=HOSTNAME) as tls):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def wait_for_serial(port: int, ca: trustme.CA, serial: int, seconds: float = 15) -> int:
    deadline = time.monotonic() + seconds
    seen = served_serial(port, ca)
    while seen != serial and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = served_serial(port, ca)
    return seen


def test_a_renewed_certificate_is_served_by_smtp_workers_and_imap_without_a_restart(tmp_path):
    ca = trustme.CA()
    cert_path, key_path = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    first = install(ca, cert_path, key_path)
    env = {**os.environ, "MAIL_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1", "MAIL_HOSTNAME": HOSTNAME,
           "MAIL_TLS_CERT": str(cert_path), "MAIL_TLS_KEY": str(key_path), "MAIL_TLS_RELOAD_SECONDS": "0.2",
           "MAIL_SMTP_PROCESSES": "2", "MAIL_SUBMISSIONS_PORT": str(free_port()), "MAIL_IMAPS_PORT": str(free_port())}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
    smtps, imaps = int(env["MAIL_SUBMISSIONS_PORT"]), int(env["MAIL_IMAPS_PORT"])
    with runmail(env) as running:
        assert served_serial(smtps, ca) == first and served_serial(imaps, ca) == first
        renewed = install(ca, cert_path, key_path)
        assert wait_for_serial(imaps, ca, renewed) == renewed  # runmail's own listener
        for _ in range(6):  # the SMTP connections land on either worker process: each must have it
            assert wait_for_serial(smtps, ca, renewed) == renewed
    assert sum("reloaded: new connections get it" in line for line in running.log) >= 3  # runmail + 2 workers
