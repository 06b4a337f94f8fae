"""The one password check: a mail address and the password of its Django user."""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.hashers import check_password, make_password

from mailcore import directory

# Checked against when the login is unknown, so that timing does not reveal which addresses exist.
_DUMMY_HASH = make_password("not-a-real-password-4f1c")


@dataclass(frozen=True)
class AuthenticatedUser:
    account_id: int
    address: str  # the lookup key, e.g. alice@example.test


def check_login(login: str, password: str) -> AuthenticatedUser | None:
    """The account for `login` (its address) if `password` is right and the account active."""
    account = directory.account_for_login(login)
    if account is None or not account.user.is_active:
        check_password(password, _DUMMY_HASH)
        return None
    if not account.user.check_password(password):
        return None
    return AuthenticatedUser(account_id=account.pk, address=account.address)
