"""/metrics: access control, and counters that move when mail flows (real SMTP sessions, real delivery)."""
from __future__ import annotations

import logging
import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailcore.delivery import queue, worker
from tests.imap.conftest import imap_server  # noqa: F401 - a fixture
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = (
    b"From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: counted\r\n"
    b"Message-ID: <counted@remote.test>\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\nhello\r\n"
)
pytestmark = pytest.mark.django_db(transaction=True)  # the listeners' threads must see the test's rows
OUTBOUND = b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: out\r\n\r\nbye\r\n"


@pytest.fixture
def open_metrics(settings):
    settings.MAIL_METRICS_ALLOW = ["127.0.0.0/8"]
    return settings


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_a_token_or_an_allowed_address(client, db, settings):
    assert client.get("/metrics").status_code == 401  # nothing configured: closed
    settings.MAIL_METRICS_TOKEN = "s3cret-scrape-token"
    refused = client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")
    assert (refused.status_code, refused["WWW-Authenticate"]) == (401, 'Bearer realm="metrics"')
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 200
    settings.MAIL_METRICS_TOKEN = ""
    settings.MAIL_METRICS_ALLOW = ["10.0.0.0/8", "::1"]
    assert client.get("/metrics").status_code == 401  # the test client is 127.0.0.1
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    settings.MAIL_METRICS_ALLOW = ["not-a-network", "127.0.0.1"]
    assert client.get("/metrics").status_code == 200


def test_smtp_transactions_connections_and_auth_failures_are_counted(
    client, open_metrics, alice, mx_port, submission_port, caplog
):
    before = scrape(client)
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as smtp:
        smtp.sendmail("carol@remote.test", ["alice@example.test"], MESSAGE)
        with pytest.raises(smtplib.SMTPDataError):
            smtp.sendmail("carol@remote.test", ["alice@example.test"], b"Subject: x\r\n\r\nbare\nLF\r\n")
    with smtplib.SMTP("127.0.0.1", submission_port, timeout=10) as smtp, pytest.raises(
        smtplib.SMTPAuthenticationError
    ):
        smtp.login("alice@example.test", "wrong-password")
    after = scrape(client)
    for name, labels, delta in [
        ("mail_smtp_messages_received_total", {"listener": "mx", "result": "accepted"}, 1),
        ("mail_smtp_messages_received_total", {"listener": "mx", "result": "rejected"}, 1),
        ("mail_connections_total", {"protocol": "smtp"}, 1),
        ("mail_connections_total", {"protocol": "submission"}, 1),
        ("mail_auth_failures_total", {"protocol": "submission"}, 2),  # smtplib tries PLAIN, then LOGIN
    ]:
        assert value(after, name, **labels) - value(before, name, **labels) == delta, (name, labels)


def test_one_log_line_per_smtp_transaction_with_sender_recipients_and_reply(alice, mx_port, caplog):
    with caplog.at_level(logging.INFO), smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as smtp:
        smtp.sendmail("carol@remote.test", ["alice@example.test"], MESSAGE)
    lines = [r for r in caplog.records if getattr(r, "event", "") == "smtp.transaction"]
    assert len(lines) == 1
    record = lines[0]
    assert (record.sender, record.recipients, record.result) == ("carol@remote.test", ["alice@example.test"], "accepted")
    assert record.reply == f"250 2.0.0 Message accepted for delivery ({record.session})"
    assert record.getMessage().startswith(f"smtp.transaction session={record.session} peer=127.0.0.1 listener=mx ")
    assert not [r for r in caplog.records if "RCPT TO" in r.getMessage() and r.levelno >= logging.INFO]


def test_delivery_results_latency_and_queue_are_counted(client, open_metrics, settings, dns_server, smtp_receiver,
                                                        alice, caplog):
    dns_server.records.update({"remote.test": {"MX": ["10 mx.remote.test."]}, "mx.remote.test": {"A": ["127.0.0.1"]}})
    settings.MAIL_HOSTNAME = "mail.example.test"
    smtp_receiver.handler.rcpt_replies["nobody@remote.test"] = "550 5.1.1 no such user"
    smtp_receiver.handler.data_replies = ["250 2.0.0 ok", "451 4.3.0 try later"]
    before = scrape(client)
    delivered = queue.enqueue(OUTBOUND, "alice@example.test", ["bob@remote.test"])
    queued = scrape(client)
    assert value(queued, "mail_queue_recipients", state="queued") == 1
    assert value(queued, "mail_queue_oldest_age_seconds") >= 0
    bounced = queue.enqueue(OUTBOUND, "alice@example.test", ["nobody@remote.test"])
    deferred = queue.enqueue(OUTBOUND, "alice@example.test", ["carl@remote.test"])
    with caplog.at_level(logging.INFO):
        for message_id in (delivered, bounced, deferred):
            worker.deliver_message(message_id)
    after = scrape(client)
    for result in ("delivered", "bounced", "deferred"):
        delta = value(after, "mail_delivery_attempts_total", result=result) - value(
            before, "mail_delivery_attempts_total", result=result)
        assert delta == 1, result
    assert value(after, "mail_delivery_latency_seconds_count") - value(before, "mail_delivery_latency_seconds_count") == 1
    assert value(after, "mail_queue_recipients", state="deferred") == 1
    assert value(after, "mail_queue_recipients", state="queued") == 0
    attempts = {r.recipient: r for r in caplog.records if getattr(r, "event", "") == "delivery.attempt"}
    assert attempts["nobody@remote.test"].result == "bounced"
    assert attempts["nobody@remote.test"].reply == "550 5.1.1 no such user"
    assert (attempts["carl@remote.test"].sender, attempts["carl@remote.test"].queue) == ("alice@example.test", deferred)


@pytest.mark.slow
def test_metrics_served_by_the_web_process_count_connections_made_to_runmail(client, open_metrics, tmp_path):
    """runmail is another process: its counters reach /metrics through the shared multiprocess directory."""
    port = free_port()
    env = {**os.environ, "MAIL_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1", "MAIL_SMTP_PORT": str(port)}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    for name in ("SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "POP3", "POP3S"):
        env[f"MAIL_{name}_PORT"] = "0"
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(open_metrics.PROMETHEUS_MULTIPROC_DIR)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
    before = value(scrape(client), "mail_connections_total", protocol="smtp")
    process = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runmail"], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "runmail ready" not in (line := process.stderr.readline()):
            assert line, "runmail exited"
        for _ in range(2):
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                assert smtp.noop()[0] == 250
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert value(scrape(client), "mail_connections_total", protocol="smtp") - before == 2


def test_pop3_connections_and_failed_logins_are_counted(client, open_metrics, alice):
    import poplib

    from mailcore.auth import throttle
    from tests.pop3.conftest import ServerThread

    server = ServerThread().start()
    try:
        before = scrape(client)
        connection = poplib.POP3("127.0.0.1", server.port, timeout=10)
        connection.user("alice@example.test")
        with pytest.raises(poplib.error_proto, match=r"^b'-ERR \[AUTH\] invalid login or password'"):
            connection.pass_("wrong-password")
        connection.quit()
        after = scrape(client)
    finally:
        server.stop()
        throttle.reset("127.0.0.1")
    assert value(after, "mail_connections_total", protocol="pop3") - value(before, "mail_connections_total",
                                                                           protocol="pop3") == 1
    assert value(after, "mail_auth_failures_total", protocol="pop3") - value(before, "mail_auth_failures_total",
                                                                             protocol="pop3") == 1


def test_imap_connections_and_failed_logins_are_counted(client, open_metrics, imap_server, alice):  # noqa: F811
    import imaplib

    before = scrape(client)
    connection = imaplib.IMAP4("127.0.0.1", imap_server.port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\] invalid login or password"):
        connection.login("alice@example.test", "wrong-password")
    connection.logout()
    after = scrape(client)
    for name in ("mail_connections_total", "mail_auth_failures_total"):
        assert value(after, name, protocol="imap") - value(before, name, protocol="imap") == 1
