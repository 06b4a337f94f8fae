"""The one password check: a mail address and the password of its Django user.

A password is verified by Django's hasher (PBKDF2, a million rounds: about half a second of CPU
here), which is right for the webmail's sign-in but heavy for mail clients that log in again and
again: one SMTP connection per message sent, several IMAP connections, a POP3 poll every few
minutes. So a login verified lately is remembered, as Dovecot's auth cache does
(MAIL_AUTH_CACHE_SECONDS): the same password for the same account, while the account's stored
password hash is unchanged, is accepted without hashing it again. What is kept is an HMAC of the
password under a random key of this process, never the password. Failures are never remembered,
so a wrong password always costs the full hash (and counts for the throttle), and changing the
password or deactivating the account takes effect at the next login.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.contrib.auth.hashers import check_password, make_password

from mailcore import directory
from mailcore.conf import conf
from mailcore.models import Account

# Checked against when the login is unknown, so that timing does not reveal which addresses exist.
_DUMMY_HASH = make_password("not-a-real-password-4f1c")

VERIFIED_CACHE_SIZE = 10_000  # accounts remembered at most; the least recently verified go first


@dataclass(frozen=True)
class AuthenticatedUser:
    account_id: int
    address: str  # the lookup key, e.g. alice@example.test


@dataclass(frozen=True)
class _Verified:
    stored_hash: str  # the account's password hash when the password was verified
    fingerprint: bytes  # HMAC-SHA256 of the password under _KEY
    until: float  # time.monotonic() after which the password is hashed again


_KEY = secrets.token_bytes(32)
_verified: OrderedDict[int, _Verified] = OrderedDict()
_lock = threading.Lock()


def check_login(login: str, password: str) -> AuthenticatedUser | None:
    """The account for `login` (its address) if `password` is right and the account active."""
    account = directory.account_for_login(login)
    if account is None or not account.user.is_active:
        check_password(password, _DUMMY_HASH)
        return None
    if not _verified_lately(account, password) and not _verify(account, password):
        return None
    return AuthenticatedUser(account_id=account.pk, address=account.address)


def _verify(account: Account, password: str) -> bool:
    if not account.user.check_password(password):
        return False
    seconds = conf.auth_cache_seconds
    if seconds:  # the hash as it is now: check_password may have just upgraded it
        entry = _Verified(account.user.password, _fingerprint(password), time.monotonic() + seconds)
        with _lock:
            _verified[account.pk] = entry
            _verified.move_to_end(account.pk)
            while len(_verified) > VERIFIED_CACHE_SIZE:
                _verified.popitem(last=False)
    return True


def _verified_lately(account: Account, password: str) -> bool:
    with _lock:
        entry = _verified.get(account.pk)
    return (
        entry is not None
        and time.monotonic() < entry.until
        and entry.stored_hash == account.user.password
        and hmac.compare_digest(entry.fingerprint, _fingerprint(password))
    )


def _fingerprint(password: str) -> bytes:
    return hmac.new(_KEY, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def forget_verified() -> None:
    """Forget every remembered login (tests; each process's memory is its own)."""
    with _lock:
        _verified.clear()
