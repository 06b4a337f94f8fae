"""A password hasher for tests that counts the passwords it verifies."""
from __future__ import annotations

from django.contrib.auth.hashers import MD5PasswordHasher


class CountingMD5Hasher(MD5PasswordHasher):
    """Django's MD5 hasher (the tests' fast one, same stored form) counting its verifications."""

    verified = 0

    def verify(self, password: str, encoded: str) -> bool:
        type(self).verified += 1
        return super().verify(password, encoded)
