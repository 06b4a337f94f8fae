"""SPF, DKIM and DMARC at the end of DATA, with every lookup answered by a DNS server on loopback."""
from __future__ import annotations

import base64
import smtplib

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailcore import store

from .test_hardening import inbox_count

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = (
    b"From: Carol <carol@remote.test>\r\nTo: bob@example.test\r\nSubject: signed\r\n"
    b"Message-ID: <s-1@remote.test>\r\n\r\nHello Bob.\r\n"
)


@pytest.fixture(scope="module")
def dkim_key() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


def authentication_results(account) -> list[bytes]:
    ref = store.get_folder(account.pk, store.INBOX)
    [uid] = store.uids(ref)
    lines = store.read_message(ref, uid).split(b"\r\n")
    start = lines.index(b"Authentication-Results: mx.example.test;")
    items = []
    for line in lines[start + 1 :]:
        if not line.startswith(b"\t"):
            break
        items.append(line.strip().rstrip(b";"))
    return items


def send(port: int, sender: str, message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("mail.remote.test")
        client.sendmail(sender, ["bob@example.test"], message)


def test_spf_dkim_and_dmarc_pass_are_recorded(mx_port, bob, dns_server, dkim_key):
    private, public_record = dkim_key
    dns_server.records.update(
        {
            "remote.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
            "_dmarc.remote.test": {"TXT": ["v=DMARC1; p=reject"]},
            "sel1._domainkey.remote.test": {"TXT": [public_record]},
        }
    )
    signature = dkim.sign(MESSAGE, b"sel1", b"remote.test", private, include_headers=[b"from", b"to", b"subject"])
    send(mx_port, "carol@remote.test", signature + MESSAGE)
    assert authentication_results(bob) == [
        b"spf=pass smtp.mailfrom=carol@remote.test",
        b"dkim=pass header.d=remote.test header.s=sel1",
        b"dmarc=pass header.from=remote.test",
    ]


def test_a_broken_dkim_signature_fails_but_aligned_spf_passes_dmarc(mx_port, bob, dns_server, dkim_key):
    private, public_record = dkim_key
    dns_server.records.update(
        {
            "remote.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
            "_dmarc.remote.test": {"TXT": ["v=DMARC1; p=reject"]},
            "sel1._domainkey.remote.test": {"TXT": [public_record]},
        }
    )
    signature = dkim.sign(MESSAGE, b"sel1", b"remote.test", private)
    send(mx_port, "carol@remote.test", signature + MESSAGE.replace(b"Hello", b"Jello"))
    assert authentication_results(bob) == [
        b"spf=pass smtp.mailfrom=carol@remote.test",
        b"dkim=fail header.d=remote.test header.s=sel1",
        b"dmarc=pass header.from=remote.test",
    ]


def test_a_signed_message_with_a_header_line_dkim_cannot_read_is_a_permerror(mx_port, bob, dns_server, dkim_key):
    """A line with no colon in the header (old mailers write them; RFC 5322 §2.2 does not allow it):
    dkimpy cannot parse the message, so no signature can verify, and the message is still taken."""
    private, public_record = dkim_key
    dns_server.records.update({
        "remote.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        "sel1._domainkey.remote.test": {"TXT": [public_record]},
    })
    message = MESSAGE.replace(b"Subject: signed\r\n", b"Subject: signed\r\nX-Mailer Old Mailer 1.0\r\n")
    signature = dkim.sign(MESSAGE, b"sel1", b"remote.test", private, include_headers=[b"from", b"to", b"subject"])
    send(mx_port, "carol@remote.test", signature + message)
    assert authentication_results(bob) == [
        b"spf=pass smtp.mailfrom=carol@remote.test",
        b"dkim=permerror (header cannot be parsed)",
        b"dmarc=none header.from=remote.test",
    ]


def test_a_signed_message_with_a_header_of_more_than_10000_lines_is_not_verified(mx_port, bob, dns_server, dkim_key):
    """dkimpy unfolds a field by adding each line to a copy of it: seconds for a header folded over hundreds
    of thousands of lines. No real header has ten thousand lines; the message is delivered, unverified."""
    private, public_record = dkim_key
    dns_server.records.update({"sel1._domainkey.remote.test": {"TXT": [public_record]}})
    folded = MESSAGE.replace(b"Subject: signed\r\n", b"Subject: signed\r\n" + b" and folded\r\n" * 10_000)
    signature = dkim.sign(folded, b"sel1", b"remote.test", private, include_headers=[b"from", b"to"])
    send(mx_port, "carol@remote.test", signature + folded)
    assert authentication_results(bob)[1] == b"dkim=permerror (header of more than 10000 lines not verified)"


def test_signatures_beyond_eight_are_not_verified(mx_port, bob, dns_server, dkim_key):
    """RFC 6376 §6.1 lets a verifier limit the signatures it verifies: each costs a key lookup and a hash
    of the whole body. The first eight are verified; one `dkim=policy` item stands for the rest."""
    private, public_record = dkim_key
    dns_server.records.update({f"sel{n}._domainkey.remote.test": {"TXT": [public_record]} for n in range(10)})
    signatures = b"".join(
        dkim.sign(MESSAGE, f"sel{n}".encode(), b"remote.test", private, include_headers=[b"from"]) for n in range(10)
    )
    send(mx_port, "carol@remote.test", signatures + MESSAGE)
    items = authentication_results(bob)
    assert items[1:10] == [  # in header order, from the top
        *(f"dkim=pass header.d=remote.test header.s=sel{n}".encode() for n in range(8)),
        b"dkim=policy (2 more signatures not verified)",
    ]
    looked_up = {name for name, _type in dns_server.queries if "._domainkey." in name}
    assert looked_up == {f"sel{n}._domainkey.remote.test" for n in range(8)}


BANK = b"From: The Bank <alerts@bank.test>\r\nTo: bob@example.test\r\nSubject: urgent\r\n\r\nClick.\r\n"
BANK_ZONE = {
    "bank.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
    "_dmarc.bank.test": {"TXT": ["v=DMARC1; p=reject; adkim=s"]},
}


def data_reply(client, sender: str, message: bytes) -> str:
    """The MX's reply to `message` from `sender` to bob, sent over `client` (a raw client, greeted)."""
    client.command("EHLO mail.phisher.test")
    client.command(f"MAIL FROM:<{sender}>")
    client.command("RCPT TO:<bob@example.test>")
    client.command("DATA")
    return client.command(message + b".")


def test_dmarc_reject_failure_is_550_and_nothing_is_stored(mx_port, bob, dns_server, raw_client):
    dns_server.records.update(BANK_ZONE)
    assert data_reply(raw_client(mx_port), "alerts@bank.test", BANK) == (
        "550 5.7.1 Message rejected: DMARC policy of bank.test says reject")
    assert inbox_count(bob) == 0


PHISHER_ZONE = {**BANK_ZONE, "phisher.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
                "_dmarc.phisher.test": {"TXT": ["v=DMARC1; p=reject"]}}


@pytest.mark.parametrize("author", [
    b"From: Support <help@phisher.test>\r\nFrom: The Bank <alerts@bank.test>",  # two From fields
    b"From: The Bank <alerts@bank.test>\r\nFrom: Support <help@phisher.test>",
    b"From: <help@phisher.test> The Bank <alerts@bank.test>",  # a reader may show the second address
    b"From: help@phisher.test, The Bank <alerts@bank.test>",  # two authors (RFC 5322 §3.6.2)
])
def test_dmarc_applies_to_every_domain_a_reader_may_see_as_the_author(mx_port, bob, dns_server, raw_client, author):
    """The phisher passes DMARC for its own domain (its SPF allows the sending address); the bank's
    domain, in a second From field or in text a mail program may read as the address, fails it."""
    dns_server.records.update(PHISHER_ZONE)
    message = BANK.replace(b"From: The Bank <alerts@bank.test>", author)
    assert data_reply(raw_client(mx_port), "help@phisher.test", message) == (
        "550 5.7.1 Message rejected: DMARC policy of bank.test says reject")
    assert inbox_count(bob) == 0


def test_more_than_ten_author_domains_are_refused_unlooked_up(mx_port, bob, dns_server, raw_client):
    """Each author domain costs DMARC lookups, and one could hide a reject domain among many."""
    authors = ", ".join(f"a@d{n}.test" for n in range(11))
    message = BANK.replace(b"From: The Bank <alerts@bank.test>", f"From: {authors}".encode())
    assert data_reply(raw_client(mx_port), "help@phisher.test", message) == (
        "550 5.7.1 Message rejected: more than 10 author domains (RFC 7489 \u00a76.6.1)")
    assert not any(name.startswith("_dmarc.") for name, _type in dns_server.queries)
    assert inbox_count(bob) == 0


def test_each_author_domain_gets_its_own_dmarc_result(smtp_settings, servers, bob, dns_server):
    smtp_settings.MAIL_DMARC_REJECT = False
    dns_server.records.update(PHISHER_ZONE)
    send(servers.start("mx"), "help@phisher.test",
         BANK.replace(b"From: The Bank <alerts@bank.test>", b"From: help@phisher.test\r\nFrom: alerts@bank.test"))
    assert authentication_results(bob) == [
        b"spf=pass smtp.mailfrom=help@phisher.test",
        b"dkim=none",
        b"dmarc=pass header.from=phisher.test",
        b"dmarc=fail header.from=bank.test",
    ]


def test_dmarc_reject_can_be_turned_off_and_the_failure_is_recorded(smtp_settings, servers, bob, dns_server):
    smtp_settings.MAIL_DMARC_REJECT = False
    dns_server.records.update(BANK_ZONE)
    send(servers.start("mx"), "alerts@bank.test", BANK)
    assert authentication_results(bob) == [
        b"spf=fail smtp.mailfrom=alerts@bank.test",
        b"dkim=none",
        b"dmarc=fail header.from=bank.test",
    ]


def test_unsigned_mail_from_a_domain_without_records_is_none(mx_port, bob, dns_server):
    send(mx_port, "carol@remote.test", MESSAGE)
    assert authentication_results(bob) == [
        b"spf=none smtp.mailfrom=carol@remote.test",
        b"dkim=none",
        b"dmarc=none header.from=remote.test",
    ]
    assert ("remote.test", "TXT") in dns_server.queries  # the lookups went to our loopback server


def test_dns_failure_gives_temperror_and_the_mail_is_still_accepted(mx_port, bob, dns_server):
    dns_server.records.update({"remote.test": dns_server.SERVFAIL, "_dmarc.remote.test": dns_server.SERVFAIL})
    send(mx_port, "carol@remote.test", MESSAGE)
    assert authentication_results(bob) == [
        b"spf=temperror smtp.mailfrom=carol@remote.test",
        b"dkim=none",
        b"dmarc=temperror header.from=remote.test",
    ]


def test_null_sender_checks_the_helo_identity(mx_port, bob, dns_server):
    dns_server.records.update({"mail.remote.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]}})
    send(mx_port, "", MESSAGE)
    assert authentication_results(bob)[0] == b"spf=pass smtp.helo=mail.remote.test"


def test_dmarc_pct_zero_never_rejects_and_the_failure_is_recorded(mx_port, bob, dns_server):
    # RFC 7489 §6.6.4: pct=0 samples no message; the rest get the next less strict policy (quarantine).
    dns_server.records.update({**BANK_ZONE, "_dmarc.bank.test": {"TXT": ["v=DMARC1; p=reject; pct=0"]}})
    send(mx_port, "alerts@bank.test", BANK)
    assert authentication_results(bob)[-1] == b"dmarc=fail header.from=bank.test"


@pytest.mark.parametrize(
    ("policy", "pct", "draw", "applied"),
    [
        ("reject", "", 0.99, "reject"), ("reject", "100", 0.99, "reject"), ("reject", "50", 0.49, "reject"),
        ("reject", "50", 0.5, "quarantine"), ("quarantine", "50", 0.5, "none"), ("reject", "0", 0.0, "quarantine"),
        ("reject", "x", 0.99, "reject"), ("none", "10", 0.9, "none"),
    ],
)
def test_dmarc_pct_samples_the_policy(policy, pct, draw, applied):
    from mailcore.smtp.verification import sampled_policy

    assert sampled_policy(policy, pct, draw=lambda: draw) == applied
