"""What a sender asked of delivery reports (RFC 3461), carried through the queue to the receiver or answered by us."""
from __future__ import annotations

import datetime as dt

from mailcore import store
from mailcore.delivery import queue, worker
from mailcore.dsnparams import RecipientRequest, Request
from mailcore.models import OutboundRecipient

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@example.test>\r\n\r\nHello Bob.\r\n"
)


def inbox_of(account):
    ref = store.get_folder(account.pk, "INBOX")
    return [store.read_message(ref, uid) for uid in store.uids(ref)]


def asking(notify: str, ret: str = "", envid: str = "", orcpt: str = "", to: str = "bob@remote.test") -> Request:
    return Request(ret, envid, {to: RecipientRequest(notify, orcpt)})


def test_a_receiver_that_offers_dsn_gets_the_request_and_we_report_nothing(remote, alice):
    remote.handler.dsn = True
    request = asking("SUCCESS,FAILURE", ret="FULL", envid="lunch+1 x", orcpt="rfc822;Bob@Remote.test")
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"], request=request)
    assert worker.deliver_message(message_id) == 1
    assert remote.handler.dsn_parameters == [
        "MAIL RET=FULL ENVID=lunch+2B1+20x",  # xtext again (RFC 3461 §4)
        "RCPT <bob@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob@Remote.test",
    ]
    assert inbox_of(alice) == []  # the receiver reports success now (RFC 3461 §5.2.1)


def test_a_receiver_without_dsn_makes_us_report_relayed_to_a_sender_who_asked(remote, alice):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"], request=asking("SUCCESS"))
    worker.deliver_message(message_id)
    assert remote.messages[0].mail_options == [f"SIZE={len(MESSAGE)}"]  # nothing DSN sent to it
    [report] = inbox_of(alice)
    assert b"Subject: Successful Mail Delivery Report\r\n" in report
    assert (b"Final-Recipient: rfc822; bob@remote.test\r\nAction: relayed\r\nStatus: 2.0.0\r\n"
            b"Remote-MTA: dns; mx.remote.test\r\nDiagnostic-Code: smtp; 250 2.0.0 queued\r\n") in report


def test_success_is_not_reported_unless_asked(remote, alice):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"], request=asking("FAILURE"))
    worker.deliver_message(message_id)
    assert len(remote.messages) == 1 and inbox_of(alice) == []


def test_notify_never_or_without_failure_means_no_bounce(remote, alice):
    remote.handler.rcpt_replies.update({"nobody@remote.test": "550 5.1.1 no such user",
                                        "gone@remote.test": "550 5.1.1 no such user"})
    request = Request(recipients={"nobody@remote.test": RecipientRequest("NEVER"),
                                  "gone@remote.test": RecipientRequest("SUCCESS,DELAY")})
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["nobody@remote.test", "gone@remote.test"],
                               request=request)
    worker.deliver_message(message_id)
    assert {r.state for r in OutboundRecipient.objects.filter(message_id=message_id)} == {"bounced"}
    assert inbox_of(alice) == []


def test_ret_full_returns_the_whole_message_with_the_envid_and_original_recipient(remote, alice):
    remote.handler.rcpt_replies["bob@remote.test"] = "550 5.1.1 no such user"
    request = asking("FAILURE", ret="FULL", envid="id-7", orcpt="rfc822;Bob@Remote.test")
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"], request=request)
    worker.deliver_message(message_id)
    [bounce] = inbox_of(alice)
    assert b"Original-Envelope-Id: id-7\r\n" in bounce
    assert b"Original-Recipient: rfc822;Bob@Remote.test\r\nFinal-Recipient: rfc822; bob@remote.test\r\n" in bounce
    assert b"Content-Type: message/rfc822\r\n\r\n" + MESSAGE.rstrip(b"\r\n") + b"\r\n" in bounce


def test_a_delay_is_reported_only_when_notify_allows_it(remote, alice):
    for notify in ("FAILURE", "DELAY"):  # one after the other: a run drains the domain's other due mail too
        message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"], request=asking(notify))
        row = OutboundRecipient.objects.get(message_id=message_id)
        row.message.created_at -= dt.timedelta(hours=5)
        row.message.save()
        remote.handler.data_replies = ["451 4.3.0 try later"]
        worker.deliver_message(message_id)
        assert OutboundRecipient.objects.get(message_id=message_id).state == "deferred"
    [warning] = inbox_of(alice)
    assert b"Action: delayed\r\nStatus: 4.3.0" in warning
