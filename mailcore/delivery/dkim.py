"""DKIM signing of outbound mail with per-domain keys (RFC 6376, dkimpy, relaxed/relaxed)."""
from __future__ import annotations

import base64
import logging
import time

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import transaction
from django.utils import timezone

from mailcore import dns as maildns
from mailcore.address import AddressError, normalize_domain
from mailcore.conf import conf
from mailcore.mime.headers import address_groups, first, parse_fields, split_header
from mailcore.models import DkimKey

log = logging.getLogger(__name__)

KEY_BITS = 2048  # RFC 8301 §3.2: at least 1024, 2048 recommended
# RFC 6376 §5.4.1: the fields a signature should cover (those present are signed).
SIGNED_HEADERS = (
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"in-reply-to", b"references",
    b"mime-version", b"content-type", b"content-transfer-encoding", b"list-unsubscribe",
)


def default_selector() -> str:
    """MAIL_DKIM_SELECTOR plus today's date, so a new key never reuses a published selector's name."""
    return f"{conf.dkim_selector}{timezone.now():%Y%m%d}"


def create_key(domain: str, selector: str = "") -> DkimKey:
    """Make a new RSA-2048 key for `domain` (selector: default_selector()); older keys stay for verification only.

    Raises AddressError for a bad domain and IntegrityError when the domain already has that selector.
    """
    name = normalize_domain(domain)
    selector = selector or default_selector()
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    with transaction.atomic():  # a savepoint: a duplicate selector leaves the caller's transaction usable
        return DkimKey.objects.create(domain=name, selector=selector, private_key=pem)


def public_key_b64(key: DkimKey) -> str:
    private = serialization.load_pem_private_key(key.private_key.encode("ascii"), password=None)
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def txt_record(key: DkimKey) -> str:
    """The DNS record to publish (RFC 6376 §3.6.1), in zone-file form."""
    return f'{key.selector}._domainkey.{key.domain}. IN TXT "v=DKIM1; k=rsa; p={public_key_b64(key)}"'


def newest_key(domain: str) -> DkimKey | None:
    """The domain's newest active key: the one whose record is to be published (`dnssetup`)."""
    return DkimKey.objects.filter(domain=domain, active=True).order_by("-created_at", "-id").first()


def signing_key(domain: str) -> DkimKey | None:
    """The key that signs the domain's mail now, as `signing_keys` chooses it."""
    keys = list(DkimKey.objects.filter(domain=domain, active=True).order_by("-created_at", "-id"))
    return _newest_published(keys) if keys else None


def signing_keys() -> dict[str, DkimKey]:
    """Every domain's signing key, for a delivery run's `sign` calls: its newest active key whose record is in
    DNS, else (none seen yet: a domain's first key) its newest. So a key made to replace another signs only once
    it is published, and receivers never look for a record that is not there yet (RFC 6376 §3.6.1: a signature
    whose key is missing fails, and DMARC with it)."""
    by_domain: dict[str, list[DkimKey]] = {}
    for key in DkimKey.objects.filter(active=True).order_by("domain", "-created_at", "-id"):
        by_domain.setdefault(key.domain, []).append(key)
    return {domain: _newest_published(keys) for domain, keys in by_domain.items()}


def _newest_published(keys: list[DkimKey]) -> DkimKey:
    """Of one domain's keys, newest first: the first one published, else the newest."""
    for key in keys:
        if key.published_at is not None or _found_in_dns(key):
            return key
    return keys[0]


# Keys looked up in DNS and not found, by id: when (time.monotonic()), so each is asked for at most once a minute.
_LOOKED_UP: dict[int, float] = {}
RECHECK_SECONDS = 60.0


def _found_in_dns(key: DkimKey) -> bool:
    """Whether SELECTOR._domainkey.DOMAIN has this key's public key (p=); if so, remembered in `published_at`."""
    now = time.monotonic()
    if now - _LOOKED_UP.get(key.pk, -RECHECK_SECONDS) < RECHECK_SECONDS:
        return False
    _LOOKED_UP[key.pk] = now
    try:
        records = maildns.txt(f"{key.selector}._domainkey.{key.domain}", maildns.checks_resolver())
    except maildns.DNSError:
        return False
    ours = public_key_b64(key)
    # The p= tag, base64 that may be folded with whitespace (RFC 6376 §3.6.1).
    if not any("".join(maildns.tag_list(record).get("p", "").split()) == ours for record in records):
        return False
    key.published_at = timezone.now()
    DkimKey.objects.filter(pk=key.pk).update(published_at=key.published_at)
    _LOOKED_UP.pop(key.pk, None)
    log.info("DKIM key %s found in DNS: it signs %s's mail from now on", key, key.domain)
    return True


def author_domain(data: bytes) -> str | None:
    """The domain of the From: header (RFC 5322 §3.6.2), the one DMARC aligns with."""
    _, end = split_header(data)
    value = first(parse_fields(data[:end]), "from")
    for _, members in address_groups(value):
        for _name, _local, domain in members:
            try:
                return normalize_domain(domain)
            except AddressError:
                continue
    return None


def _key_for(domain: str, keys: dict[str, DkimKey] | None) -> DkimKey | None:
    """The signing key of `domain`. For our own host name (MAIL_HOSTNAME), which has none of its own, the key
    of its nearest parent domain that has one: a signature of d=example.org aligns, relaxed (RFC 7489 §3.1.1),
    with mail from mail.example.org. Our reports come from MAILER-DAEMON@<MAIL_HOSTNAME>, and unsigned they
    failed DMARC wherever example.org says p=reject. Other names are signed by their own key only: a hosted
    domain under another's name is not signed with the other's."""
    candidates = [domain]
    if domain == conf.hostname.lower():
        labels = domain.split(".")
        candidates += [".".join(labels[start:]) for start in range(1, len(labels) - 1)]  # never a TLD alone
    for candidate in candidates:
        key = signing_key(candidate) if keys is None else keys.get(candidate)
        if key is not None:
            return key
    return None


def sign(data: bytes, envelope_sender: str, keys: dict[str, DkimKey] | None = None) -> bytes:
    """`data` with a DKIM-Signature prepended when the author's (or sender's) domain has a key (see `_key_for`).

    `keys`: every domain's key (`signing_keys()`, read once by the caller, a
    delivery run); none at all spares parsing the From: header. Without it, one query.
    """
    if keys is not None and not keys:
        return data
    domain = author_domain(data) or (envelope_sender.rpartition("@")[2].lower() or None)
    if not domain:
        return data
    key = _key_for(domain, keys)
    if key is None:
        return data
    fields = parse_fields(data[: split_header(data)[1]])
    present = {name.lower().encode() for name, _ in fields}
    try:
        signature = dkim.sign(
            data, key.selector.encode(), key.domain.encode(), key.private_key.encode(),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h for h in SIGNED_HEADERS if h in present] or [b"from"],
        )
    except dkim.DKIMException as err:
        log.error("DKIM signing for %s failed, sending unsigned: %s", domain, err)
        return data
    return signature + data
