"""End-to-end outbound delivery: real DNS server and real SMTP receiver on loopback."""
from __future__ import annotations

import datetime as dt
import re
import ssl

import dkim
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcore import store
from mailcore.delivery import claims, queue, worker
from mailcore.delivery.client import wire_data
from mailcore.models import OutboundRecipient
from mailcore.tls import server_context
from tests.support.smtpreceiver import SMTPReceiver

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@example.test>\r\n\r\nHello Bob.\r\n.leading dot\r\n"
)


def rows(message_id):
    return list(OutboundRecipient.objects.filter(message_id=message_id).order_by("address"))


def inbox_of(account):
    ref = store.get_folder(account.pk, "INBOX")
    return [store.read_message(ref, uid) for uid in store.uids(ref)]


def test_message_is_delivered_to_the_mx_found_in_dns(remote):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    assert worker.deliver_message(message_id) == 1
    [received] = remote.messages
    assert received.sender == "alice@example.test" and received.recipients == ["bob@remote.test"]
    assert received.tls  # STARTTLS offered, so used
    assert received.data.endswith(b"Hello Bob.\r\n.leading dot\r\n")  # dot-stuffed on the wire, unstuffed by the peer
    [row] = rows(message_id)
    assert (row.state, row.attempts, row.mx_host) == ("delivered", 1, "mx.remote.test")
    assert row.last_reply == "250 2.0.0 queued"


def test_running_the_task_twice_delivers_once(remote):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    assert worker.deliver_message(message_id) == 0
    assert len(remote.messages) == 1


def test_recipients_of_one_domain_share_one_transaction(remote):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test", "carol@remote.test"])
    worker.deliver_message(message_id)
    [received] = remote.messages
    assert sorted(received.recipients) == ["bob@remote.test", "carol@remote.test"]
    assert received.mail_options == [f"SIZE={len(MESSAGE)}"]


def test_recipients_over_the_receivers_limit_go_in_the_next_transaction_at_once(remote):
    """RFC 5321 §4.5.3.1.10: a receiver taking 2 recipients per transaction answers the third 452 4.5.3; the
    rest go over the same connection straight after, not a retry delay later."""
    remote.handler.max_recipients = 2
    recipients = [f"u{n}@remote.test" for n in range(5)]
    message_id = queue.enqueue(MESSAGE, "alice@example.test", recipients)
    worker.deliver_message(message_id)
    assert [sorted(m.recipients) for m in remote.messages] == [recipients[:2], recipients[2:4], recipients[4:]]
    assert remote.sessions == 1
    assert [(r.state, r.attempts, r.last_reply) for r in rows(message_id)] == [
        ("delivered", 1, "250 2.0.0 queued")] * 5


def test_recipients_over_the_limit_wait_when_the_message_did_not_go_to_the_others(remote):
    remote.handler.max_recipients = 1
    remote.handler.data_replies = ["451 4.3.0 try later"]
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["a@remote.test", "b@remote.test"])
    worker.deliver_message(message_id)
    assert remote.messages == []
    assert [(r.state, r.last_reply) for r in rows(message_id)] == [
        ("deferred", "451 4.3.0 try later"), ("deferred", "452 4.5.3 Error: too many recipients")]


def test_one_connection_carries_several_messages_to_the_same_host(remote):
    ids = [queue.enqueue(MESSAGE, "alice@example.test", [f"u{n}@remote.test"]) for n in range(5)]
    worker.deliver_message(ids[0])
    assert len(remote.messages) == 5 and remote.sessions == 1
    assert all(r.state == "delivered" for i in ids for r in rows(i))


def test_451_defers_with_backoff_then_250_delivers_on_retry(remote):
    remote.handler.data_replies = ["451 4.3.0 try later"]
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    [row] = rows(message_id)
    assert (row.state, row.attempts, row.last_reply) == ("deferred", 1, "451 4.3.0 try later")
    wait = (row.next_attempt_at - row.updated_at).total_seconds()
    assert 60 * 0.8 - 1 <= wait <= 60 * 1.2 + 1
    assert worker.deliver_message(message_id) == 0  # not due yet
    OutboundRecipient.objects.filter(pk=row.pk).update(next_attempt_at=row.updated_at)
    assert worker.deliver_message(message_id) == 1
    [row] = rows(message_id)
    assert (row.state, row.attempts) == ("delivered", 2) and len(remote.messages) == 1


def test_550_bounces_and_a_dsn_lands_in_the_senders_inbox(remote, alice):
    remote.handler.rcpt_replies["nobody@remote.test"] = "550 5.1.1 no such user"
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["nobody@remote.test", "bob@remote.test"])
    assert worker.deliver_message(message_id) == 1
    states = {r.address: r.state for r in rows(message_id)}
    assert states == {"nobody@remote.test": "bounced", "bob@remote.test": "delivered"}
    [dsn] = inbox_of(alice)
    assert b"Content-Type: multipart/report; report-type=delivery-status" in dsn
    assert b"From: Mail Delivery System <MAILER-DAEMON@mail.example.test>" in dsn
    assert b"Final-Recipient: rfc822; nobody@remote.test\r\nAction: failed\r\nStatus: 5.1.1\r\n" in dsn
    assert b"Diagnostic-Code: smtp; 550 5.1.1 no such user" in dsn
    assert b"Remote-MTA: dns; mx.remote.test" in dsn
    assert b"Message-ID: <m1@example.test>" in dsn  # the original headers are returned
    assert b"bob@remote.test" not in dsn.split(b"message/delivery-status")[1].split(b"text/rfc822-headers")[0]


def test_552_to_rcpt_is_taken_as_temporary_and_the_others_are_delivered(remote, alice):
    """RFC 5321 §4.5.3.1.10: 552 at RCPT (historically "too many recipients") defers, it does not bounce."""
    remote.handler.rcpt_replies = {"bob@remote.test": "552 5.2.2 Mailbox full"}
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test", "carol@remote.test"])
    worker.deliver_message(message_id)
    bob, carol = rows(message_id)
    assert (bob.state, bob.last_reply) == ("deferred", "552 5.2.2 Mailbox full")
    assert carol.state == "delivered" and [m.recipients for m in remote.messages] == [["carol@remote.test"]]
    assert inbox_of(alice) == []  # no bounce


RATE_LIMITED = "421 4.7.28 Our system has detected an unusual rate of mail from your IP; try again later"


@pytest.mark.parametrize("where", ["MAIL", "RCPT", "DATA"])
def test_a_421_defers_with_the_servers_own_words_and_its_session_is_not_used_again(remote, where):
    """RFC 5321 §3.8: 421 means the server is closing the channel; its reply is what the queue keeps."""
    if where == "MAIL":
        remote.handler.mail_replies = [RATE_LIMITED]
    elif where == "RCPT":
        remote.handler.rcpt_replies = {"bob@remote.test": RATE_LIMITED}
    else:
        remote.handler.data_replies = [RATE_LIMITED]
    first = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(first)
    assert [(r.state, r.last_reply) for r in rows(first)] == [("deferred", RATE_LIMITED)]
    second = queue.enqueue(MESSAGE, "alice@example.test", ["carol@remote.test"])
    assert worker.deliver_message(second) == 1
    assert remote.sessions == 2  # a new connection for the next message


def test_a_bounce_is_never_bounced(remote):
    remote.handler.rcpt_replies["nobody@remote.test"] = "550 5.1.1 no such user"
    message_id = queue.enqueue(MESSAGE, "", ["nobody@remote.test"])
    worker.deliver_message(message_id)
    assert [r.state for r in rows(message_id)] == ["bounced"]
    assert OutboundRecipient.objects.count() == 1  # no DSN queued


def test_bounce_for_a_remote_sender_is_queued_with_null_sender(remote):
    remote.handler.rcpt_replies["nobody@remote.test"] = "550 5.1.1 no such user"
    queue.enqueue(MESSAGE, "someone@elsewhere.test", ["nobody@remote.test"])
    worker.deliver_due()
    dsn_row = OutboundRecipient.objects.get(address="someone@elsewhere.test")
    assert dsn_row.message.sender == "" and dsn_row.state == "queued"


def test_null_mx_bounces_at_once_with_5_1_10(remote, alice, dns_server):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@nullmx.test"])
    worker.deliver_message(message_id)
    [row] = rows(message_id)
    assert row.state == "bounced" and row.last_reply.startswith("556 5.1.10 ")
    assert ("nullmx.test", "A") not in dns_server.queries  # no implicit MX lookup after a null MX
    assert b"Status: 5.1.10" in inbox_of(alice)[0]


def test_nxdomain_bounces(remote, alice):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@nowhere.test"])
    worker.deliver_message(message_id)
    [row] = rows(message_id)
    assert row.state == "bounced" and row.last_reply.startswith("550 5.1.2 ")
    assert len(inbox_of(alice)) == 1


@pytest.mark.parametrize("failing_domain", ["broken.test", "slow.test"])
def test_servfail_and_timeout_defer(remote, alice, failing_domain):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", [f"bob@{failing_domain}"])
    worker.deliver_message(message_id)
    [row] = rows(message_id)
    assert row.state == "deferred" and row.last_reply.startswith("451 4.4.3 ")
    assert inbox_of(alice) == []


def test_implicit_mx_uses_the_domains_own_address(remote, dns_server):
    dns_server.records["bare.test"] = {"A": ["127.0.0.1"]}
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@bare.test"])
    assert worker.deliver_message(message_id) == 1
    assert rows(message_id)[0].mx_host == "bare.test"


def test_loopback_mx_is_refused_unless_allowed(remote, settings):
    settings.MAIL_ALLOW_PRIVATE_MX = False
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    [row] = rows(message_id)
    assert row.state == "deferred" and "no usable address" in row.last_reply and remote.messages == []


def test_next_mx_is_tried_when_the_best_refuses_connections(remote, dns_server):
    dns_server.records["remote.test"] = {"MX": ["5 dead.remote.test.", "10 mx.remote.test."]}
    dns_server.records["dead.remote.test"] = {"A": ["127.0.0.2"]}  # nothing listens there on this port
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    assert worker.deliver_message(message_id) == 1


def test_at_most_five_addresses_are_tried_and_ten_hosts_looked_up(remote, dns_server):
    """RFC 5321 §5.1 allows a limit on the addresses tried (Postfix: 5). Here five hosts refuse
    connections (nothing listens on 127.0.0.2-6), the sixth is the receiver, four more have no address:
    the attempt stops after five, and no more than ten hosts are looked up."""
    names = [f"dead{n}.remote.test" for n in range(5)] + ["mx.remote.test"] + [f"none{n}.remote.test" for n in range(6)]
    dns_server.records["remote.test"] = {"MX": [f"{10 * (n + 1)} {name}." for n, name in enumerate(names)]}
    for n in range(5):
        dns_server.records[f"dead{n}.remote.test"] = {"A": [f"127.0.0.{n + 2}"]}
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    assert worker.deliver_message(message_id) == 0
    [row] = rows(message_id)
    assert row.state == "deferred" and row.last_reply.startswith(
        f"451 4.4.1 connection to dead4.remote.test [127.0.0.6]:{remote.port} failed: ")
    assert remote.messages == []
    looked_up = [name for name, _type in dns_server.queries if name.endswith(".remote.test") and name[0] != "_"]
    assert set(looked_up) == {f"dead{n}.remote.test" for n in range(5)}  # five addresses found: enough


def test_hosts_without_addresses_count_toward_the_ten_looked_up(remote, dns_server):
    names = [f"none{n}.remote.test" for n in range(10)] + ["mx.remote.test"]
    dns_server.records["remote.test"] = {"MX": [f"{n} {name}." for n, name in enumerate(names)]}
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    assert worker.deliver_message(message_id) == 0
    [row] = rows(message_id)
    assert (row.state, row.last_reply) == ("deferred", "451 4.4.4 no usable address for any mail exchanger of remote.test")
    looked_up = {name for name, _type in dns_server.queries if name.endswith(".remote.test") and name[0] != "_"}
    assert looked_up == {f"none{n}.remote.test" for n in range(10)}


def test_expired_message_bounces_with_4_4_7(remote, alice, settings):
    remote.handler.data_replies = ["451 4.3.0 try later"]
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    old = rows(message_id)[0].message
    old.created_at -= dt.timedelta(days=6)
    old.save()
    worker.deliver_message(message_id)
    assert rows(message_id)[0].state == "expired"
    assert b"Action: failed\r\nStatus: 4.4.7" in inbox_of(alice)[0]


def test_delay_warning_goes_out_once(remote, alice):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    message = rows(message_id)[0].message
    message.created_at -= dt.timedelta(hours=5)
    message.save()
    for _ in range(2):
        remote.handler.data_replies = ["451 4.3.0 try later"]
        claims.retry_now()
        worker.deliver_message(message_id)
    [warning] = inbox_of(alice)
    assert b"Action: delayed\r\nStatus: 4.3.0" in warning and rows(message_id)[0].attempts == 2


def dkim_key_from_loopback_dns(name: bytes, timeout: float = 5) -> bytes:
    """dkimpy's key lookup, through mailcore.dns (the test's loopback DNS server)."""
    from mailcore import dns as maildns

    return maildns.txt(name.decode().rstrip("."))[0].encode()


def test_message_is_dkim_signed_and_verifies_at_the_receiver(remote, dns_server):
    from mailcore.delivery import dkim as outbound_dkim

    key = outbound_dkim.create_key("example.test", "s1")
    record = outbound_dkim.txt_record(key).split('"')[1]
    dns_server.records["s1._domainkey.example.test"] = {"TXT": [record]}
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    data = remote.messages[0].data
    assert data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test;")
    assert b" s=s1;" in data.split(b"\r\nFrom:")[0]

    assert dkim.verify(data, dnsfunc=dkim_key_from_loopback_dns)


def test_our_reports_from_the_hostname_are_signed_by_the_hosted_domain_above_it(remote, dns_server):
    """A DSN comes from MAILER-DAEMON@mail.example.test, a name with no key of its own; example.test's key
    signs it (relaxed alignment, RFC 7489 §3.1.1), so receivers applying example.test's DMARC policy take it."""
    from mailcore.delivery import dkim as outbound_dkim

    key = outbound_dkim.create_key("example.test", "s1")
    dns_server.records["s1._domainkey.example.test"] = {"TXT": [outbound_dkim.txt_record(key).split('"')[1]]}
    remote.handler.rcpt_replies["nobody@remote.test"] = "550 5.1.1 no such user"
    queue.enqueue(MESSAGE, "carol@remote.test", ["nobody@remote.test"])  # a forwarded message, say
    worker.deliver_due()
    worker.deliver_due()  # the DSN to carol@remote.test
    [dsn] = remote.messages
    assert (dsn.sender, dsn.recipients) == ("<>", ["carol@remote.test"])
    assert b"\r\nFrom: Mail Delivery System <MAILER-DAEMON@mail.example.test>\r\n" in dsn.data
    assert dsn.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test;")

    assert dkim.verify(dsn.data, dnsfunc=dkim_key_from_loopback_dns)


def test_a_hosted_subdomain_without_a_key_is_not_signed_with_its_parents(remote, dns_server):
    """Only our own host name borrows a parent's key: a domain hosted here under another's name (another
    customer's, say) sends unsigned rather than with the other's signature."""
    from mailcore.delivery import dkim as outbound_dkim
    from mailcore.directory import create_domain

    outbound_dkim.create_key("example.test", "s1")
    create_domain("team.example.test")
    queue.enqueue(MESSAGE.replace(b"alice@example.test", b"ann@team.example.test"), "ann@team.example.test",
                  ["bob@remote.test"])
    worker.deliver_due()
    [received] = remote.messages
    assert received.data.startswith(b"From: Alice <ann@team.example.test>\r\n")


def signing_selector(data: bytes) -> bytes:
    header = data.split(b"\r\nFrom:")[0]
    return header.split(b" s=")[1].split(b";")[0]


def test_a_new_dkim_key_signs_only_once_its_record_is_in_dns(remote, dns_server, monkeypatch):
    """Key rotation: the old key goes on signing until the new key's record is found in DNS (a signature by a key
    receivers cannot find fails, and DMARC with it); the domain's first key signs at once, as before."""
    from mailcore.delivery import dkim as outbound_dkim

    monkeypatch.setattr(outbound_dkim, "RECHECK_SECONDS", 0.0)  # look again at every delivery run
    old = outbound_dkim.create_key("example.test", "old")
    first = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(first)
    assert signing_selector(remote.messages[-1].data) == b"old"  # the only key: not published, signs anyway

    dns_server.records["old._domainkey.example.test"] = {"TXT": [outbound_dkim.txt_record(old).split('"')[1]]}
    new = outbound_dkim.create_key("example.test", "new")
    worker.deliver_message(queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"]))
    assert signing_selector(remote.messages[-1].data) == b"old"  # "new" is not in DNS yet
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.published_at is not None and new.published_at is None

    dns_server.records["new._domainkey.example.test"] = {"TXT": [outbound_dkim.txt_record(new).split('"')[1]]}
    worker.deliver_message(queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"]))
    assert signing_selector(remote.messages[-1].data) == b"new"
    new.refresh_from_db()
    assert new.published_at is not None


def test_a_record_with_another_public_key_does_not_count_as_published(remote, dns_server, monkeypatch):
    from mailcore.delivery import dkim as outbound_dkim

    monkeypatch.setattr(outbound_dkim, "RECHECK_SECONDS", 0.0)
    old = outbound_dkim.create_key("example.test", "old")
    dns_server.records["old._domainkey.example.test"] = {"TXT": [outbound_dkim.txt_record(old).split('"')[1]]}
    outbound_dkim.create_key("example.test", "new")
    dns_server.records["new._domainkey.example.test"] = {"TXT": ["v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"]}
    worker.deliver_message(queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"]))
    assert signing_selector(remote.messages[-1].data) == b"old"


def test_smtputf8_message_to_a_receiver_without_it_bounces_5_6_7(remote, alice, settings):
    plain = SMTPReceiver(smtputf8=False).start()
    settings.MAIL_OUTBOUND_PORT = plain.port
    try:
        raw = "From: alice@example.test\r\nSubject: h\u00e9llo\r\n\r\nx\r\n".encode()
        message_id = queue.enqueue(raw, "alice@example.test", ["bob@remote.test"])
        worker.deliver_message(message_id)
    finally:
        plain.stop()
    [row] = rows(message_id)
    assert row.state == "bounced" and row.last_reply.startswith("553 5.6.7 ") and plain.messages == []
    assert b"Status: 5.6.7" in inbox_of(alice)[0]


def test_smtputf8_message_is_sent_with_the_smtputf8_parameter(remote):
    raw = "From: alice@example.test\r\nSubject: h\u00e9llo\r\n\r\nx\r\n".encode()
    message_id = queue.enqueue(raw, "alice@example.test", ["jos\u00e9@remote.test"])
    assert worker.deliver_message(message_id) == 1
    [received] = remote.messages
    assert "SMTPUTF8" in received.mail_options and received.recipients == ["jos\u00e9@remote.test"]


def test_message_over_the_receivers_size_limit_bounces_before_data(remote, alice, settings):
    small = SMTPReceiver(size_limit=100).start()
    settings.MAIL_OUTBOUND_PORT = small.port
    try:
        message_id = queue.enqueue(MESSAGE + b"x" * 200 + b"\r\n", "alice@example.test", ["bob@remote.test"])
        worker.deliver_message(message_id)
    finally:
        small.stop()
    assert rows(message_id)[0].last_reply.startswith("552 5.3.4 ") and small.messages == []


@pytest.fixture
def old_tls_receiver(settings):
    """A receiver that offers STARTTLS but refuses every handshake: it wants a client certificate."""
    context = server_context()
    context.verify_mode = ssl.CERT_REQUIRED
    receiver = SMTPReceiver(tls_context=context).start()
    settings.MAIL_OUTBOUND_PORT = receiver.port
    try:
        yield receiver
    finally:
        receiver.stop()


def test_a_failed_opportunistic_starttls_sends_in_clear_on_a_new_connection(remote, old_tls_receiver, caplog):
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    assert worker.deliver_message(message_id) == 1
    [received] = old_tls_receiver.messages
    assert received.tls is False and old_tls_receiver.sessions == 2  # the failed handshake, then the clear one
    assert rows(message_id)[0].state == "delivered"
    assert any(r.getMessage().startswith("451 4.7.10 STARTTLS with mx.remote.test failed: ")
               and r.getMessage().endswith(" in clear (opportunistic TLS)") for r in caplog.records)


def test_a_failed_starttls_defers_when_tls_is_required(remote, old_tls_receiver, settings):
    settings.MAIL_OUTBOUND_TLS = "require"
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    [row] = rows(message_id)
    assert row.state == "deferred" and row.last_reply.startswith("451 4.7.10 STARTTLS with mx.remote.test failed: ")
    assert old_tls_receiver.messages == []


def test_a_failed_starttls_to_a_smarthost_with_a_password_defers_rather_than_log_in_in_clear(
        remote, old_tls_receiver, settings):
    settings.MAIL_RELAY, settings.MAIL_RELAY_HOST, settings.MAIL_RELAY_PORT = "smarthost", "127.0.0.1", old_tls_receiver.port
    settings.MAIL_RELAY_USER, settings.MAIL_RELAY_PASSWORD = "alice", "relay-secret"
    settings.MAIL_RELAY_TLS_VERIFY = "0"  # any certificate: even then the password never goes in clear
    message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
    worker.deliver_message(message_id)
    [row] = rows(message_id)
    assert row.state == "deferred" and row.last_reply.startswith("451 4.7.10 STARTTLS with 127.0.0.1 failed: ")
    assert old_tls_receiver.messages == [] and old_tls_receiver.sessions == 1


def test_tls_required_defers_when_the_receiver_has_no_starttls(remote, settings):
    clear = SMTPReceiver(starttls=False).start()
    settings.MAIL_OUTBOUND_PORT = clear.port
    settings.MAIL_OUTBOUND_TLS = "require"
    try:
        message_id = queue.enqueue(MESSAGE, "alice@example.test", ["bob@remote.test"])
        worker.deliver_message(message_id)
    finally:
        clear.stop()
    [row] = rows(message_id)
    assert row.state == "deferred" and row.last_reply.startswith("451 4.7.10 ") and clear.messages == []


def test_lines_starting_with_a_dot_after_a_bare_cr_are_stuffed_on_the_wire():
    assert wire_data(b"a\r.b\r\n.\r\nc\n.d") == b"a\r\n..b\r\n..\r\nc\r\n..d\r\n.\r\n"


def wire_data_by_lines(data: bytes) -> bytes:
    """RFC 5321 §4.5.2 line by line (CR, LF and CRLF each end a line): the definition wire_data's one-replace
    form for CRLF-only data must agree with."""
    lines = re.split(rb"\r\n|\r|\n", data)
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


@given(st.lists(st.sampled_from([b"a", b".", b"..", b"\r\n", b"\r", b"\n", b" ", b".\r\n"]), max_size=40).map(b"".join))
def test_wire_data_stuffs_every_line_as_reading_line_by_line_does(data):
    assert wire_data(data) == wire_data_by_lines(data)
