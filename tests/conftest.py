"""Shared fixtures: an isolated blob directory per test, accounts, and the mail corpus."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# A copy of ../shared/testdata/mail-corpus (MIT licensed, see its LICENSE), so a clean clone has it.
LOOPBACK_CLIENTS = ("127.0.0.1", "::1")
CORPUS_DIR = Path(__file__).resolve().parent / "data" / "mail-corpus"


def corpus_files() -> list[Path]:
    """The 104 corpus messages (every file but README.md and LICENSE)."""
    return sorted(p for p in CORPUS_DIR.rglob("*") if p.is_file() and p.name not in ("README.md", "LICENSE"))


@pytest.fixture(autouse=True)
def blob_dir(settings, tmp_path: Path) -> Iterator[Path]:
    """Each test stores message blobs in its own directory (and hashes passwords quickly)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    path = tmp_path / "blobs"
    settings.STORAGES = {
        **settings.STORAGES,
        "mailblobs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(path)},
        },
    }
    yield path


@pytest.fixture(autouse=True)
def no_dns_answer_cache(settings) -> None:
    """Tests change DNS records between lookups; only tests/perf/test_dns_cache.py turns the cache on."""
    settings.MAIL_DNS_CACHE_SIZE = 0


@pytest.fixture(autouse=True)
def fresh_login_throttle() -> Iterator[None]:
    """Every test starts with no failed logins counted for loopback clients.

    Only these keys are reset: `cache.clear()` would FLUSHDB a Redis shared with other runs.
    """
    from mailcore.auth import throttle

    for ip in LOOPBACK_CLIENTS:
        throttle.reset(ip)
    yield
    for ip in LOOPBACK_CLIENTS:
        throttle.reset(ip)


@pytest.fixture
def domain(db):
    from mailcore.directory import create_domain

    return create_domain("example.test")


@pytest.fixture
def alice(domain):
    from mailcore.directory import create_account

    return create_account("Alice@example.test", "alice-secret-pw")


@pytest.fixture
def bob(domain):
    from mailcore.directory import create_account

    return create_account("bob@example.test", "bob-secret-pw")
