"""mailq, flushq and createdkimkey, run as real commands."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from mailcore.delivery import queue, worker
from mailcore.models import DkimKey, OutboundRecipient


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_mailq_lists_each_recipient_with_state_and_last_reply(remote):
    remote.handler.rcpt_replies["later@remote.test"] = "451 4.2.1 mailbox busy"
    message_id = queue.enqueue(b"Subject: q\r\n\r\nx\r\n", "alice@example.test", ["later@remote.test", "ok@remote.test"])
    worker.deliver_message(message_id)
    text = run("mailq")
    assert text.splitlines()[0].split()[:2] == [str(message_id), "17"]
    assert "<alice@example.test>" in text.splitlines()[0]
    assert "    later@remote.test  [deferred, 1 attempt(s) next " in text
    assert "        (451 4.2.1 mailbox busy)" in text
    assert "ok@remote.test" not in text and "ok@remote.test  [delivered" in run("mailq", "--all")


def test_mailq_on_an_empty_queue(db):
    assert run("mailq") == "Mail queue is empty\n"


def test_flushq_makes_deferred_mail_due_now(db):
    message_id = queue.enqueue(b"Subject: q\r\n\r\nx\r\n", "alice@example.test", ["a@remote.test"])
    OutboundRecipient.objects.update(state="deferred", next_attempt_at=timezone.now() + dt.timedelta(hours=1))
    assert "1 deferred recipient(s) due now; 1 waiting in total" in run("flushq")
    assert OutboundRecipient.objects.get(message_id=message_id).next_attempt_at <= timezone.now()


def test_createdkimkey_prints_the_txt_record(db):
    text = run("createdkimkey", "Example.TEST", "--selector", "s2026")
    assert text.startswith('s2026._domainkey.example.test. IN TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A')
    key = DkimKey.objects.get()
    assert (key.domain, key.selector) == ("example.test", "s2026") and "BEGIN PRIVATE KEY" in key.private_key
    with pytest.raises(CommandError, match="exists"):
        run("createdkimkey", "example.test", "--selector", "s2026")
