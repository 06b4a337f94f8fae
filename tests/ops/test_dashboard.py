"""The admin mail dashboard: figures per hour from the database, charts from vendored static files only."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from django.utils import timezone

from mailcore import dashboard, store
from mailcore.delivery import queue
from mailcore.models import Message, OutboundRecipient

ROOT = Path(__file__).resolve().parents[2]
RAW = b"From: carol@remote.test\r\nSubject: hi\r\n\r\nhello\r\n"
NOW = dt.datetime(2026, 3, 2, 12, 30, tzinfo=dt.UTC)


def received_at(moment: dt.datetime) -> None:
    store.deliver(RAW, ["alice@example.test"])
    Message.objects.filter(pk=Message.objects.latest("pk").pk).update(internal_date=moment)


def queued(created: dt.datetime, state: str, left: dt.datetime | None = None) -> None:
    message_id = queue.enqueue(RAW, "alice@example.test", ["bob@remote.test"])
    OutboundRecipient.objects.filter(message_id=message_id).update(created_at=created, state=state,
                                                                   updated_at=left or created)


def test_traffic_counts_mail_in_and_out_per_hour_and_the_queue_over_time(alice):
    received_at(NOW - dt.timedelta(minutes=10))  # 12:xx
    received_at(NOW - dt.timedelta(minutes=20))  # 12:xx
    received_at(NOW - dt.timedelta(hours=3))  # 09:xx
    received_at(NOW - dt.timedelta(hours=30))  # older than a day: not shown
    sent = store.get_folder(alice.pk, "Sent")
    store.append(sent, RAW)
    Message.objects.filter(mailbox_id=sent.mailbox_id).update(internal_date=NOW)  # our own copy is not "received"
    queued(NOW - dt.timedelta(hours=2, minutes=10), OutboundRecipient.DELIVERED, left=NOW - dt.timedelta(minutes=5))
    queued(NOW - dt.timedelta(minutes=15), OutboundRecipient.DEFERRED)
    figures = dashboard.traffic(NOW)
    assert len(figures.labels) == 24 and figures.labels[-1] == "12:00" and figures.labels[0] == "13:00"
    assert figures.received[-1] == 2 and figures.received[-4] == 1 and sum(figures.received) == 3
    assert figures.sent[-3] == 1 and figures.sent[-1] == 1 and sum(figures.sent) == 2
    # At the end of 10:xx the first was waiting; at 12:30 (now) it has left and the second waits.
    assert figures.queue[-3:] == [1, 1, 1] and figures.queue[-4] == 0


def test_dashboard_page_uses_vendored_chartjs_and_no_inline_script(admin_client, alice):
    store.deliver(RAW, ["alice@example.test"])
    assert b'href="/admin/dashboard/"' in admin_client.get("/admin/").content
    page = admin_client.get("/admin/dashboard/")
    assert page.status_code == 200
    html = page.content.decode()
    scripts = re.findall(r"<script([^>]*)>", html)
    assert all("src=" in attrs or 'type="application/json"' in attrs for attrs in scripts), scripts
    assert '<script src="/static/vendor/chartjs/chart.umd.min.js" defer>' in html
    sources = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', html)
    assert sources and all(src.startswith("/") for src in sources), sources  # nothing from another host
    data = json.loads(re.search(r'id="mail-dashboard-data" type="application/json">(.*?)</script>', html).group(1))
    assert sum(data["received"]) == 1 and len(data["labels"]) == 24
    assert (ROOT / "static/vendor/chartjs/chart.umd.min.js").stat().st_size > 100_000
    assert "script-src 'self'" in page["Content-Security-Policy"]


def test_dashboard_is_for_staff_only(client, db):
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_dashboard_now_defaults_to_the_current_time(alice):
    received_at(timezone.now())
    assert dashboard.traffic().received[-1] == 1
